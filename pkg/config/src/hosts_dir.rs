//! containerd's registry host directory (`registry.config_path`, e.g. `/etc/containerd/certs.d`):
//! one directory per registry host holding a `hosts.toml`, or Docker-style certificate files.
//!
//! The semantics follow containerd's `docs/hosts.md`: the `[host."…"]` tables are tried in file
//! order, then `server` (when set) or else the registry itself; paths are absolute or relative to
//! the `hosts.toml`; `ca` is a path or a list; `client` is a path (certificate and key in one file),
//! a list of such paths, or a list of `[cert, key]` pairs; `header` values are a string or a list;
//! `capabilities` default to all. Without a `hosts.toml` the directory's `*.crt` files are CAs and
//! `*.cert` + `*.key` pairs client certificates for the registry itself, as Docker reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// The catch-all namespace directory.
pub const DEFAULT_NAMESPACE: &str = "_default";

/// How to reach one endpoint (a `[host."…"]` table, `server`, or the registry's own origin).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostEndpoint {
    /// `scheme://host[:port][/path]`; empty for the registry's own origin.
    pub url: String,
    pub ca_files: Vec<PathBuf>,
    /// Certificate file and key file (`None`: the key is in the certificate's file).
    pub client: Option<(PathBuf, Option<PathBuf>)>,
    pub skip_verify: bool,
    /// Name and value; a name given a list of values appears once per value.
    pub headers: Vec<(String, String)>,
    /// May resolve tags (capability `resolve`); otherwise only content by digest is fetched.
    pub resolve: bool,
    pub override_path: bool,
}

/// One namespace directory, translated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostsFile {
    /// The `hosts.toml` (or the directory, for certificate files).
    pub source: PathBuf,
    /// `[host."…"]` entries in file order, then `server` when set.
    pub endpoints: Vec<HostEndpoint>,
    /// Settings of the registry's own origin when `server` is not set.
    pub origin: HostEndpoint,
    /// `server` was set: the registry's own origin is not tried.
    pub skip_origin: bool,
    /// Things Berth read but does not act on, for a warning (e.g. `dial_timeout`, `proxy`, a
    /// second client certificate).
    pub ignored: Vec<String>,
}

/// Reads every namespace directory under `dir`. Keys are registry hosts as images name them
/// (`docker.io`, `reg.lan:5000`; containerd's `reg.lan_5000_` spelling is accepted too) and
/// [`DEFAULT_NAMESPACE`]. A missing `dir` is an empty set: the operator may create it later and
/// reload.
pub fn read_hosts_dir(dir: &Path) -> Result<BTreeMap<String, HostsFile>, ConfigError> {
    let read_dir_err = |source| ConfigError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(read_dir_err(e)),
    };
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_dir_err)?;
        if entry.path().is_dir()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_string());
        }
    }
    // containerd prefers `host_port_` over `host:port`: read that one last so it wins.
    names.sort_by_key(|n| n.ends_with('_') && n != DEFAULT_NAMESPACE);
    for name in names {
        let path = dir.join(&name);
        let file = read_namespace(&path)?;
        out.insert(namespace_host(&name), file);
    }
    Ok(out)
}

/// `reg.lan_5000_` → `reg.lan:5000`; other names as they are.
fn namespace_host(name: &str) -> String {
    if name != DEFAULT_NAMESPACE
        && let Some(stem) = name.strip_suffix('_')
        && let Some((host, port)) = stem.rsplit_once('_')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return format!("{host}:{port}");
    }
    name.to_string()
}

fn read_namespace(dir: &Path) -> Result<HostsFile, ConfigError> {
    let path = dir.join("hosts.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_hosts_toml(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => docker_cert_files(dir),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// `*.crt` CAs and `*.cert`/`*.key` client pairs, Docker's `certs.d` layout.
fn docker_cert_files(dir: &Path) -> Result<HostsFile, ConfigError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ConfigError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let ext = |p: &Path, e: &str| p.extension().is_some_and(|x| x == e);
    let mut origin = HostEndpoint {
        resolve: true,
        ..HostEndpoint::default()
    };
    let mut ignored = Vec::new();
    origin.ca_files = files.iter().filter(|p| ext(p, "crt")).cloned().collect();
    for cert in files.iter().filter(|p| ext(p, "cert")) {
        let key = cert.with_extension("key");
        if !files.contains(&key) {
            return Err(ConfigError::Key {
                path: cert.clone(),
                key: String::new(),
                message: format!("client certificate without its key {}", key.display()),
            });
        }
        if origin.client.is_some() {
            ignored.push(format!("client certificate {}", cert.display()));
        } else {
            origin.client = Some((cert.clone(), Some(key)));
        }
    }
    Ok(HostsFile {
        source: dir.to_path_buf(),
        endpoints: Vec::new(),
        origin,
        skip_origin: false,
        ignored,
    })
}

/// Parses one `hosts.toml`. `path` names it in errors and anchors relative paths.
pub fn parse_hosts_toml(path: &Path, text: &str) -> Result<HostsFile, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        path: path.to_path_buf(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax(e.to_string().trim().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut file = HostsFile {
        source: path.to_path_buf(),
        ..HostsFile::default()
    };
    let key_err = |key: &str, message: String| ConfigError::Key {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    // The order of `[host."…"]` tables is their priority; toml::Table sorts keys, so take the
    // order from where each key appears in the text.
    let order = host_key_order(text).map_err(syntax)?;
    let mut hosts: Vec<(&String, &toml::Value)> = match table.get("host") {
        None => Vec::new(),
        Some(toml::Value::Table(t)) => t.iter().collect(),
        Some(_) => return Err(key_err("host", "must be a table of hosts".into())),
    };
    hosts.sort_by_key(|(k, _)| order.iter().position(|o| o == *k).unwrap_or(usize::MAX));
    for (url, value) in hosts {
        let key = format!("host.{url:?}");
        let toml::Value::Table(t) = value else {
            return Err(key_err(&key, "must be a table".into()));
        };
        if t.contains_key("host") {
            return Err(key_err(&key, "host tables do not nest".into()));
        }
        let (mut ep, usable) = settings(t, base, &mut file.ignored)
            .map_err(|(k, m)| key_err(&format!("{key}.{k}"), m))?;
        ep.url = with_scheme(url);
        if usable {
            file.endpoints.push(ep);
        }
    }
    let mut top = table.clone();
    top.remove("host");
    let server = match top.remove("server") {
        None => None,
        Some(toml::Value::String(s)) if !s.is_empty() => Some(s),
        Some(toml::Value::String(_)) => None,
        Some(_) => return Err(key_err("server", "must be a string".into())),
    };
    let (mut own, usable) =
        settings(&top, base, &mut file.ignored).map_err(|(k, m)| key_err(&k, m))?;
    match server {
        Some(server) => {
            own.url = with_scheme(&server);
            // containerd's own docs write Docker Hub's server as its name; its API lives elsewhere.
            if own.url.trim_end_matches('/') == "https://docker.io" {
                own.url = "https://registry-1.docker.io".into();
            }
            file.skip_origin = true;
            if usable {
                file.endpoints.push(own);
            }
        }
        None => file.origin = own,
    }
    Ok(file)
}

fn with_scheme(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

/// The keys of `[host."…"]` tables (and dotted `host."…".x` keys) in the order they appear.
fn host_key_order(text: &str) -> Result<Vec<String>, String> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| e.to_string().trim().to_string())?;
    let mut keys: Vec<(usize, String)> = match doc.get_ref().get("host").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Table(t)) => t
            .iter()
            .map(|(k, _)| (k.span().start, k.get_ref().to_string()))
            .collect(),
        _ => Vec::new(),
    };
    keys.sort();
    Ok(keys.into_iter().map(|(_, k)| k).collect())
}

/// The settings shared by the top level and `[host."…"]` tables, and whether the endpoint may be
/// used for pulls at all (a push-only host may not). Errors are (key, message).
fn settings(
    t: &toml::Table,
    base: &Path,
    ignored: &mut Vec<String>,
) -> Result<(HostEndpoint, bool), (String, String)> {
    let abs = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let strings = |key: &str, v: &toml::Value| -> Result<Vec<String>, (String, String)> {
        match v {
            toml::Value::String(s) => Ok(vec![s.clone()]),
            toml::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    (
                        key.to_string(),
                        "must be a string or a list of strings".into(),
                    )
                }),
            _ => Err((
                key.to_string(),
                "must be a string or a list of strings".into(),
            )),
        }
    };
    let mut ep = HostEndpoint {
        resolve: true,
        ..HostEndpoint::default()
    };
    let mut usable = true;
    for (key, value) in t {
        match key.as_str() {
            "capabilities" => {
                let caps = strings(key, value)?;
                let mut pull = false;
                ep.resolve = false;
                for c in &caps {
                    match c.to_ascii_lowercase().as_str() {
                        "pull" => pull = true,
                        "resolve" => ep.resolve = true,
                        "push" => {}
                        other => {
                            return Err((key.clone(), format!("unknown capability {other:?}")));
                        }
                    }
                }
                if !pull && !ep.resolve {
                    // Push-only: Berth never pushes, so the host is never used.
                    usable = false;
                }
            }
            "ca" => ep.ca_files = strings(key, value)?.iter().map(|p| abs(p)).collect(),
            "client" => {
                let pairs = client_pairs(value).ok_or_else(|| {
                    (
                        key.clone(),
                        "must be a path, a list of paths or a list of [cert, key] pairs".into(),
                    )
                })?;
                let mut pairs = pairs
                    .into_iter()
                    .map(|(c, k)| (abs(&c), k.filter(|k| !k.is_empty()).map(|k| abs(&k))));
                ep.client = pairs.next();
                for (c, _) in pairs {
                    // One TLS identity per connection: the first pair is the one presented.
                    ignored.push(format!(
                        "client certificate {} (only the first is used)",
                        c.display()
                    ));
                }
            }
            "skip_verify" => {
                ep.skip_verify = value
                    .as_bool()
                    .ok_or_else(|| (key.clone(), "must be true or false".into()))?
            }
            "override_path" => {
                ep.override_path = value
                    .as_bool()
                    .ok_or_else(|| (key.clone(), "must be true or false".into()))?
            }
            "header" => {
                let toml::Value::Table(h) = value else {
                    return Err((key.clone(), "must be a table".into()));
                };
                for (name, v) in h {
                    for value in strings(&format!("header.{name}"), v)? {
                        ep.headers.push((name.clone(), value));
                    }
                }
            }
            "dial_timeout" | "proxy" => ignored.push(format!("`{key}` (not supported by Berth)")),
            _ => return Err((key.clone(), "unknown key".into())),
        }
    }
    Ok((ep, usable))
}

/// `client`: "file", ["file", …] or [["cert", "key"], …].
fn client_pairs(v: &toml::Value) -> Option<Vec<(String, Option<String>)>> {
    match v {
        toml::Value::String(s) => Some(vec![(s.clone(), None)]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Some((s.clone(), None)),
                toml::Value::Array(pair) if pair.len() == 2 => Some((
                    pair[0].as_str()?.to_string(),
                    Some(pair[1].as_str()?.to_string()),
                )),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
#[path = "hosts_dir_tests.rs"]
mod tests;
