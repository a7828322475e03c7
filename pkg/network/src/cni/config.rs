//! Network configuration lists: parsing, and choosing the one the node uses.
//!
//! One implementation serves both network readiness and pod network setup, so that "ready" means
//! exactly "setup would find this configuration and its plugins".

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cni::CniError;
use crate::cni::version::{self, SUPPORTED_VERSIONS, Version};

/// A network configuration list (`.conflist`), or a single-plugin `.conf` wrapped into one as libcni
/// does.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    name: String,
    cni_version: String,
    disable_check: bool,
    plugins: Vec<PluginConfig>,
    /// The list in `.conflist` form, exactly as read (or as wrapped), so that a pod network can be
    /// torn down with the configuration it was set up with after the conf dir changed.
    bytes: Vec<u8>,
}

/// One plugin of a list. The whole JSON object is kept: the spec hands each plugin its own
/// configuration verbatim, plus injected fields, and plugins define their own keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    plugin_type: String,
    capabilities: Vec<String>,
    conf: Map<String, Value>,
}

impl PluginConfig {
    /// The plugin binary's name (`type`).
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// Capabilities the plugin declared `true`; only these get runtimeConfig entries.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn conf(&self) -> &Map<String, Value> {
        &self.conf
    }
}

impl NetworkConfigList {
    /// Parses a `.conflist`. `origin` names the source in errors (a path, or "persisted config").
    pub fn from_conflist_bytes(bytes: &[u8], origin: &str) -> Result<NetworkConfigList, CniError> {
        parse_list(bytes).map_err(|reason| invalid(origin, reason))
    }

    /// Parses a single-plugin `.conf`/`.json` and wraps it into a list of one, carrying its name
    /// and cniVersion over, as libcni's `ConfListFromConf` does.
    pub fn from_conf_bytes(bytes: &[u8], origin: &str) -> Result<NetworkConfigList, CniError> {
        wrap_conf(bytes).map_err(|reason| invalid(origin, reason))
    }

    /// Reads a file, as a list or a single plugin depending on its extension.
    pub fn from_file(path: &Path) -> Result<NetworkConfigList, CniError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CniError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "conflist") {
            NetworkConfigList::from_conflist_bytes(&bytes, &origin)
        } else {
            NetworkConfigList::from_conf_bytes(&bytes, &origin)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spec version plugins are spoken to in (chosen from `cniVersions` when the list has one).
    pub fn cni_version(&self) -> &str {
        &self.cni_version
    }

    pub fn disable_check(&self) -> bool {
        self.disable_check
    }

    pub fn plugins(&self) -> &[PluginConfig] {
        &self.plugins
    }

    /// The list in `.conflist` form; [`NetworkConfigList::from_conflist_bytes`] reads it back.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn invalid(origin: &str, reason: String) -> CniError {
    CniError::InvalidConfig {
        origin: origin.to_string(),
        reason,
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))? {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_string()),
    }
}

fn string_field<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key:?} must be a string")),
    }
}

fn required_string<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match string_field(map, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("missing {key:?}")),
    }
}

fn parse_list(bytes: &[u8]) -> Result<NetworkConfigList, String> {
    let map = parse_object(bytes)?;
    let name = required_string(&map, "name")?.to_string();
    let cni_version = choose_version(&map)?;
    // libcni accepts the string forms too, and configs in the wild use them.
    let disable_check = match map.get("disableCheck") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(_) => return Err("\"disableCheck\" must be a boolean".to_string()),
    };
    let plugins = match map.get("plugins") {
        Some(Value::Array(plugins)) if !plugins.is_empty() => plugins,
        _ => return Err("a .conflist needs a non-empty \"plugins\" list".to_string()),
    };
    let plugins = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| parse_plugin(p).map_err(|e| format!("plugin {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkConfigList {
        name,
        cni_version,
        disable_check,
        plugins,
        bytes: bytes.to_vec(),
    })
}

/// `cniVersions` (spec 1.1) lists every version the file is valid for; the highest one Berth speaks
/// wins over `cniVersion`, as in libcni.
fn choose_version(map: &Map<String, Value>) -> Result<String, String> {
    if let Some(Value::Array(versions)) = map.get("cniVersions")
        && !versions.is_empty()
    {
        return versions
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| Version::is_supported(v))
            .max_by(|a, b| version::compare(a, b))
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "none of \"cniVersions\" is supported (Berth supports {SUPPORTED_VERSIONS:?})"
                )
            });
    }
    let version = required_string(map, "cniVersion")?;
    if !Version::is_supported(version) {
        return Err(format!(
            "unsupported cniVersion {version:?} (Berth supports {SUPPORTED_VERSIONS:?})"
        ));
    }
    Ok(version.to_string())
}

fn parse_plugin(value: &Value) -> Result<PluginConfig, String> {
    let Value::Object(conf) = value else {
        return Err("not a JSON object".to_string());
    };
    let plugin_type = required_string(conf, "type")?.to_string();
    check_plugin_type(&plugin_type)?;
    let capabilities = match conf.get("capabilities") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(caps)) => caps
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(name, _)| name.clone())
            .collect(),
        Some(_) => return Err("\"capabilities\" must be an object".to_string()),
    };
    Ok(PluginConfig {
        plugin_type,
        capabilities,
        conf: conf.clone(),
    })
}

/// The type becomes a file name in the bin dirs: a `/` or `..` would run any binary on the host.
fn check_plugin_type(plugin_type: &str) -> Result<(), String> {
    if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
        return Err(format!("invalid plugin type {plugin_type:?}"));
    }
    Ok(())
}

fn wrap_conf(bytes: &[u8]) -> Result<NetworkConfigList, String> {
    let conf = parse_object(bytes)?;
    let name = required_string(&conf, "name")?.to_string();
    required_string(&conf, "type")?;
    let version = string_field(&conf, "cniVersion")?.unwrap_or_default();
    let list = serde_json::json!({
        "cniVersion": version,
        "name": name,
        "plugins": [Value::Object(conf.clone())],
    });
    let wrapped = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
    parse_list(&wrapped)
}

/// The configuration the node uses, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedNetwork {
    pub config_file: PathBuf,
    pub list: NetworkConfigList,
}

/// Picks the lexically first `.conflist`, `.conf` or `.json` file in `conf_dir` that parses, has a
/// supported version and whose plugins all exist in `bin_dirs`; files failing any of these are
/// skipped (as CRI-O does), and the error lists why each one was.
pub fn load_network(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<SelectedNetwork, CniError> {
    let no_config = |reason: String| CniError::NoConfig {
        conf_dir: conf_dir.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(conf_dir)
        .map_err(|e| no_config(format!("cannot read the directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
                && p.is_file()
        })
        .collect();
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let usable = NetworkConfigList::from_file(&file).and_then(|list| {
            for plugin in list.plugins() {
                find_plugin(bin_dirs, plugin.plugin_type())?;
            }
            Ok(list)
        });
        match usable {
            Ok(list) => {
                return Ok(SelectedNetwork {
                    config_file: file,
                    list,
                });
            }
            Err(CniError::InvalidConfig { reason, .. }) => {
                problems.push(format!("{}: {reason}", file.display()));
            }
            Err(CniError::ReadConfig { source, .. }) => {
                problems.push(format!("{}: {source}", file.display()));
            }
            Err(e) => problems.push(format!("{}: {e}", file.display())),
        }
    }
    if problems.is_empty() {
        Err(no_config("no .conflist, .conf or .json file".to_string()))
    } else {
        Err(no_config(problems.join("; ")))
    }
}

/// The first executable file named `plugin_type` in `bin_dirs`, in order.
pub fn find_plugin(bin_dirs: &[PathBuf], plugin_type: &str) -> Result<PathBuf, CniError> {
    let not_found = || CniError::PluginNotFound {
        plugin: plugin_type.to_string(),
        bin_dirs: bin_dirs.to_vec(),
    };
    check_plugin_type(plugin_type).map_err(|_| not_found())?;
    bin_dirs
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"pods","disableCheck":true,"plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true,"other":false}}]}"#;

    #[test]
    fn parses_a_list_keeping_plugin_json() {
        let list = NetworkConfigList::from_conflist_bytes(LIST.as_bytes(), "t").unwrap();
        assert_eq!(list.name(), "pods");
        assert_eq!(list.cni_version(), "1.0.0");
        assert!(list.disable_check());
        assert_eq!(list.plugins().len(), 2);
        assert_eq!(list.plugins()[0].conf()["bridge"], "cni0");
        assert_eq!(list.plugins()[1].capabilities(), ["portMappings"]);
        assert_eq!(list.as_bytes(), LIST.as_bytes());
    }

    #[test]
    fn wraps_a_single_conf_and_reads_it_back() {
        let conf = r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","isGateway":true}"#;
        let list = NetworkConfigList::from_conf_bytes(conf.as_bytes(), "t").unwrap();
        assert_eq!(list.cni_version(), "0.4.0");
        assert_eq!(list.plugins()[0].plugin_type(), "bridge");
        assert_eq!(list.plugins()[0].conf()["isGateway"], true);
        let again = NetworkConfigList::from_conflist_bytes(list.as_bytes(), "t").unwrap();
        assert_eq!(again, list);
    }

    #[test]
    fn versions() {
        for v in SUPPORTED_VERSIONS {
            let text = format!(r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"x"}}]}}"#);
            assert!(NetworkConfigList::from_conflist_bytes(text.as_bytes(), "t").is_ok());
        }
        for v in ["0.1.0", "0.2.0", "2.0.0", ""] {
            let text = format!(r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"x"}}]}}"#);
            assert!(
                NetworkConfigList::from_conflist_bytes(text.as_bytes(), "t").is_err(),
                "{v}"
            );
        }
        let many = r#"{"cniVersion":"9.9.9","cniVersions":["0.3.1","1.1.0","1.0.0","7.0.0"],"name":"n","plugins":[{"type":"x"}]}"#;
        let list = NetworkConfigList::from_conflist_bytes(many.as_bytes(), "t").unwrap();
        assert_eq!(list.cni_version(), "1.1.0");
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in [
            "[]",
            "{",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","disableCheck":3,"plugins":[{"type":"x"}]}"#,
        ] {
            assert!(
                NetworkConfigList::from_conflist_bytes(bad.as_bytes(), "t").is_err(),
                "{bad}"
            );
        }
    }
}
