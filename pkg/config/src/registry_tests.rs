use std::path::Path;

use super::*;
use crate::{Overrides, load};

fn load_text(text: &str) -> Result<crate::Config, crate::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    std::fs::write(&main, text).unwrap();
    load(Some(&main), &Overrides::default()).map(|l| l.config)
}

#[test]
fn mirrors_are_strings_or_tables() {
    let config = load_text(
        r#"
[registry]
config_path = "/etc/containerd/certs.d"
[registry.hosts."docker.io"]
client_cert = "/c.pem"
headers = { "X-Node" = "n1" }
mirrors = [
  "http://127.0.0.1:5000",
  { url = "https://m.example", ca_file = "/m.pem", client_cert = "/mc.pem", client_key = "/mc.key",
    headers = { "X-Tenant" = "t" }, insecure = true, resolve = false, override_path = true },
]
"#,
    )
    .unwrap();
    assert_eq!(
        config.registry.config_path.as_deref(),
        Some(Path::new("/etc/containerd/certs.d"))
    );
    let host = &config.registry.hosts["docker.io"];
    assert_eq!(host.mirrors[0], Mirror::url("http://127.0.0.1:5000"));
    let m = &host.mirrors[1];
    assert_eq!(m.url, "https://m.example");
    assert!(m.insecure && !m.resolve && m.override_path);
    assert_eq!(m.client_key.as_deref(), Some(Path::new("/mc.key")));
    assert_eq!(m.headers["X-Tenant"], "t");
    assert_eq!(host.headers["X-Node"], "n1");

    // Written back, a plain mirror stays a string and the table keeps what is not default; the
    // result loads to the same configuration.
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("\"http://127.0.0.1:5000\""), "{text}");
    assert!(!text.contains("resolve = true"), "{text}");
    assert_eq!(load_text(&text).unwrap(), config);
}

#[test]
fn mirror_table_mistakes_name_the_key() {
    for (text, want) in [
        ("mirrors = [{ url = \"https://m\", bogus = 1 }]", "bogus"),
        ("mirrors = [{ insecure = true }]", "url"),
        ("mirrors = [3]", "mirror URL or a table"),
        ("mirrors = [\"ftp://m\"]", "http://"),
        (
            "mirrors = [{ url = \"https://m\", client_key = \"/k\" }]",
            "client_cert",
        ),
        ("headers = { \"bad name\" = \"v\" }", "header name"),
        ("client_key = \"/k\"", "client_cert"),
    ] {
        let e = load_text(&format!("[registry.hosts.\"docker.io\"]\n{text}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.contains("registry.hosts"), "{text}: {e}");
    }
    let e = load_text("[registry]\nconfig_path = \"rel\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("registry.config_path"), "{e}");
}

#[test]
fn header_values_are_redacted() {
    let config = load_text(
        "[registry.hosts.\"docker.io\"]\nheaders = { Authorization = \"Bearer s3cret\" }\n\
         mirrors = [{ url = \"https://m\", headers = { X-Key = \"m1rror\" } }]\n",
    )
    .unwrap();
    let debug = format!("{:?}", config.registry);
    let json = config.to_json();
    for secret in ["s3cret", "m1rror"] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!json.contains(secret), "{json}");
    }
    assert!(json.contains("Authorization"), "{json}");
}
