//! Fixtures for tests that run the real CNI plugins: a network namespace, a conf dir with a bridge
//! network on a private subnet, and cleanup of all of it (plus DEL of every pod network the test set
//! up) when the fixture is dropped, also when the test fails.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_network::{Cni, PodNetwork, PodNetworkRequest};

pub const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Whether this machine can run the plugin tests: root, the plugins and iproute2. Elsewhere the tests
/// skip with a message, except in CI, where a missing prerequisite must fail rather than pass green.
// geteuid: the plugin tests need root.
#[allow(unsafe_code)]
pub fn prerequisites() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for tool in [format!("{PLUGIN_DIR}/bridge"), "/usr/sbin/ip".to_string()] {
        if !Path::new(&tool).exists() {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "CNI plugin tests need {missing:?} (apt-get install containernetworking-plugins iproute2)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// Distinct within this process (a counter) and across concurrent processes (the pid).
fn unique() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    (std::process::id() << 16) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// A distinct /24 per fixture in this process, in 10.213.0.0/16 (private, unlikely to be routed here).
fn next_subnet() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 200;
    u8::try_from((base + NEXT.fetch_add(1, Ordering::Relaxed)) % 250 + 1).expect("1..=250")
}

pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
    deleted: bool,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!("berth-cnitest-{:08x}", unique());
        run_ok("ip", &["netns", "add", &name]);
        Netns {
            name,
            deleted: false,
        }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    pub fn delete(&mut self) {
        if !self.deleted {
            run_ok("ip", &["netns", "del", &self.name]);
            self.deleted = true;
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = run("ip", &["netns", "del", &self.name]);
        }
    }
}

/// A conf dir with a unique bridge and subnet, plus the networks set up in it for cleanup.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub conf_dir: PathBuf,
    pub data_dir: PathBuf,
    pub bridge: String,
    pub subnet: u8,
    pub netns: Netns,
    networks: Mutex<Vec<PodNetwork>>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("net.d");
        let data_dir = dir.path().join("ipam");
        std::fs::create_dir_all(&conf_dir).unwrap();
        Fixture {
            conf_dir,
            data_dir,
            dir,
            bridge: format!("bcn{:08x}", unique()),
            subnet: next_subnet(),
            netns: Netns::new(),
            networks: Mutex::new(Vec::new()),
        }
    }

    pub fn cidr(&self) -> String {
        format!("10.213.{}.0/24", self.subnet)
    }

    pub fn in_subnet(&self, ip: &IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 213, self.subnet])
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// The bridge plugin's JSON for this fixture; `extra` is merged in (e.g. capabilities).
    pub fn bridge_plugin(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut plugin = serde_json::json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir,
                "ranges": [[{ "subnet": self.cidr() }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
            },
        });
        if let (Some(map), serde_json::Value::Object(extra)) = (plugin.as_object_mut(), extra) {
            map.extend(extra);
        }
        plugin
    }

    pub fn write_conflist(&self, file: &str, version: &str, plugins: Vec<serde_json::Value>) {
        let list = serde_json::json!({
            "cniVersion": version,
            "name": format!("net-{}", self.bridge),
            "plugins": plugins,
        });
        std::fs::write(self.conf_dir.join(file), list.to_string()).unwrap();
    }

    pub fn network_name(&self) -> String {
        format!("net-{}", self.bridge)
    }

    pub fn cni(&self) -> Cni {
        Cni::new(
            &self.conf_dir,
            vec![PathBuf::from(PLUGIN_DIR)],
            Duration::from_secs(30),
        )
    }

    pub fn request(&self, sandbox_id: &str) -> PodNetworkRequest {
        PodNetworkRequest {
            sandbox_id: sandbox_id.to_string(),
            netns: Some(self.netns.path()),
            pod_name: "pod".to_string(),
            pod_namespace: "default".to_string(),
            pod_uid: "00000000-0000-0000-0000-000000000001".to_string(),
            ..PodNetworkRequest::default()
        }
    }

    /// Remembers a network for DEL on drop (harmless if the test already deleted it).
    pub fn track(&self, network: &PodNetwork) {
        if let Ok(mut networks) = self.networks.lock() {
            networks.push(network.clone());
        }
    }

    /// host-local's reservations: one file per allocated IP in `dataDir/<network>/`.
    pub fn reservations(&self) -> Vec<String> {
        let dir = self.data_dir.join(self.network_name());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let networks = self
            .networks
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        if !networks.is_empty() {
            let cni = self.cni();
            // Drop may run inside the test's runtime, which cannot be blocked on: use a thread.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                for network in networks {
                    let _ = rt.block_on(cni.teardown(&network.request, Some(&network)));
                }
            })
            .join();
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// Ping from the host; only ever aimed at addresses in namespaces the tests created.
pub fn ping(ip: &IpAddr) -> bool {
    let ip = ip.to_string();
    let args = ["-c1", "-W1", ip.as_str()];
    if Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists() {
        run("ping", &args).status.success()
    } else {
        let mut busybox = vec!["ping"];
        busybox.extend_from_slice(&args);
        run("busybox", &busybox).status.success()
    }
}
