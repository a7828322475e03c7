//! tracing setup: text or JSON on stderr, level from config unless RUST_LOG gives a full filter.
//! The filter sits behind a reload handle so that a configuration reload can change the level.

use std::io::IsTerminal;

use berth_config::{LogConfig, LogFormat, LogLevel};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log level of the running daemon.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set: it wins over the configured level, now and on reloads.
    from_env: bool,
}

impl LogControl {
    /// Applies `level` (unless RUST_LOG rules); returns whether the filter changed.
    pub fn set_level(&self, level: LogLevel) -> anyhow::Result<bool> {
        if self.from_env {
            return Ok(false);
        }
        let filter = level_filter(level)?;
        self.handle
            .reload(filter)
            .map_err(|e| anyhow::anyhow!("changing the log level: {e}"))?;
        Ok(true)
    }
}

fn level_filter(level: LogLevel) -> anyhow::Result<EnvFilter> {
    // Dependencies (h2, hyper, tower) are chatty at debug; keep them at warn unless asked.
    Ok(EnvFilter::try_new(format!(
        "{},h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn",
        level.as_str()
    ))?)
}

pub fn init(config: &LogConfig) -> anyhow::Result<LogControl> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => (EnvFilter::try_new(directives)?, true),
        _ => (level_filter(config.level)?, false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let base = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Text => base.with(output).try_init(),
        LogFormat::Json => base
            .with(
                output
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("initialising logging: {e}"))?;
    Ok(LogControl { handle, from_env })
}
