//! The flags `berth create` and `berth run` share, and their parsers: memory sizes, CPUs, volumes,
//! environment variables, users.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::Args;

/// The CFS period kubelet and docker use: `--cpus 0.5` is a 50 ms quota per 100 ms.
pub const CPU_PERIOD: i64 = 100_000;

/// What a container is made of, as `docker create` takes it.
#[derive(Debug, Clone, Args)]
pub struct ContainerArgs {
    /// Container name (default: the image's name with a random suffix).
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable, KEY=VALUE (or KEY: take it from this shell); repeatable.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the image's).
    #[arg(long = "workdir", short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as this user: UID or name, optionally with :GID.
    #[arg(long, short = 'u', value_name = "USER[:GID]")]
    pub user: Option<String>,
    /// Give the container a terminal (its output is logged as stdout).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Keep the container's stdin open, for `berth attach` to write to.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Memory limit: bytes, or with a unit: 512k, 16m, 1g (1024-based).
    #[arg(long, short = 'm', value_name = "SIZE", value_parser = memory)]
    pub memory: Option<i64>,
    /// CPU limit in CPUs, e.g. 0.5 or 2 (a CFS quota per 100 ms period).
    #[arg(long, value_name = "CPUS", value_parser = cpus)]
    pub cpus: Option<Cpus>,
    /// Bind mount HOST:CONTAINER[:ro|rw][,rshared|rslave|rprivate], or a named volume
    /// NAME:CONTAINER[:ro] (made if missing; see `berth volume`); repeatable.
    #[arg(long = "volume", short = 'v', value_name = "HOST|NAME:CONTAINER[:ro]", value_parser = volume)]
    pub volumes: Vec<cri::Mount>,
    /// Container label KEY=VALUE; repeatable.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Replace the image's entrypoint (CMD then replaces the image's Cmd, as in docker).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The image (a reference, pulled if absent, or an image ID), then the command and its
    /// arguments, which replace the image's Cmd (the entrypoint stays). Everything after the image
    /// belongs to the command, flags too.
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_names = ["IMAGE", "CMD"]
    )]
    pub image_and_command: Vec<String>,
}

/// The usage line of `create` and `run`.
pub const USAGE: &str = "[OPTIONS] IMAGE [CMD [ARG...]]";

/// `--cpus` as CFS quota and period, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus {
    pub quota: i64,
    pub period: i64,
}

/// `16m`, `1g`, `512k`, `1048576`, `1.5g`, `64Mi`: docker's 1024-based units, case-insensitive.
pub fn memory(spec: &str) -> Result<i64, String> {
    let lower = spec.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => {
            return Err(format!(
                "{spec:?}: unknown unit {unit:?} (use b, k, m, g or t)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{spec:?} is not a size such as 16m, 1g or 1048576"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < i64::MAX as f64) {
        return Err(format!("{spec:?}: the size must be at least 1 byte"));
    }
    // In 1..i64::MAX, checked above.
    #[allow(clippy::cast_possible_truncation)]
    let bytes = bytes as i64;
    Ok(bytes)
}

/// `0.5` → 50000 µs per 100000 µs. The kernel refuses quotas below 1 ms.
pub fn cpus(spec: &str) -> Result<Cpus, String> {
    let value: f64 = spec
        .trim()
        .parse()
        .map_err(|_| format!("{spec:?} is not a number of CPUs such as 0.5 or 2"))?;
    if !value.is_finite() || value <= 0.0 || value > 1e6 {
        return Err(format!("{spec:?}: the number of CPUs must be positive"));
    }
    // value is at most 1e6 CPUs, so the quota is far below i64::MAX.
    #[allow(clippy::cast_possible_truncation)]
    let quota = (value * CPU_PERIOD as f64).round() as i64;
    if quota < 1000 {
        return Err(format!("{spec:?}: at least 0.01 CPUs"));
    }
    Ok(Cpus {
        quota,
        period: CPU_PERIOD,
    })
}

/// `HOST:CONTAINER[:OPTIONS]`, OPTIONS comma-separated: `ro`, `rw`, `rprivate`, `rslave`,
/// `rshared`. As docker: a source with a leading `/` is a host path, one starting with `.` a
/// path from the current directory, anything else a volume name (kept as the mount's host path
/// until [`crate::volume::resolve_mounts`] replaces it with the volume's data dir).
pub fn volume(spec: &str) -> Result<cri::Mount, String> {
    let mut parts = spec.split(':');
    let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
        return Err(format!("{spec:?}: expected HOST:CONTAINER[:ro]"));
    };
    let options = parts.next().unwrap_or("");
    if parts.next().is_some() {
        return Err(format!("{spec:?}: expected HOST:CONTAINER[:ro]"));
    }
    if host.is_empty() {
        return Err(format!("{spec:?}: the host path is empty"));
    }
    if !container.starts_with('/') {
        return Err(format!("{spec:?}: the container path must be absolute"));
    }
    let host = if host.starts_with('/') || host.starts_with('.') {
        std::path::absolute(host)
            .map_err(|e| format!("{spec:?}: {e}"))?
            .to_string_lossy()
            .into_owned()
    } else {
        valid_volume_name(host).map_err(|e| format!("{spec:?}: {e}"))?;
        host.to_string()
    };
    let mut mount = cri::Mount {
        container_path: container.to_string(),
        host_path: host,
        ..Default::default()
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => mount.readonly = true,
            "rw" => mount.readonly = false,
            "rprivate" | "private" => {
                mount.propagation = cri::MountPropagation::PropagationPrivate as i32
            }
            "rslave" | "slave" => {
                mount.propagation = cri::MountPropagation::PropagationHostToContainer as i32
            }
            "rshared" | "shared" => {
                mount.propagation = cri::MountPropagation::PropagationBidirectional as i32
            }
            other => {
                return Err(format!(
                    "{spec:?}: unknown option {other:?} (ro, rw, rprivate, rslave or rshared)"
                ));
            }
        }
    }
    Ok(mount)
}

/// docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_volume_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if first && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is neither an absolute path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ))
    }
}

/// The volume a `-v` mount names, if it names one rather than a host path.
pub fn volume_name(mount: &cri::Mount) -> Option<&str> {
    (!mount.host_path.starts_with('/')).then_some(mount.host_path.as_str())
}

/// `KEY=VALUE`, or `KEY` alone: the value `lookup` gives (this shell's), dropped when it has none,
/// as docker does.
pub fn env(
    spec: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<cri::KeyValue>> {
    let (key, value) = match spec.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (spec, lookup(spec)),
    };
    if key.is_empty() {
        bail!("--env {spec:?}: the name is empty");
    }
    Ok(value.map(|value| cri::KeyValue {
        key: key.to_string(),
        value,
    }))
}

/// `-u`: `1000`, `1000:1000`, `nobody`, `nobody:65534`. CRI names groups by GID only.
pub fn user(spec: &str, security: &mut cri::LinuxContainerSecurityContext) -> anyhow::Result<()> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user.is_empty() {
        bail!("--user {spec:?}: the user is empty");
    }
    match user.parse::<i64>() {
        Ok(uid) if uid >= 0 => security.run_as_user = Some(cri::Int64Value { value: uid }),
        Ok(_) => bail!("--user {spec:?}: a UID can't be negative"),
        Err(_) => security.run_as_username = user.to_string(),
    }
    if let Some(group) = group {
        let gid = group
            .parse::<i64>()
            .ok()
            .filter(|g| *g >= 0)
            .with_context(|| format!("--user {spec:?}: the group must be a numeric GID"))?;
        security.run_as_group = Some(cri::Int64Value { value: gid });
    }
    Ok(())
}

/// `KEY=VALUE` labels (shared with `runp`).
pub fn labels(specs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    crate::pods::labels(specs)
}

/// A random 64-bit number (std's hasher keys are random per process and per call).
pub fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// A name for a container (and its pod) from the image: `busybox-3f2a1c`. A valid hostname.
pub fn default_name(image: &str) -> String {
    let path = image.split('@').next().unwrap_or(image);
    let last = path.rsplit('/').next().unwrap_or(path);
    let base = last.split(':').next().unwrap_or(last);
    let mut name: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() || image.starts_with("sha256:") {
        name = "berth".to_string();
    }
    format!("{name}-{:06x}", random() & 0xff_ffff)
}

impl ContainerArgs {
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }

    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_name(self.image()))
    }

    /// The CreateContainer config (`name` from [`ContainerArgs::name`], decided once).
    pub fn config(&self, name: &str, log_path: &str) -> anyhow::Result<cri::ContainerConfig> {
        let mut envs = Vec::new();
        for spec in &self.env {
            envs.extend(env(spec, |k| std::env::var(k).ok())?);
        }
        let mut security = cri::LinuxContainerSecurityContext::default();
        if let Some(spec) = &self.user {
            user(spec, &mut security)?;
        }
        let mut resources = cri::LinuxContainerResources::default();
        if let Some(bytes) = self.memory {
            resources.memory_limit_in_bytes = bytes;
        }
        if let Some(cpus) = self.cpus {
            resources.cpu_quota = cpus.quota;
            resources.cpu_period = cpus.period;
        }
        Ok(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image().to_string(),
                user_specified_image: self.image().to_string(),
                ..Default::default()
            }),
            command: self.entrypoint.iter().cloned().collect(),
            args: self.command().to_vec(),
            working_dir: self.workdir.clone().unwrap_or_default(),
            envs,
            mounts: self.volumes.clone(),
            labels: labels(&self.labels)?,
            log_path: log_path.to_string(),
            stdin: self.interactive,
            stdin_once: false,
            tty: self.tty,
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(security),
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("1048576"), Ok(1_048_576));
        assert_eq!(memory("16m"), Ok(16 << 20));
        assert_eq!(memory("16M"), Ok(16 << 20));
        assert_eq!(memory("16mb"), Ok(16 << 20));
        assert_eq!(memory("64Mi"), Ok(64 << 20));
        assert_eq!(memory("1g"), Ok(1 << 30));
        assert_eq!(memory("1.5g"), Ok(3 << 29));
        assert_eq!(memory("512k"), Ok(512 << 10));
        assert_eq!(memory("100b"), Ok(100));
        for bad in ["", "m", "16x", "-1m", "0", "1..5g", "1e3"] {
            assert!(memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_are_a_quota_per_100ms() {
        assert_eq!(
            cpus("0.5"),
            Ok(Cpus {
                quota: 50_000,
                period: 100_000
            })
        );
        assert_eq!(cpus("2").unwrap().quota, 200_000);
        assert_eq!(cpus("0.25").unwrap().quota, 25_000);
        assert_eq!(cpus("0.01").unwrap().quota, 1_000);
        for bad in ["0", "-1", "x", "0.001", "inf", "NaN"] {
            assert!(cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes() {
        let m = volume("/data:/data").unwrap();
        assert_eq!(
            (m.host_path.as_str(), m.container_path.as_str()),
            ("/data", "/data")
        );
        assert!(!m.readonly);
        let m = volume("/etc/hosts:/h:ro").unwrap();
        assert!(m.readonly);
        let m = volume("/a:/b:ro,rshared").unwrap();
        assert!(m.readonly);
        assert_eq!(
            m.propagation,
            cri::MountPropagation::PropagationBidirectional as i32
        );
        let m = volume("./rel/dir:/b:rw").unwrap();
        assert!(m.host_path.starts_with('/') && m.host_path.ends_with("/rel/dir"));
        assert_eq!(volume_name(&m), None);
        // Without a leading `/` or `.`: a named volume, resolved later.
        let m = volume("data_1.x:/data:ro").unwrap();
        assert_eq!((volume_name(&m), m.readonly), (Some("data_1.x"), true));
        let bad = [
            "/a",
            "/a:b",
            ":/b",
            "/a:/b:rx",
            "/a:/b:ro:x",
            "rel/dir:/b",
            "-v:/b",
            "a b:/c",
        ];
        for bad in bad {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_vars() {
        let none = |_: &str| None;
        let kv = env("A=b=c", none).unwrap().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("A", "b=c"));
        let kv = env("EMPTY=", none).unwrap().unwrap();
        assert_eq!(kv.value, "");
        assert!(env("UNSET", none).unwrap().is_none());
        let kv = env("HOME", |k| Some(format!("{k}-value")))
            .unwrap()
            .unwrap();
        assert_eq!(kv.value, "HOME-value");
        assert!(env("=x", none).is_err());
    }

    #[test]
    fn users() {
        let parse = |spec| {
            let mut s = cri::LinuxContainerSecurityContext::default();
            user(spec, &mut s).map(|()| s)
        };
        let s = parse("1000").unwrap();
        assert_eq!(s.run_as_user.map(|u| u.value), Some(1000));
        let s = parse("1000:2000").unwrap();
        assert_eq!(s.run_as_group.map(|g| g.value), Some(2000));
        let s = parse("nobody").unwrap();
        assert_eq!(
            (s.run_as_username.as_str(), s.run_as_user),
            ("nobody", None)
        );
        let s = parse("nobody:65534").unwrap();
        assert_eq!(s.run_as_group.map(|g| g.value), Some(65534));
        for bad in ["", ":1", "1:staff", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_names_are_hostnames() {
        let n = default_name("localhost:5000/berth-test/busy_box:1.0");
        assert!(
            n.starts_with("busy-box-") && n.len() == "busy-box-".len() + 6,
            "{n}"
        );
        assert!(default_name("sha256:abc").starts_with("berth-"));
        assert!(default_name("busybox@sha256:abc").starts_with("busybox-"));
    }

    #[test]
    fn config_maps_flags_to_cri() {
        let args = ContainerArgs {
            name: None,
            env: vec!["A=1".into()],
            workdir: Some("/w".into()),
            user: Some("1:2".into()),
            tty: true,
            interactive: false,
            memory: Some(16 << 20),
            cpus: Some(cpus("1.5").unwrap()),
            volumes: vec![volume("/a:/b:ro").unwrap()],
            labels: vec!["k=v".into()],
            entrypoint: Some("/bin/sh".into()),
            image_and_command: vec!["busybox".into(), "-c".into(), "true".into()],
        };
        let c = args.config("web", "web.log").unwrap();
        assert_eq!(c.command, ["/bin/sh"]);
        assert_eq!(c.args, ["-c", "true"]);
        assert_eq!(c.log_path, "web.log");
        assert!(c.tty && !c.stdin);
        let linux = c.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (r.memory_limit_in_bytes, r.cpu_quota, r.cpu_period),
            (16 << 20, 150_000, 100_000)
        );
        assert_eq!(
            linux.security_context.unwrap().run_as_user.unwrap().value,
            1
        );
        assert_eq!(c.labels["k"], "v");
    }
}
