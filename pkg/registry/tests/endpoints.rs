//! Per-endpoint options against real servers: extra headers and override_path seen by a local
//! HTTP server, `capabilities = ["pull"]` mirrors never asked for tags, and TLS client
//! certificates required by a real `docker-registry` (openssl makes the certificates).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_registry::{Client, Mirror, Reference, RegistryConfig, RegistryError, RegistryHost};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that records each request's head and answers 404.
async fn recorder() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_lowercase());
                let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#;
                let resp = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    (address, seen)
}

/// A directory removed when dropped (no tempfile crate here: the registry crate's tests need
/// nothing else from it).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("berth-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(hosts: &[(&str, RegistryHost)]) -> RegistryConfig {
    RegistryConfig {
        hosts: hosts
            .iter()
            .map(|(k, h)| (k.to_string(), h.clone()))
            .collect(),
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn mirror_and_host_headers_are_sent() {
    let (address, seen) = recorder().await;
    let mut mirror = Mirror::url(format!("http://{address}"));
    mirror.headers.insert("X-Mirror".into(), "m-value".into());
    mirror.headers.insert("X-Both".into(), "from-mirror".into());
    let mut host = RegistryHost {
        mirrors: vec![mirror],
        skip_origin: true,
        ..RegistryHost::default()
    };
    host.headers.insert("X-Host".into(), "h-value".into());
    host.headers.insert("X-Both".into(), "from-host".into());
    let client = Client::new(config(&[("reg.test", host)])).unwrap();
    let e = client
        .fetch_manifest(&Reference::parse("reg.test/team/app:v1").unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = &seen[0];
    assert!(
        head.starts_with("get /v2/team/app/manifests/v1?ns=reg.test "),
        "{head}"
    );
    assert!(head.contains("x-mirror: m-value\r\n"), "{head}");
    assert!(head.contains("x-host: h-value\r\n"), "{head}");
    assert!(head.contains("x-both: from-mirror\r\n"), "{head}");
    assert!(!head.contains("from-host"), "{head}");
}

#[tokio::test]
async fn hosts_toml_endpoints_headers_path_and_capabilities() {
    let (resolver, resolver_seen) = recorder().await;
    let (puller, puller_seen) = recorder().await;
    let dir = TempDir::new("hosts-toml");
    let ns = dir.path().join("reg.test");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(
        ns.join("hosts.toml"),
        format!(
            "server = \"http://{resolver}/custom/api\"\noverride_path = true\n\
             [header]\nx-server = [\"a\", \"b\"]\n\
             [host.\"http://{puller}\"]\ncapabilities = [\"pull\"]\n\
             [host.\"http://{puller}\".header]\nx-puller = \"p\"\n"
        ),
    )
    .unwrap();
    let cfg = RegistryConfig {
        config_path: Some(dir.path().to_path_buf()),
        ..RegistryConfig::default()
    };
    let client = Client::new(cfg).unwrap();
    let by_tag = Reference::parse("reg.test/app:v1").unwrap();
    client.fetch_manifest(&by_tag, None).await.unwrap_err();
    // A tag goes only to the endpoint that may resolve: the server, at its own API root (with
    // `?ns=`, as containerd sends it to any host that is not the registry itself).
    assert!(puller_seen.lock().unwrap().is_empty());
    {
        let seen = resolver_seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with("get /custom/api/app/manifests/v1?ns=reg.test "),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("x-server: a\r\n") && seen[0].contains("x-server: b\r\n"));
    }
    // By digest, the pull-only mirror comes first.
    let digest = format!("sha256:{}", "a".repeat(64));
    let by_digest = by_tag.with_digest(digest.clone());
    client.fetch_manifest(&by_digest, None).await.unwrap_err();
    let seen = puller_seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("get /v2/app/manifests/{digest}?ns=reg.test ")),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("x-puller: p\r\n") && !seen[0].contains("x-server"));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-ca",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// `docker-registry` serving TLS and requiring a client certificate signed by the test CA.
struct TlsRegistry {
    address: String,
    child: std::process::Child,
}

impl TlsRegistry {
    fn start(dir: &Path) -> TlsRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        std::fs::write(
            dir.join("registry.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n    \
                 clientcas:\n      - {d}/ca.pem\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("registry.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (hack/install-deps.sh installs it)");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRegistry { address, child }
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn client_certificates_reach_a_registry_that_requires_them() {
    let dir = TempDir::new("client-certs");
    let d = dir.path();
    make_certificates(d);
    let registry = TlsRegistry::start(d);
    let reference = Reference::parse(&format!("{}/absent:v1", registry.address)).unwrap();
    let host = |cert: bool| RegistryHost {
        ca_file: Some(d.join("ca.pem")),
        client_cert: cert.then(|| d.join("client.pem")),
        client_key: cert.then(|| d.join("client.key")),
        ..RegistryHost::default()
    };

    // Without a certificate the handshake fails.
    let client = Client::new(config(&[(&registry.address, host(false))])).unwrap();
    let e = client.fetch_manifest(&reference, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::Network { .. }), "{e}");

    // With one, the registry answers (the repository does not exist).
    let client = Client::new(config(&[(&registry.address, host(true))])).unwrap();
    let e = client.fetch_manifest(&reference, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");

    // The same through a hosts.toml: certificate and key in one file, paths relative to it.
    let hosts = d.join("certs.d");
    let ns = hosts.join(registry.address.replace(':', "_") + "_");
    std::fs::create_dir_all(&ns).unwrap();
    let both = [
        std::fs::read_to_string(d.join("client.pem")).unwrap(),
        std::fs::read_to_string(d.join("client.key")).unwrap(),
    ]
    .join("\n");
    std::fs::write(ns.join("client-both.pem"), both).unwrap();
    std::fs::copy(d.join("ca.pem"), ns.join("ca.pem")).unwrap();
    std::fs::write(
        ns.join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nca = \"ca.pem\"\nclient = \"client-both.pem\"\n",
            registry.address
        ),
    )
    .unwrap();
    let client = Client::new(RegistryConfig {
        config_path: Some(hosts.clone()),
        ..RegistryConfig::default()
    })
    .unwrap();
    let e = client.fetch_manifest(&reference, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");

    // A bad key file is reported when the client is built, naming the file.
    std::fs::write(ns.join("client-both.pem"), "garbage").unwrap();
    let e = Client::new(RegistryConfig {
        config_path: Some(hosts),
        ..RegistryConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("client-both.pem"), "{e}");
}

#[tokio::test]
async fn a_tag_needs_an_endpoint_that_may_resolve_it() {
    let (address, seen) = recorder().await;
    let mut mirror = Mirror::url(format!("http://{address}"));
    mirror.resolve = false;
    let host = RegistryHost {
        mirrors: vec![mirror],
        skip_origin: true,
        ..RegistryHost::default()
    };
    let client = Client::new(config(&[("reg.test", host)])).unwrap();
    let e = client
        .fetch_manifest(&Reference::parse("reg.test/app:v1").unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Config { .. }), "{e}");
    assert!(e.to_string().contains("pull by digest"), "{e}");
    assert!(seen.lock().unwrap().is_empty());
}
