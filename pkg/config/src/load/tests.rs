use std::fs;
use std::path::Path;

use super::*;
use crate::{CgroupDriver, DEFAULT_CONFIG_TOML};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn documented_default_is_the_default() {
    let parsed: toml::Table = DEFAULT_CONFIG_TOML.parse().unwrap();
    let config = deserialize(parsed.clone()).unwrap();
    assert_eq!(config, Config::default());
    // Every key of the model appears in the documentation (commented-out optional keys aside).
    let model = toml::Table::try_from(Config::default()).unwrap();
    assert_same_keys(&model, &parsed, "");
    validate(&config).unwrap();
}

fn assert_same_keys(model: &toml::Table, doc: &toml::Table, prefix: &str) {
    for (key, value) in model {
        let doc_value = doc
            .get(key)
            .unwrap_or_else(|| panic!("default.toml lacks key {prefix}{key}"));
        if let (toml::Value::Table(m), toml::Value::Table(d)) = (value, doc_value) {
            assert_same_keys(m, d, &format!("{prefix}{key}."));
        }
    }
}

#[test]
fn missing_default_file_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    // An explicit file that exists but is empty behaves like defaults too.
    let main = dir.path().join("config.toml");
    write(&main, "");
    let loaded = load(Some(&main), &Overrides::default()).unwrap();
    let mut expected = Config::default();
    // The one default that depends on another key (the root).
    expected.registry.auth_file = Some("/var/lib/berth/auth.json".into());
    assert_eq!(loaded.config, expected);
    assert_eq!(loaded.sources, vec![main]);
}

#[test]
fn explicit_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(Some(&dir.path().join("nope.toml")), &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn dropins_apply_in_lexical_order_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "root = \"/a\"\n[log]\nlevel = \"debug\"\n");
    write(
        &dir.path().join("config.d/20-b.toml"),
        "root = \"/c\"\n[cgroup]\ndriver = \"systemd\"\n",
    );
    write(&dir.path().join("config.d/10-a.toml"), "root = \"/b\"\n");
    write(&dir.path().join("config.d/ignored.conf"), "garbage = [");
    let loaded = load(Some(&main), &Overrides::default()).unwrap();
    assert_eq!(loaded.config.root, Path::new("/c"));
    assert_eq!(loaded.config.log.level, LogLevel::Debug);
    assert_eq!(loaded.config.cgroup.driver, CgroupDriver::Systemd);
    assert_eq!(loaded.sources.len(), 3);

    let flags = Overrides {
        root: Some("/flag".into()),
        log_format: Some(LogFormat::Json),
        ..Default::default()
    };
    let loaded = load(Some(&main), &flags).unwrap();
    assert_eq!(loaded.config.root, Path::new("/flag"));
    assert_eq!(loaded.config.log.format, LogFormat::Json);
}

#[test]
fn handler_tables_merge_by_name_and_lists_replace() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(
        &main,
        "[runtime.handlers.crun]\npath = \"/usr/bin/crun\"\n[cni]\nbin_dirs = [\"/x\"]\n",
    );
    let config = load(Some(&main), &Overrides::default()).unwrap().config;
    assert!(config.runtime.handlers.contains_key("runc"));
    assert!(config.runtime.handlers.contains_key("crun"));
    assert_eq!(config.cni.bin_dirs, vec![std::path::PathBuf::from("/x")]);
}

#[test]
fn unknown_key_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "");
    let dropin = dir.path().join("config.d/50-bad.toml");
    write(&dropin, "[grpc]\nmax_recv_message_sise = 1\n");
    let err = load(Some(&main), &Overrides::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("50-bad.toml"), "{text}");
    assert!(text.contains("grpc.max_recv_message_sise"), "{text}");

    write(&dropin, "bogus = true\n");
    let text = load(Some(&main), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(text.contains("key `bogus`"), "{text}");
}

#[test]
fn wrong_type_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "[metrics]\nenabled = \"yes\"\n");
    let text = load(Some(&main), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(text.contains("config.toml"), "{text}");
    assert!(text.contains("metrics.enabled"), "{text}");

    write(&main, "[cgroup]\ndriver = \"cgroupv3\"\n");
    let text = load(Some(&main), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(text.contains("cgroup.driver"), "{text}");
}

#[test]
fn syntax_error_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "[log\nlevel = 1\n");
    let err = load(Some(&main), &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("config.toml"), "{err}");
}

#[test]
fn unreadable_dropin_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "");
    // A directory named like a drop-in cannot be read as a file.
    fs::create_dir_all(dir.path().join("config.d/30-dir.toml")).unwrap();
    let err = load(Some(&main), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("30-dir.toml"), "{err}");
}

#[test]
fn semantic_checks() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    let cases = [
        ("listen = \"tcp://0.0.0.0:1\"\n", "listen"),
        ("listen = \"unix://relative.sock\"\n", "listen"),
        ("root = \"relative\"\n", "root"),
        (
            "[grpc]\nmax_recv_message_size = 4194304\n",
            "grpc.max_recv_message_size",
        ),
        (
            "[runtime]\ndefault_handler = \"kata\"\n",
            "runtime.default_handler",
        ),
        (
            "[runtime.handlers.Bad_Name]\npath = \"x\"\n",
            "runtime.handlers.Bad_Name",
        ),
        ("[cni]\nbin_dirs = [\"rel\"]\n", "cni.bin_dirs"),
        (
            "[cni]\nplugin_timeout_secs = 0\n",
            "cni.plugin_timeout_secs",
        ),
        (
            "[image]\nmax_concurrent_downloads = 0\n",
            "image.max_concurrent_downloads",
        ),
        (
            "[image]\nmax_layer_unpacked_bytes = 0\n",
            "image.max_layer_unpacked_bytes",
        ),
        (
            "[registry.hosts.\"docker.io\"]\nmirrors = [\"ftp://x\"]\n",
            "registry.hosts.docker.io.mirrors",
        ),
    ];
    for (text, key) in cases {
        write(&main, text);
        let err = load(Some(&main), &Overrides::default()).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {err}"
        );
    }
}

#[test]
fn handler_binary_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let handler = crate::RuntimeHandler {
        path: dir.path().join("missing"),
        root: None,
    };
    assert_eq!(handler.resolve_binary(), None);
    let sh = crate::RuntimeHandler {
        path: "sh".into(),
        root: None,
    };
    assert!(sh.resolve_binary().is_some());
}

#[test]
fn json_for_status() {
    let json: serde_json::Value = serde_json::from_str(&Config::default().to_json()).unwrap();
    assert_eq!(json["runtime"]["default_handler"], "runc");
    assert_eq!(json["cgroup"]["driver"], "cgroupfs");
}

#[test]
fn registry_hosts_merge_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(
        &main,
        "[registry.hosts.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:5000\"]\n",
    );
    write(
        &dir.path().join("config.d/10-k8s.toml"),
        "[registry.hosts.\"*\"]\ninsecure = true\n[image]\npinned = [\"registry.k8s.io/pause:3.9\"]\n",
    );
    let config = load(Some(&main), &Overrides::default()).unwrap().config;
    assert_eq!(config.registry.hosts.len(), 2);
    assert_eq!(
        config.registry.hosts["docker.io"].mirrors,
        [crate::Mirror::url("http://127.0.0.1:5000")]
    );
    assert!(config.registry.hosts["*"].insecure);
    assert_eq!(config.image.pinned, ["registry.k8s.io/pause:3.9"]);
    assert_eq!(config.image.max_concurrent_downloads, 3);
}

#[test]
fn registry_secrets_are_redacted_in_debug_and_status_json() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(
        &main,
        "[registry.hosts.\"docker.io\"]\nusername = \"u\"\npassword = \"hunter2\"\n\
         [registry.hosts.\"*\"]\nauth = \"dTpodW50ZXIy\"\nidentity_token = \"tok-secret\"\n",
    );
    let config = load(Some(&main), &Overrides::default()).unwrap().config;
    let debug = format!("{:?}", config.registry);
    let json = config.to_json();
    for secret in ["hunter2", "dTpodW50ZXIy", "tok-secret"] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!json.contains(secret), "{json}");
    }
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["registry"]["hosts"]["docker.io"]["username"], "u");
    assert_eq!(
        json["registry"]["hosts"]["docker.io"]["password"],
        "<redacted>"
    );
    assert!(json["registry"]["hosts"]["docker.io"]["auth"].is_null());
    assert_eq!(
        config.registry.host("quay.io").unwrap().auth.as_deref(),
        Some("dTpodW50ZXIy")
    );
    assert!(config.registry.host("docker.io").unwrap().auth.is_none());
}

#[test]
fn max_layer_unpacked_bytes_defaults_to_64_gib_and_can_be_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    write(&main, "");
    let config = load(Some(&main), &Overrides::default()).unwrap().config;
    assert_eq!(config.image.max_layer_unpacked_bytes, 64 << 30);
    write(&main, "[image]\nmax_layer_unpacked_bytes = 1048576\n");
    let config = load(Some(&main), &Overrides::default()).unwrap().config;
    assert_eq!(config.image.max_layer_unpacked_bytes, 1 << 20);
}
