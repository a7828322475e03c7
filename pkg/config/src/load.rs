//! Reading, checking and merging configuration files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::model::{Config, LogFormat, LogLevel, MIN_GRPC_MESSAGE_SIZE};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

/// Values given on the command line; each set one wins over every file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub listen: Option<String>,
    pub metrics_address: Option<SocketAddr>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
}

/// A loaded configuration and the files it came from, in the order they were applied.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sources: Vec<PathBuf>,
}

/// Loads the configuration.
///
/// `explicit` is `--config FILE`: it must exist. Without it the default path is used, and a missing
/// default file just means "embedded defaults". Drop-ins live in `config.d/` beside the main file.
pub fn load(explicit: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let main = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let mut files = Vec::new();
    match std::fs::metadata(main) {
        Ok(_) => files.push(main.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: main.to_path_buf(),
                source,
            });
        }
    }
    let dropin_dir = main.parent().unwrap_or(Path::new("/")).join("config.d");
    files.extend(list_dropins(&dropin_dir)?);

    // Start from the defaults as a table so that maps (e.g. runtime handlers) merge with the built-in
    // entries instead of replacing them.
    let mut merged =
        toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
            sources: "defaults".to_string(),
            key: String::new(),
            message: e.to_string(),
        })?;
    for file in &files {
        let table = read_checked(file)?;
        merge(&mut merged, table);
    }
    // Each file was valid alone; the merge of valid tables is valid too, but check rather than assume.
    let mut config = deserialize(merged).map_err(|(key, message)| ConfigError::Invalid {
        sources: describe(&files),
        key,
        message,
    })?;
    apply(&mut config, overrides);
    crate::registry::resolve_auth_file(&mut config);
    validate(&config).map_err(|(key, message)| ConfigError::Invalid {
        sources: describe(&files),
        key,
        message,
    })?;
    Ok(Loaded {
        config,
        sources: files,
    })
}

fn list_dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::ReadDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            found.push(path);
        }
    }
    // Lexical order of the file name, so `10-foo.toml` applies before `20-bar.toml`.
    found.sort();
    Ok(found)
}

/// Reads one file and checks it alone against the model, so errors name this file.
fn read_checked(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
    deserialize(table.clone()).map_err(|(key, message)| ConfigError::Key {
        path: path.to_path_buf(),
        key,
        message,
    })?;
    Ok(table)
}

/// Deserializes a table into the model, reporting the dotted key path of the first problem.
fn deserialize(table: toml::Table) -> Result<Config, (String, String)> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        (unknown_field_key(&path, &message), message)
    })
}

/// serde reports an unknown field at its parent's path; name the offending key itself.
fn unknown_field_key(path: &str, message: &str) -> String {
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match (unknown, path) {
        (Some(field), "." | "") => field.to_string(),
        (Some(field), parent) if !parent.ends_with(field) => format!("{parent}.{field}"),
        _ if path == "." => String::new(),
        _ => path.to_string(),
    }
}

/// Tables merge key by key; any other value (lists included) is replaced whole.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn apply(config: &mut Config, o: &Overrides) {
    if let Some(root) = &o.root {
        config.root = root.clone();
    }
    if let Some(state) = &o.state {
        config.state = state.clone();
    }
    if let Some(listen) = &o.listen {
        config.listen = listen.clone();
    }
    if let Some(address) = o.metrics_address {
        config.metrics.address = address;
    }
    if let Some(level) = o.log_level {
        config.log.level = level;
    }
    if let Some(format) = o.log_format {
        config.log.format = format;
    }
}

/// Checks what types alone cannot express. Returns (key, message) of the first problem.
pub(crate) fn validate(config: &Config) -> Result<(), (String, String)> {
    let fail = |key: &str, message: String| Err((key.to_string(), message));
    match config.listen.strip_prefix("unix://") {
        Some(path) if Path::new(path).is_absolute() => {}
        _ => {
            return fail(
                "listen",
                format!(
                    "{:?} is not a unix socket address (expected unix:///absolute/path)",
                    config.listen
                ),
            );
        }
    }
    for (key, path) in [("root", &config.root), ("state", &config.state)] {
        if !path.is_absolute() {
            return fail(key, format!("{} must be an absolute path", path.display()));
        }
    }
    if config.root == config.state {
        return fail(
            "state",
            "root and state must be different directories".into(),
        );
    }
    for (key, size) in [
        (
            "grpc.max_recv_message_size",
            config.grpc.max_recv_message_size,
        ),
        (
            "grpc.max_send_message_size",
            config.grpc.max_send_message_size,
        ),
    ] {
        if size < MIN_GRPC_MESSAGE_SIZE {
            return fail(
                key,
                format!("{size} is below {MIN_GRPC_MESSAGE_SIZE} bytes, the size kubelet may send"),
            );
        }
    }
    let streaming = &config.streaming;
    if streaming.tls_cert_file.is_some() != streaming.tls_key_file.is_some() {
        return fail(
            "streaming.tls_cert_file",
            "tls_cert_file and tls_key_file go together: set both or neither".into(),
        );
    }
    for (key, secs) in [
        ("streaming.idle_timeout_secs", streaming.idle_timeout_secs),
        (
            "streaming.stream_creation_timeout_secs",
            streaming.stream_creation_timeout_secs,
        ),
        ("streaming.token_ttl_secs", streaming.token_ttl_secs),
    ] {
        if secs == 0 {
            return fail(key, "must be at least 1 second".into());
        }
    }
    if streaming.exec_sync_output_limit == 0 {
        return fail("streaming.exec_sync_output_limit", "must not be 0".into());
    }
    for (name, handler) in &config.runtime.handlers {
        if !is_dns_label(name) {
            return fail(
                &format!("runtime.handlers.{name}"),
                "a handler name must be a DNS label (lowercase letters, digits and '-', at most 63)"
                    .into(),
            );
        }
        if handler.path.as_os_str().is_empty() {
            return fail(
                &format!("runtime.handlers.{name}.path"),
                "must not be empty".into(),
            );
        }
        if let Some(root) = &handler.root
            && !root.is_absolute()
        {
            return fail(
                &format!("runtime.handlers.{name}.root"),
                format!("{} must be an absolute path", root.display()),
            );
        }
    }
    if !config
        .runtime
        .handlers
        .contains_key(&config.runtime.default_handler)
    {
        return fail(
            "runtime.default_handler",
            format!(
                "{:?} is not defined under [runtime.handlers]",
                config.runtime.default_handler
            ),
        );
    }
    if config.image.max_concurrent_downloads == 0 {
        return fail(
            "image.max_concurrent_downloads",
            "must be at least 1".into(),
        );
    }
    if config.image.max_layer_unpacked_bytes == 0 {
        return fail(
            "image.max_layer_unpacked_bytes",
            "must be at least 1".into(),
        );
    }
    if let Some(dir) = &config.image.store_dir
        && !dir.is_absolute()
    {
        return fail(
            "image.store_dir",
            format!("{} must be an absolute path", dir.display()),
        );
    }
    if config.cni.plugin_timeout_secs == 0 {
        return fail("cni.plugin_timeout_secs", "must be at least 1".into());
    }
    if config.image.pull_stall_timeout_secs == 0 {
        return fail("image.pull_stall_timeout_secs", "must be at least 1".into());
    }
    crate::registry::validate(&config.registry)?;
    crate::cdi::validate(&config.cdi)?;
    if !config.cni.conf_dir.is_absolute() {
        return fail("cni.conf_dir", "must be an absolute path".into());
    }
    if config.cni.bin_dirs.iter().any(|d| !d.is_absolute()) {
        return fail(
            "cni.bin_dirs",
            "every entry must be an absolute path".into(),
        );
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn describe(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "defaults and flags".to_string();
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("{} and flags", names.join(", "))
}

#[cfg(test)]
mod tests;
