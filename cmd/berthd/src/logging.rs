//! tracing setup: text or JSON on stderr, level from config unless RUST_LOG gives a full filter.

use std::io::IsTerminal;

use berth_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        // Dependencies (h2, hyper, tower) are chatty at debug; keep them at warn unless asked.
        _ => EnvFilter::try_new(format!(
            "{},h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn",
            config.level.as_str()
        ))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("initialising logging: {e}"))
}
