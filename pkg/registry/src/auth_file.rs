//! The credentials file `berth login` writes and pulls read: docker's `config.json` format.
//!
//! ```json
//! {"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}, "127.0.0.1:5001": {...}}}
//! ```
//!
//! Entries are read with `auth` (base64 `user:password`), `username`/`password`,
//! `identitytoken` or `registrytoken`, so an existing `/root/.docker/config.json` works.
//! `credsStore` and `credHelpers` (external programs) are not supported: they are kept as they
//! are when the file is written, and ignored when it is read.
//!
//! Keys are matched as docker matches them: the scheme and any path are dropped, and docker.io's
//! names (`docker.io`, `index.docker.io`, `registry-1.docker.io`, `https://index.docker.io/v1/`)
//! are one registry. Writing keeps every other key and field of the file, replaces the file
//! atomically (a temporary file in the same directory, fsynced, renamed) and makes it mode 0600.
//!
//! Reads are per pull but cheap: the parsed file is cached and only read again when its
//! `stat` (inode, size, mtime, ctime) changes, so an edit by hand, a `docker login` into a shared
//! file or a `berth login` applies to the next pull without any reload.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::credentials::Credentials;
use crate::error::RegistryError;
use crate::reference::DOCKER_HUB;

/// The key docker writes for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Docker Hub's other names, all meaning `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry name as logins are keyed: `docker.io`, `registry.example.com`, `127.0.0.1:5001`.
/// Accepts what `docker login` accepts: a host, `http(s)://host[:port][/path]`, or empty
/// (docker.io).
pub fn normalize_server(server: &str) -> Result<String, RegistryError> {
    let trimmed = server.trim();
    let no_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = no_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.is_empty() {
        return if trimmed.is_empty() {
            Ok(DOCKER_HUB.to_string())
        } else {
            Err(invalid(server, "no host"))
        };
    }
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:_[]".contains(&b));
    if !valid {
        return Err(invalid(server, "not a host[:port]"));
    }
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        return Ok(DOCKER_HUB.to_string());
    }
    Ok(host)
}

fn invalid(server: &str, why: &str) -> RegistryError {
    RegistryError::InvalidCredentials(format!("registry server {server:?}: {why}"))
}

/// The key `berth login` writes for a normalised server (docker's own choice of key).
pub fn file_key(server: &str) -> String {
    if server == DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        server.to_string()
    }
}

/// One entry of the file, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLogin {
    /// The key as written in the file.
    pub key: String,
    /// [`normalize_server`] of the key.
    pub server: String,
    /// Empty for a token-only entry.
    pub username: String,
    pub credentials: Credentials,
}

/// Parses a config.json. Entries that are malformed or hold no credentials are skipped with a
/// warning (docker's file can hold `{}` entries left by credential helpers).
pub fn parse(text: &[u8]) -> Result<Vec<StoredLogin>, String> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(doc) = doc.as_object() else {
        return Err("not a JSON object".into());
    };
    let Some(auths) = doc.get("auths") else {
        return Ok(Vec::new());
    };
    let Some(auths) = auths.as_object() else {
        return Err("\"auths\" is not an object".into());
    };
    let mut logins = Vec::new();
    for (key, entry) in auths {
        let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
        let decoded = Credentials::from_cri(
            field("username"),
            field("password"),
            field("auth"),
            field("identitytoken"),
            field("registrytoken"),
        );
        let server = normalize_server(key);
        match (server, decoded) {
            (Ok(server), Ok(Some(credentials))) => {
                let username = match &credentials {
                    Credentials::Basic { username, .. } => username.clone(),
                    _ => field("username").to_string(),
                };
                logins.push(StoredLogin {
                    key: key.clone(),
                    server,
                    username,
                    credentials,
                });
            }
            (Ok(_), Ok(None)) => {}
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(key = %key, error = %e, "skipping an unusable entry of the registry auth file");
            }
        }
    }
    Ok(logins)
}

/// What identifies one version of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

type Parsed = Arc<Result<Vec<StoredLogin>, String>>;

/// The credentials file at one path.
pub struct AuthFile {
    path: PathBuf,
    /// The last parse and the stat it was made at (`None`: the file did not exist).
    cache: Mutex<Option<(Option<Stamp>, Parsed)>>,
    /// Serialises read-modify-write cycles (two logins at once must not lose one).
    writing: Mutex<()>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFile")
            .field("path", &self.path)
            .finish()
    }
}

impl AuthFile {
    pub fn new(path: PathBuf) -> AuthFile {
        AuthFile {
            path,
            cache: Mutex::new(None),
            writing: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Config {
            host: "registry.auth_file".into(),
            reason: format!("{}: {reason}", self.path.display()),
        }
    }

    /// Every login in the file (empty when there is no file).
    pub fn logins(&self) -> Result<Vec<StoredLogin>, RegistryError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let parsed = match &*cache {
            Some((cached, parsed)) if *cached == stamp => parsed.clone(),
            _ => {
                let parsed: Parsed = Arc::new(match stamp {
                    None => Ok(Vec::new()),
                    Some(_) => self.read().and_then(|bytes| parse(&bytes)),
                });
                *cache = Some((stamp, parsed.clone()));
                parsed
            }
        };
        match &*parsed {
            Ok(logins) => Ok(logins.clone()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn read(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    /// The credentials stored for `registry` (a reference's registry, e.g. `docker.io`). An
    /// entry under the key `berth login` writes wins over aliases of it.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let Ok(server) = normalize_server(registry) else {
            return Ok(None);
        };
        let logins = self.logins()?;
        let key = file_key(&server);
        let mut matching = logins.into_iter().filter(|l| l.server == server);
        let mut first = None;
        for login in matching.by_ref() {
            if login.key == key {
                return Ok(Some(login.credentials));
            }
            first.get_or_insert(login);
        }
        Ok(first.map(|l| l.credentials))
    }

    /// The file as a JSON object to change, `{}` if it does not exist. A file that is not a JSON
    /// object is an error: overwriting it would lose what it holds.
    fn document(&self) -> Result<Map<String, Value>, RegistryError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(self.error(e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(doc)) => Ok(doc),
            Ok(_) => Err(self.error("not a JSON object; not overwriting it")),
            Err(e) => Err(self.error(format_args!("not JSON ({e}); not overwriting it"))),
        }
    }

    /// Stores a username and password for `server`, replacing its earlier entries (under any of
    /// its names). Returns the key written.
    pub fn store(
        &self,
        server: &str,
        username: &str,
        password: &str,
    ) -> Result<String, RegistryError> {
        let server = normalize_server(server)?;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut doc = self.document()?;
        let auths = auths_of(&mut doc).map_err(|e| self.error(e))?;
        remove_server(auths, &server);
        let key = file_key(&server);
        let mut entry = Map::new();
        entry.insert(
            "auth".into(),
            Value::String(STANDARD.encode(format!("{username}:{password}"))),
        );
        auths.insert(key.clone(), Value::Object(entry));
        self.write(&Value::Object(doc))?;
        Ok(key)
    }

    /// Removes every entry for `server`; false if there was none.
    pub fn remove(&self, server: &str) -> Result<bool, RegistryError> {
        let server = normalize_server(server)?;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut doc = self.document()?;
        let auths = auths_of(&mut doc).map_err(|e| self.error(e))?;
        if !remove_server(auths, &server) {
            return Ok(false);
        }
        self.write(&Value::Object(doc))?;
        Ok(true)
    }

    /// Replaces the file with `doc`: a 0600 temporary file beside it, fsynced, renamed over it,
    /// the directory fsynced. Readers see the old file or the new one, never a part.
    fn write(&self, doc: &Value) -> Result<(), RegistryError> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.error(e))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut text = serde_json::to_vec_pretty(doc).map_err(|e| self.error(e))?;
        text.push(b'\n');
        let written = (|| {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.error(e));
        }
        Ok(())
    }
}

fn auths_of(doc: &mut Map<String, Value>) -> Result<&mut Map<String, Value>, &'static str> {
    doc.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("\"auths\" is not an object; not overwriting it")
}

/// Drops every key naming `server`; whether there was one.
fn remove_server(auths: &mut Map<String, Value>, server: &str) -> bool {
    let keys: Vec<String> = auths
        .keys()
        .filter(|k| normalize_server(k).is_ok_and(|s| s == server))
        .cloned()
        .collect();
    for key in &keys {
        auths.remove(key);
    }
    !keys.is_empty()
}

/// Logins by server, for listing: the username of each (secrets never leave).
pub fn usernames(logins: &[StoredLogin]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for login in logins {
        out.entry(login.server.clone())
            .or_insert_with(|| login.username.clone());
    }
    out
}

#[cfg(test)]
#[path = "auth_file_tests.rs"]
mod tests;
