use std::fs;

use super::*;

#[test]
fn hosts_toml_in_file_order_then_server() {
    let path = Path::new("/etc/containerd/certs.d/docker.io/hosts.toml");
    let text = r#"
server = "https://docker.io"
ca = "top.crt"

[host."https://z-first.example"]
  capabilities = ["pull", "resolve"]
  ca = ["z.crt", "/abs/z2.crt"]
  client = [["c.cert", "c.key"], ["second.pem", ""]]
  skip_verify = true
  [host."https://z-first.example".header]
    x-one = "1"
    x-many = ["a", "b"]

[host."a-second.example:5000/v2/up"]
  capabilities = ["pull"]
  override_path = true
  client = "both.pem"
  dial_timeout = "1s"

[host."https://push-only.example"]
  capabilities = ["push"]
"#;
    let f = parse_hosts_toml(path, text).unwrap();
    let urls: Vec<&str> = f.endpoints.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://z-first.example",
            "https://a-second.example:5000/v2/up",
            "https://registry-1.docker.io"
        ]
    );
    assert!(f.skip_origin);
    let first = &f.endpoints[0];
    let dir = Path::new("/etc/containerd/certs.d/docker.io");
    assert_eq!(
        first.ca_files,
        [dir.join("z.crt"), PathBuf::from("/abs/z2.crt")]
    );
    assert_eq!(
        first.client,
        Some((dir.join("c.cert"), Some(dir.join("c.key"))))
    );
    assert!(first.skip_verify && first.resolve && !first.override_path);
    assert!(first.headers.contains(&("x-many".into(), "b".into())));
    assert_eq!(first.headers.len(), 3);
    let second = &f.endpoints[1];
    assert!(!second.resolve && second.override_path);
    assert_eq!(second.client, Some((dir.join("both.pem"), None)));
    assert_eq!(f.endpoints[2].ca_files, [dir.join("top.crt")]);
    assert_eq!(f.ignored.len(), 2, "{:?}", f.ignored);
}

#[test]
fn without_server_top_level_applies_to_the_origin() {
    let f = parse_hosts_toml(
        Path::new("/d/reg/hosts.toml"),
        "skip_verify = true\n[header]\nx = \"y\"\n",
    )
    .unwrap();
    assert!(f.endpoints.is_empty() && !f.skip_origin);
    assert!(f.origin.skip_verify);
    assert_eq!(f.origin.headers, [("x".to_string(), "y".to_string())]);
}

#[test]
fn mistakes_name_file_and_key() {
    let p = Path::new("/d/x/hosts.toml");
    for (text, want) in [
        (
            "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n",
            "capabilities",
        ),
        ("[host.\"https://m\"]\nclient = 3\n", "client"),
        ("bogus = 1\n", "bogus"),
        ("server = [\n", "hosts.toml"),
    ] {
        let e = parse_hosts_toml(p, text).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("/d/x/hosts.toml"),
            "{text}: {e}"
        );
    }
}

#[test]
fn directory_names_and_docker_cert_files() {
    let dir = tempfile::tempdir().unwrap();
    let ns = |n: &str| {
        let p = dir.path().join(n);
        fs::create_dir_all(&p).unwrap();
        p
    };
    fs::write(
        ns("reg.lan_5000_").join("hosts.toml"),
        "server = \"http://reg.lan:5000\"\n",
    )
    .unwrap();
    fs::write(
        ns("reg.lan:5000").join("hosts.toml"),
        "server = \"https://other\"\n",
    )
    .unwrap();
    fs::write(ns("_default").join("hosts.toml"), "[host.\"https://m\"]\n").unwrap();
    let docker = ns("quay.io");
    fs::write(docker.join("ca.crt"), "").unwrap();
    fs::write(docker.join("me.cert"), "").unwrap();
    fs::write(docker.join("me.key"), "").unwrap();
    let all = read_hosts_dir(dir.path()).unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["_default", "quay.io", "reg.lan:5000"]
    );
    assert_eq!(all["reg.lan:5000"].endpoints[0].url, "http://reg.lan:5000");
    let quay = &all["quay.io"].origin;
    assert_eq!(quay.ca_files, [docker.join("ca.crt")]);
    assert_eq!(
        quay.client,
        Some((docker.join("me.cert"), Some(docker.join("me.key"))))
    );
    assert!(
        read_hosts_dir(&dir.path().join("missing"))
            .unwrap()
            .is_empty()
    );
}
