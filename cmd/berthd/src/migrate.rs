//! `berthd config migrate --from-containerd FILE`: containerd's `config.toml` (version 2, the
//! containerd 1.x layout under `plugins."io.containerd.grpc.v1.cri"`, or version 3, containerd
//! 2.x's `plugins."io.containerd.cri.v1.runtime"` and `…images`) as Berth configuration, with a
//! comment on everything that has no equivalent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use toml::{Table, Value};

const CRI_V2: &str = "io.containerd.grpc.v1.cri";
const RUNTIME_V3: &str = "io.containerd.cri.v1.runtime";
const IMAGES_V3: &str = "io.containerd.cri.v1.images";

/// Reads `path` and returns the Berth configuration as commented TOML.
pub fn from_containerd(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let out = translate(&text, &path.display().to_string())?;
    // What we print must load: check it against the model (unknown keys, types) here.
    let table: Table = out
        .parse()
        .context("migrated configuration is not valid TOML")?;
    let config: berth_config::Config = Table::try_into(table)
        .context("migrated configuration does not match Berth's configuration model")?;
    drop(config);
    Ok(out)
}

/// The output: top-level keys, then sections in the order first used, then notes.
#[derive(Default)]
struct Out {
    top: Vec<String>,
    sections: Vec<(String, Vec<String>)>,
    notes: Vec<String>,
}

impl Out {
    fn set(&mut self, section: &str, key: &str, value: impl Into<Value>, comment: &str) {
        let mut line = format!("{key} = {}", value.into());
        if !comment.is_empty() {
            line = format!("# {comment}\n{line}");
        }
        if section.is_empty() {
            self.top.push(line);
            return;
        }
        match self.sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line),
            None => self.sections.push((section.to_string(), vec![line])),
        }
    }

    fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn render(&self, source: &str) -> String {
        let mut s = format!(
            "# Berth configuration migrated from {source} by `berthd config migrate`.\n\
             # Review it, then install it as /etc/berth/config.toml; `berthd config show` prints the\n\
             # effective result with every default.\n"
        );
        for line in &self.top {
            let _ = write!(s, "\n{line}\n");
        }
        for (section, lines) in &self.sections {
            let _ = write!(s, "\n[{section}]\n");
            for line in lines {
                let _ = writeln!(s, "{line}");
            }
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for note in &self.notes {
                for (i, line) in note.lines().enumerate() {
                    let lead = if i == 0 { "# " } else { "#   " };
                    let _ = writeln!(s, "{lead}{line}");
                }
            }
        }
        s
    }
}

fn quoted(key: &str) -> String {
    Value::String(key.to_string()).to_string()
}

fn table<'a>(t: &'a Table, path: &[&str]) -> Option<&'a Table> {
    path.iter()
        .try_fold(t, |t, k| t.get(*k).and_then(Value::as_table))
}

fn string<'a>(t: &'a Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Handler names become RuntimeClass handlers: DNS labels, as Berth's loader requires.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Go durations as containerd writes them ("4h0m0s", "5m", "30s"), in whole seconds.
fn go_duration_secs(s: &str) -> Option<u64> {
    let (mut total, mut number) = (0.0f64, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    // Never negative (digits and dots only); float-to-int casts saturate.
    #[allow(clippy::cast_possible_truncation)]
    let secs = total.round() as u64;
    number.is_empty().then_some(secs)
}

pub fn translate(text: &str, source: &str) -> anyhow::Result<String> {
    let doc: Table = text
        .parse()
        .with_context(|| format!("{source} is not valid TOML"))?;
    let version = doc.get("version").and_then(Value::as_integer).unwrap_or(1);
    let mut out = Out::default();
    let plugins = table(&doc, &["plugins"]).cloned().unwrap_or_default();
    let (runtime, images, streaming) = match version {
        3 => (
            table(&plugins, &[RUNTIME_V3]).cloned().unwrap_or_default(),
            table(&plugins, &[IMAGES_V3]).cloned().unwrap_or_default(),
            table(&plugins, &[CRI_V2]).cloned().unwrap_or_default(),
        ),
        2 => {
            let cri = table(&plugins, &[CRI_V2]).cloned().unwrap_or_default();
            (cri.clone(), cri.clone(), cri)
        }
        v => anyhow::bail!(
            "{source}: config version {v} is not supported (containerd 1.x writes version 2, 2.x version 3)"
        ),
    };
    daemon(&doc, &mut out);
    cri_runtime(&runtime, version, &mut out);
    cri_images(&images, version, &mut out);
    streaming_server(&streaming, &mut out);
    let others: Vec<&String> = plugins
        .keys()
        .filter(|k| ![CRI_V2, RUNTIME_V3, IMAGES_V3].contains(&k.as_str()))
        .collect();
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
        // Three names a line keeps the comment readable.
        let list: Vec<String> = names.chunks(3).map(|c| c.join(", ")).collect();
        out.note(format!(
            "no equivalent (Berth has no plugin system; its snapshots are overlayfs and garbage collection\nruns on image removal): plugins {}",
            list.join(",\n")
        ));
    }
    Ok(out.render(source))
}

/// Top-level daemon settings.
fn daemon(doc: &Table, out: &mut Out) {
    for (key, default) in [
        ("root", "/var/lib/containerd"),
        ("state", "/run/containerd"),
    ] {
        if let Some(dir) = string(doc, key) {
            out.note(format!(
                "containerd's {key} {dir:?}{}: Berth keeps its own {key} (default {})",
                if dir == default { " (its default)" } else { "" },
                if key == "root" {
                    "/var/lib/berth; images are pulled again"
                } else {
                    "/run/berth"
                }
            ));
        }
    }
    if let Some(grpc) = table(doc, &["grpc"]) {
        if let Some(address) = string(grpc, "address") {
            out.note(format!(
                "kubelet's --container-runtime-endpoint changes from unix://{address} to Berth's listen\naddress (default unix:///run/berth/berth.sock)"
            ));
        }
        for key in ["max_recv_message_size", "max_send_message_size"] {
            if let Some(size) = grpc.get(key).and_then(Value::as_integer) {
                let size = size.max(16 * 1024 * 1024);
                out.set("grpc", key, size, "");
            }
        }
        if let Some(gid) = grpc
            .get("gid")
            .and_then(Value::as_integer)
            .filter(|g| *g != 0)
        {
            out.set("grpc", "socket_gid", gid, "group owning the CRI socket");
        }
    }
    if let Some(level) = table(doc, &["debug"]).and_then(|d| string(d, "level")) {
        let level = match level {
            "fatal" | "panic" => "error",
            "warning" => "warn",
            other => other,
        };
        if level.parse::<berth_config::LogLevel>().is_ok() {
            out.set("log", "level", level, "");
        } else {
            out.note(format!("no equivalent: debug.level {level:?}"));
        }
    }
    if let Some(address) = table(doc, &["metrics"]).and_then(|m| string(m, "address")) {
        let full = if address.starts_with(':') {
            format!("0.0.0.0{address}")
        } else {
            address.to_string()
        };
        if full.parse::<std::net::SocketAddr>().is_ok() {
            out.set(
                "metrics",
                "address",
                full,
                "Prometheus metrics on /metrics (Berth's own names)",
            );
        } else {
            out.note(format!(
                "metrics.address {address:?}: Berth needs an IP:port"
            ));
        }
    }
}

/// CNI, runtime handlers and the cgroup driver.
fn cri_runtime(cri: &Table, version: i64, out: &mut Out) {
    if let Some(cni) = table(cri, &["cni"]) {
        if let Some(dir) = string(cni, "conf_dir") {
            out.set("cni", "conf_dir", dir, "");
        }
        let mut bins: Vec<String> = string(cni, "bin_dir")
            .map(str::to_string)
            .into_iter()
            .collect();
        if let Some(list) = cni.get("bin_dirs").and_then(Value::as_array) {
            bins.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
        if !bins.is_empty() {
            out.set("cni", "bin_dirs", bins, "");
        }
        if cni
            .get("max_conf_num")
            .and_then(Value::as_integer)
            .is_some_and(|n| n != 1)
        {
            out.note("no equivalent: cni.max_conf_num (Berth uses the first valid network configuration)");
        }
    }
    let containerd = table(cri, &["containerd"]).cloned().unwrap_or_default();
    let mut systemd = cri
        .get("systemd_cgroup")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut handlers = Vec::new();
    let mut default = string(&containerd, "default_runtime_name").map(str::to_string);
    // (name, binary, shim, root), emitted after `[runtime]`.
    if let Some(runtimes) = table(&containerd, &["runtimes"]) {
        for (name, rt) in runtimes {
            let Some(rt) = rt.as_table() else { continue };
            let options = table(rt, &["options"]).cloned().unwrap_or_default();
            systemd |= options
                .get("SystemdCgroup")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let kind = string(rt, "runtime_type").unwrap_or("io.containerd.runc.v2");
            let binary = string(&options, "BinaryName")
                .or_else(|| string(rt, "runtime_path"))
                .unwrap_or(if kind.starts_with("io.containerd.runc") {
                    "runc"
                } else {
                    ""
                });
            let valid = is_dns_label(name);
            if !kind.starts_with("io.containerd.runc") && string(&options, "BinaryName").is_none() {
                out.note(format!(
                    "runtime {name:?} uses the shim {kind}: Berth runs OCI-CLI runtimes (runc, crun, runsc, ...)\ndirectly; add [runtime.handlers.{name}] with path = the runtime binary if it has one"
                ));
                continue;
            }
            if !valid {
                out.note(format!("runtime {name:?}: a Berth handler name must be a DNS label; rename it and its RuntimeClass"));
                continue;
            }
            let root = string(&options, "Root").map(str::to_string);
            handlers.push((name.clone(), binary.to_string(), kind.to_string(), root));
        }
    }
    // Berth's built-in handler table already has runc.
    if let Some(d) = default.take() {
        if d == "runc" || handlers.iter().any(|(name, ..)| *name == d) {
            out.set("runtime", "default_handler", d, "");
        } else {
            out.note(format!(
                "default_runtime_name {d:?} was not migrated; Berth's default handler stays runc"
            ));
        }
    }
    for (name, binary, kind, root) in handlers {
        let section = format!("runtime.handlers.{}", quoted(&name));
        let comment = format!("from runtimes.{name} ({kind})");
        out.set(&section, "path", binary, &comment);
        if let Some(root) = root {
            out.set(&section, "root", root, "");
        }
    }
    out.set(
        "cgroup",
        "driver",
        if systemd { "systemd" } else { "cgroupfs" },
        "from SystemdCgroup; must match kubelet's --cgroup-driver",
    );
    if let Some(s) = string(&containerd, "snapshotter").filter(|s| *s != "overlayfs") {
        out.note(format!(
            "no equivalent: snapshotter {s:?} (Berth uses overlayfs)"
        ));
    }
    if version == 2
        && let Some(image) = string(cri, "sandbox_image")
    {
        out.note(format!(
            "sandbox_image {image:?}: Berth has no pause container (pods hold their namespaces\nwithout one); nothing to configure"
        ));
    }
    cdi(cri, version, out);
    for (key, what) in [
        ("enable_selinux", "SELinux labelling"),
        ("enable_unprivileged_ports", "unprivileged ports sysctl"),
        ("enable_unprivileged_icmp", "unprivileged ICMP sysctl"),
        ("restrict_oom_score_adj", "OOM score clamping"),
    ] {
        if cri.get(key).and_then(Value::as_bool) == Some(true) {
            out.note(format!("no equivalent: {key} = true ({what})"));
        }
    }
    if let Some(n) = cri
        .get("max_container_log_line_size")
        .and_then(Value::as_integer)
        && n != 16384
    {
        out.note(format!(
            "no equivalent: max_container_log_line_size = {n} (Berth does not split long lines)"
        ));
    }
}

/// `enable_cdi` and `cdi_spec_dirs` as `[cdi]`. containerd 1.7 has CDI off unless enabled,
/// 2.x on (as Berth): the migrated node keeps what it had.
fn cdi(cri: &Table, version: i64, out: &mut Out) {
    let enable = cri.get("enable_cdi").and_then(Value::as_bool);
    if !enable.unwrap_or(version >= 3) {
        let why = match enable {
            Some(_) => "from enable_cdi",
            None => "containerd 1.x runs without CDI unless enable_cdi = true",
        };
        out.set("cdi", "enabled", false, why);
    }
    if let Some(dirs) = cri.get("cdi_spec_dirs").and_then(Value::as_array) {
        let dirs: Vec<Value> = dirs
            .iter()
            .filter_map(Value::as_str)
            .map(Value::from)
            .collect();
        out.set("cdi", "spec_dirs", dirs, "from cdi_spec_dirs");
    }
}

/// Pulls, pinned images and registries.
fn cri_images(images: &Table, version: i64, out: &mut Out) {
    if let Some(n) = images
        .get("max_concurrent_downloads")
        .and_then(Value::as_integer)
        .filter(|n| *n > 0)
    {
        out.set("image", "max_concurrent_downloads", n, "");
    }
    if let Some(secs) = string(images, "image_pull_progress_timeout")
        .and_then(go_duration_secs)
        .filter(|s| *s > 0)
    {
        out.set(
            "image",
            "pull_stall_timeout_secs",
            secs as i64,
            "from image_pull_progress_timeout",
        );
    }
    if version == 3
        && let Some(pinned) = table(images, &["pinned_images"])
    {
        for (name, image) in pinned {
            let image = image.as_str().unwrap_or_default();
            if name == "sandbox" {
                out.note(format!(
                    "pinned_images.sandbox {image:?}: Berth has no pause container; nothing to pin"
                ));
            } else {
                out.note(format!("pinned_images.{name} {image:?}: list it in image.pinned if kubelet must keep it"));
            }
        }
    }
    let Some(registry) = table(images, &["registry"]) else {
        return;
    };
    if let Some(path) = string(registry, "config_path") {
        let first = path.split(':').next().unwrap_or(path);
        if first != path {
            out.note(format!(
                "registry.config_path {path:?}: Berth reads one directory, {first:?}"
            ));
        }
        out.set(
            "registry",
            "config_path",
            first,
            "containerd's hosts.toml directory, read as containerd does",
        );
    }
    // Host tables, each a list of (key, value) in the order found.
    let mut hosts: BTreeMap<String, Vec<(&str, Value)>> = BTreeMap::new();
    fn push(
        hosts: &mut BTreeMap<String, Vec<(&str, Value)>>,
        host: &str,
        key: &'static str,
        v: Value,
    ) {
        hosts.entry(host.to_string()).or_default().push((key, v));
    }
    for (name, m) in table(registry, &["mirrors"]).into_iter().flatten() {
        let endpoints: Vec<Value> = m
            .get("endpoint")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|v| v.as_str().is_some()).cloned().collect())
            .unwrap_or_default();
        push(&mut hosts, name, "mirrors", Value::Array(endpoints));
    }
    const AUTH: [(&str, &str); 4] = [
        ("username", "username"),
        ("password", "password"),
        ("auth", "auth"),
        ("identitytoken", "identity_token"),
    ];
    const TLS: [(&str, &str); 3] = [
        ("ca_file", "ca_file"),
        ("cert_file", "client_cert"),
        ("key_file", "client_key"),
    ];
    // `auths` is the older spelling of `configs.<host>.auth`.
    let auths = table(registry, &["auths"]).into_iter().flatten();
    let configs = || table(registry, &["configs"]).into_iter().flatten();
    for (name, auth) in auths
        .filter_map(|(n, a)| Some((n, a.as_table()?)))
        .chain(configs().filter_map(|(n, c)| Some((n, table(c.as_table()?, &["auth"])?))))
    {
        for (from, to) in AUTH {
            if let Some(v) = string(auth, from) {
                push(&mut hosts, name, to, v.into());
            }
        }
    }
    for (name, tls) in configs().filter_map(|(n, c)| Some((n, table(c.as_table()?, &["tls"])?))) {
        for (from, to) in TLS {
            if let Some(v) = string(tls, from) {
                push(&mut hosts, name, to, v.into());
            }
        }
        if tls.get("insecure_skip_verify").and_then(Value::as_bool) == Some(true) {
            push(&mut hosts, name, "insecure", true.into());
        }
    }
    if let Some(headers) = table(registry, &["headers"]).filter(|h| !h.is_empty()) {
        let mut t = Table::new();
        for (k, v) in headers {
            // Several values of one header are one comma-separated value in HTTP.
            let joined = match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.as_str().unwrap_or_default().to_string(),
            };
            t.insert(k.clone(), Value::String(joined));
        }
        push(&mut hosts, "*", "headers", Value::Table(t));
        out.note("registry.headers became the catch-all host's headers; a [registry.hosts.\"*\"] table that sets\nheaders takes precedence over config_path's _default");
    }
    for (name, entries) in hosts {
        let section = format!("registry.hosts.{}", quoted(&name));
        for (key, value) in entries {
            out.set(&section, key, value, "");
        }
    }
}

/// The exec/attach/port-forward server.
fn streaming_server(cri: &Table, out: &mut Out) {
    let address = string(cri, "stream_server_address");
    let port = string(cri, "stream_server_port");
    if address.is_some() || port.is_some() {
        let address = format!("{}:{}", address.unwrap_or("127.0.0.1"), port.unwrap_or("0"));
        if address.parse::<std::net::SocketAddr>().is_ok() {
            out.set("streaming", "address", address, "");
        } else {
            out.note(format!(
                "stream_server_address {address:?}: Berth needs an IP:port"
            ));
        }
    }
    if let Some(secs) = string(cri, "stream_idle_timeout")
        .and_then(go_duration_secs)
        .filter(|s| *s > 0)
    {
        out.set("streaming", "idle_timeout_secs", secs as i64, "");
    }
    if cri.get("enable_tls_streaming").and_then(Value::as_bool) == Some(true) {
        let pair = table(cri, &["x509_key_pair_streaming"]);
        match pair.and_then(|p| Some((string(p, "tls_cert_file")?, string(p, "tls_key_file")?))) {
            Some((cert, key)) => {
                out.set("streaming", "tls_cert_file", cert, "");
                out.set("streaming", "tls_key_file", key, "");
            }
            None => out.note("enable_tls_streaming without x509_key_pair_streaming files: Berth does not make a self-signed\ncertificate; set streaming.tls_cert_file and tls_key_file"),
        }
    }
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
