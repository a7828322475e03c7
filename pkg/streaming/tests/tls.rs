//! HTTPS: the server loads PEM files and serves the same protocols over TLS.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use berth_spdy::{Session, SessionConfig};
use berth_streaming::{StreamingConfig, StreamingError, StreamingServer, TlsFiles};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn exec_over_https() {
    let h = start_with(StreamingConfig {
        tls: Some(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server-key.pem"),
        }),
        ..Default::default()
    })
    .await;
    let url = h
        .server
        .exec_url(exec(&["echo", "secure"], false, true, false, false))
        .unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let (addr, target) = split_url(&url);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let head = request(
        &mut tls,
        &target,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(head.status, 101);
    let session = Session::client(tls, SessionConfig::default());
    let (error, _e) = open(&session, "error", &[]).await;
    let (stdout, _o) = open(&session, "stdout", &[]).await;
    assert_eq!(read_all(stdout).await, b"secure\n");
    assert_eq!(
        read_all(error).await,
        br#"{"metadata":{},"status":"Success"}"#
    );
}

#[tokio::test]
async fn missing_or_bad_tls_files_fail_bind() {
    let backend = Arc::new(LocalBackend {
        record: Default::default(),
    });
    let missing = StreamingConfig {
        tls: Some(TlsFiles {
            cert: fixture("nope.pem"),
            key: fixture("server-key.pem"),
        }),
        ..Default::default()
    };
    let err = StreamingServer::bind(missing, backend.clone(), std::future::pending())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StreamingError::TlsFile { .. }), "{err}");
    let swapped = StreamingConfig {
        tls: Some(TlsFiles {
            cert: fixture("server-key.pem"),
            key: fixture("server.pem"),
        }),
        ..Default::default()
    };
    let err = StreamingServer::bind(swapped, backend, std::future::pending())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StreamingError::Tls(_)), "{err}");
}
