//! The parts of an OCI (or Docker) image config that a container uses.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::SpecError;

/// The parts of an OCI image config a container uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// Sorted (the config has them as the keys of an object).
    pub volumes: Vec<String>,
    pub stop_signal: String,
    /// `8080/tcp`, sorted.
    pub exposed_ports: Vec<String>,
}

/// The config blob: only `config` matters here (`rootfs`, `history`... are the image store's).
#[derive(Deserialize)]
struct Blob {
    #[serde(default)]
    config: Option<RawConfig>,
}

/// Docker and OCI spell these the same. `null` anywhere is as good as absent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "Volumes")]
    volumes: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "StopSignal")]
    stop_signal: Option<String>,
    #[serde(rename = "ExposedPorts")]
    exposed_ports: Option<BTreeMap<String, IgnoredAny>>,
}

/// glibc's SIGRTMIN (the kernel's is 32; glibc keeps two for itself) and SIGRTMAX, as docker's
/// signal table has them.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

impl ImageConfig {
    /// Parses the image config blob (`application/vnd.oci.image.config.v1+json` or Docker's
    /// `application/vnd.docker.container.image.v1+json`). A bad blob is the image's fault:
    /// [`SpecError::InvalidImageConfig`].
    pub fn from_json(config_json: &[u8]) -> Result<ImageConfig, SpecError> {
        let blob: Blob =
            serde_json::from_slice(config_json).map_err(SpecError::InvalidImageConfig)?;
        let c = blob.config.unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            stop_signal: c.stop_signal.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        })
    }

    /// The stop signal number: STOPSIGNAL (`SIGUSR1`, `USR1`, `10`, `SIGRTMIN+3`,
    /// case-insensitive), SIGTERM when the image sets none. A bad name is
    /// [`SpecError::InvalidStopSignal`].
    pub fn stop_signal_number(&self) -> Result<i32, SpecError> {
        if self.stop_signal.trim().is_empty() {
            return Ok(libc::SIGTERM);
        }
        parse_signal(&self.stop_signal)
            .ok_or_else(|| SpecError::InvalidStopSignal(self.stop_signal.clone()))
    }
}

/// A signal by number or name, as docker's `signal.ParseSignal` accepts it.
pub(crate) fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt_signal(SIGRTMIN, rest);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt_signal(SIGRTMAX, rest);
    }
    nix::sys::signal::Signal::from_str(&format!("SIG{name}"))
        .ok()
        .map(|sig| sig as i32)
}

/// `RTMIN`, `RTMIN+n`, `RTMAX-n`, inside the real-time range.
fn rt_signal(base: i32, offset: &str) -> Option<i32> {
    let n = if offset.is_empty() {
        base
    } else if let Some(k) = offset.strip_prefix('+') {
        base.checked_add(k.parse().ok()?)?
    } else if let Some(k) = offset.strip_prefix('-') {
        base.checked_sub(k.parse().ok()?)?
    } else {
        return None;
    };
    (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the test image's config (hack/test-images.sh), with the extra top-level
    /// fields a real blob has.
    const TEST_IMAGE_CONFIG: &str = r#"{
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "User": "berth",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo $GREETING; sleep 3600"],
            "Volumes": {"/data": {}, "/cache": {}},
            "WorkingDir": "/work/dir",
            "Labels": {"org.opencontainers.image.title": "busybox"},
            "StopSignal": "SIGUSR1"
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
        "history": [{"created_by": "test"}]
    }"#;

    #[test]
    fn parses_a_real_config() {
        let c = ImageConfig::from_json(TEST_IMAGE_CONFIG.as_bytes()).unwrap();
        assert_eq!(c.entrypoint, vec!["/bin/sh", "-c"]);
        assert_eq!(c.cmd, vec!["echo $GREETING; sleep 3600"]);
        assert_eq!(
            c.env,
            vec!["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello"]
        );
        assert_eq!(c.working_dir, "/work/dir");
        assert_eq!(c.user, "berth");
        assert_eq!(c.volumes, vec!["/cache", "/data"]);
        assert_eq!(c.exposed_ports, vec!["53/udp", "8080/tcp"]);
        assert_eq!(c.stop_signal, "SIGUSR1");
        assert_eq!(c.stop_signal_number().unwrap(), libc::SIGUSR1);
    }

    #[test]
    fn missing_and_null_fields_are_empty() {
        let c = ImageConfig::from_json(br#"{"architecture":"amd64"}"#).unwrap();
        assert_eq!(c, ImageConfig::default());
        let c = ImageConfig::from_json(
            br#"{"config":{"Entrypoint":null,"Cmd":null,"Env":null,"Volumes":null,"ExposedPorts":null,"User":""}}"#,
        )
        .unwrap();
        assert_eq!(c, ImageConfig::default());
        let c = ImageConfig::from_json(br#"{"config":null}"#).unwrap();
        assert_eq!(c, ImageConfig::default());
        let err = ImageConfig::from_json(b"not json").unwrap_err();
        assert!(matches!(err, SpecError::InvalidImageConfig(_)));
        let err = ImageConfig::from_json(br#"{"config":{"Cmd":"ls"}}"#).unwrap_err();
        assert!(matches!(err, SpecError::InvalidImageConfig(_)));
    }

    fn sig(s: &str) -> Result<i32, SpecError> {
        ImageConfig {
            stop_signal: s.into(),
            ..Default::default()
        }
        .stop_signal_number()
    }

    #[test]
    fn stop_signals() {
        assert_eq!(sig("").unwrap(), libc::SIGTERM);
        for s in ["SIGUSR1", "USR1", "usr1", "sigusr1", "10", " SigUsr1 "] {
            assert_eq!(sig(s).unwrap(), libc::SIGUSR1, "{s}");
        }
        assert_eq!(sig("SIGKILL").unwrap(), 9);
        assert_eq!(sig("QUIT").unwrap(), libc::SIGQUIT);
        assert_eq!(sig("SIGRTMIN").unwrap(), 34);
        assert_eq!(sig("RTMIN+3").unwrap(), 37);
        assert_eq!(sig("SIGRTMAX-1").unwrap(), 63);
        assert_eq!(sig("64").unwrap(), 64);
        for bad in [
            "SIGNOPE", "0", "65", "-1", "RTMAX+1", "RTMIN-1", "SIG", "RTMINx",
        ] {
            assert!(
                matches!(sig(bad), Err(SpecError::InvalidStopSignal(_))),
                "{bad}"
            );
        }
    }
}
