//! Which runtime endpoint berth talks to, resolved as crictl resolves it so `berth` works against
//! any CRI runtime on a node: `--endpoint`/`-H`, then `BERTH_ENDPOINT`, then
//! `CONTAINER_RUNTIME_ENDPOINT`, then `runtime-endpoint:` in the crictl config file
//! (`--config`, `CRI_CONFIG_FILE` or /etc/crictl.yaml), then Berth's own socket.

use std::path::Path;

use anyhow::{Context, bail};

pub const DEFAULT: &str = "unix:///run/berth/berth.sock";
/// Where crictl looks for its configuration unless told otherwise.
pub const CRICTL_CONFIG: &str = "/etc/crictl.yaml";

/// What the endpoint can come from, in order of precedence (first set wins).
#[derive(Debug, Default, Clone)]
pub struct Sources<'a> {
    pub flag: Option<&'a str>,
    pub berth_env: Option<&'a str>,
    pub cri_env: Option<&'a str>,
    /// The crictl config file's text, if there is one.
    pub config: Option<&'a str>,
}

/// The endpoint the first non-empty source names, normalised to a `unix://` URL.
pub fn resolve(sources: &Sources) -> anyhow::Result<String> {
    let from_config = sources.config.and_then(runtime_endpoint);
    let chosen = [
        sources.flag,
        sources.berth_env,
        sources.cri_env,
        from_config.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|e| !e.is_empty())
    .unwrap_or(DEFAULT);
    normalise(chosen)
}

/// crictl accepts a bare socket path (with a deprecation warning); so does berth, silently.
fn normalise(endpoint: &str) -> anyhow::Result<String> {
    if endpoint.starts_with("unix://") {
        Ok(endpoint.to_string())
    } else if endpoint.starts_with('/') {
        Ok(format!("unix://{endpoint}"))
    } else {
        bail!("unsupported endpoint {endpoint:?}: only unix:///path (or /path) is supported")
    }
}

/// `runtime-endpoint:` of a crictl config file. crictl's file is flat `key: value` YAML, so a line
/// scan is enough; quotes around the value and trailing comments are dropped.
pub fn runtime_endpoint(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "runtime-endpoint" || line.starts_with([' ', '\t']) {
            return None;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value.split(" #").next().unwrap_or("").trim(),
        };
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// The crictl config file's text: an explicitly named file must be readable, the default one may
/// be absent.
pub fn read_config(explicit: Option<&Path>) -> anyhow::Result<Option<String>> {
    let env = std::env::var_os("CRI_CONFIG_FILE").filter(|v| !v.is_empty());
    let (path, must_exist) = match (explicit, env.as_deref()) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (Path::new(p), true),
        (None, None) => (Path::new(CRICTL_CONFIG), false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_source_set_wins() {
        let config = "runtime-endpoint: unix:///cfg.sock\nimage-endpoint: unix:///img.sock\n";
        let all = Sources {
            flag: Some("unix:///flag.sock"),
            berth_env: Some("unix:///berth.sock"),
            cri_env: Some("unix:///cri.sock"),
            config: Some(config),
        };
        assert_eq!(resolve(&all).unwrap(), "unix:///flag.sock");
        let no_flag = Sources {
            flag: None,
            ..all.clone()
        };
        assert_eq!(resolve(&no_flag).unwrap(), "unix:///berth.sock");
        let cri = Sources {
            berth_env: Some(""),
            ..no_flag.clone()
        };
        assert_eq!(resolve(&cri).unwrap(), "unix:///cri.sock");
        let file = Sources {
            cri_env: None,
            ..cri.clone()
        };
        assert_eq!(resolve(&file).unwrap(), "unix:///cfg.sock");
        let none = Sources {
            config: Some("timeout: 2\n"),
            ..file
        };
        assert_eq!(resolve(&none).unwrap(), DEFAULT);
        assert_eq!(resolve(&Sources::default()).unwrap(), DEFAULT);
    }

    #[test]
    fn crictl_config_values_are_read_like_crictl() {
        assert_eq!(
            runtime_endpoint("debug: false\nruntime-endpoint: \"/run/x.sock\" # c\n").as_deref(),
            Some("/run/x.sock")
        );
        assert_eq!(
            runtime_endpoint("runtime-endpoint: unix:///a.sock # containerd\n").as_deref(),
            Some("unix:///a.sock")
        );
        assert_eq!(runtime_endpoint("runtime-endpoint:\n"), None);
        assert_eq!(
            runtime_endpoint("x:\n  runtime-endpoint: unix:///n\n"),
            None
        );
        let bare = Sources {
            cri_env: Some("/run/containerd/containerd.sock"),
            ..Default::default()
        };
        assert_eq!(
            resolve(&bare).unwrap(),
            "unix:///run/containerd/containerd.sock"
        );
        let tcp = Sources {
            flag: Some("tcp://1.2.3.4:5"),
            ..Default::default()
        };
        assert!(resolve(&tcp).is_err());
    }
}
