//! What a plugin is told through its environment (spec section "Parameters").

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cni::CniError;

/// The interface name pods get; kubelet and every CNI runtime assume it.
pub const DEFAULT_IFNAME: &str = "eth0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kubernetes identity of the pod, passed in CNI_ARGS as kubelet's dockershim did; plugins such
/// as Calico and Multus read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodArgs<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub infra_container_id: &'a str,
    pub uid: &'a str,
}

/// Builds CNI_ARGS. `IgnoreUnknown=1` comes first because plugins otherwise reject keys they do not
/// know. A `;` or `=` in a value would inject keys of its own, so such values are refused.
pub fn cni_args(pod: &PodArgs<'_>) -> Result<String, CniError> {
    let pairs = [
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.infra_container_id),
        ("K8S_POD_UID", pod.uid),
    ];
    let mut args = String::from("IgnoreUnknown=1");
    for (key, value) in pairs {
        if value.contains([';', '=', '\0']) {
            return Err(CniError::InvalidRequest(format!(
                "{key} must not contain ';', '=' or NUL"
            )));
        }
        args.push(';');
        args.push_str(key);
        args.push('=');
        args.push_str(value);
    }
    Ok(args)
}

/// The spec restricts container IDs to `[a-zA-Z0-9][a-zA-Z0-9_.-]*`: plugins use them in file names
/// (host-local's reservations) and iptables comments.
pub fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidRequest(format!(
            "container ID {id:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

/// Everything but the command and stdin of one plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnv {
    pub container_id: String,
    /// Empty on a DEL whose namespace is gone, so that plugins still release what they hold.
    pub netns: PathBuf,
    pub ifname: String,
    pub args: String,
    pub bin_dirs: Vec<PathBuf>,
}

/// Used when berthd itself has no PATH (e.g. started with an empty environment); plugins such as
/// portmap and bandwidth exec iptables and tc through it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl PluginEnv {
    /// The complete environment of a plugin: berthd's own is not passed on, so what plugins see does
    /// not depend on how berthd was started (only PATH is kept).
    pub fn vars(&self, command: Command) -> Vec<(String, String)> {
        let path = std::env::var("PATH")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let cni_path: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let mut vars = vec![("CNI_COMMAND".to_string(), command.as_str().to_string())];
        if command != Command::Version {
            vars.extend([
                ("CNI_CONTAINERID".to_string(), self.container_id.clone()),
                ("CNI_NETNS".to_string(), path_str(&self.netns)),
                ("CNI_IFNAME".to_string(), self.ifname.clone()),
                ("CNI_ARGS".to_string(), self.args.clone()),
            ]);
        }
        vars.push(("CNI_PATH".to_string(), cni_path.join(":")));
        vars.push(("PATH".to_string(), path));
        vars
    }
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_cni_args() {
        let args = cni_args(&PodArgs {
            namespace: "default",
            name: "web-0",
            infra_container_id: "abc123",
            uid: "4f1c-77",
        })
        .unwrap();
        assert_eq!(
            args,
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=4f1c-77"
        );
        let forged = PodArgs {
            name: "x;K8S_POD_NAMESPACE=kube-system",
            ..PodArgs::default()
        };
        assert!(matches!(
            cni_args(&forged),
            Err(CniError::InvalidRequest(_))
        ));
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "0abc", "a_b.c-d"] {
            assert!(check_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a/b", "../x", "a b", "é"] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_env() {
        let env = PluginEnv {
            container_id: "c1".into(),
            netns: PathBuf::from("/run/netns/p"),
            ifname: DEFAULT_IFNAME.into(),
            args: "IgnoreUnknown=1".into(),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        };
        let vars = env.vars(Command::Add);
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("CNI_COMMAND"), Some("ADD"));
        assert_eq!(get("CNI_CONTAINERID"), Some("c1"));
        assert_eq!(get("CNI_NETNS"), Some("/run/netns/p"));
        assert_eq!(get("CNI_IFNAME"), Some("eth0"));
        assert_eq!(get("CNI_ARGS"), Some("IgnoreUnknown=1"));
        assert_eq!(get("CNI_PATH"), Some("/opt/cni/bin:/usr/lib/cni"));
        assert!(get("PATH").is_some_and(|p| !p.is_empty()));

        let gone = PluginEnv {
            netns: PathBuf::new(),
            ..env.clone()
        };
        let vars = gone.vars(Command::Del);
        assert!(vars.contains(&("CNI_NETNS".to_string(), String::new())));

        let version = env.vars(Command::Version);
        let keys: Vec<&str> = version.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["CNI_COMMAND", "CNI_PATH", "PATH"]);
    }
}
