//! `Client::login` against a registry speaking the Bearer-token flow (the e2e tests cover Basic
//! with a real docker-registry): the token server is asked without a scope, a wrong password is
//! refused with the server's message and stores nothing, a login is used by pulls that bring no
//! credentials, and a logout stops that.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use berth_registry::{Client, Reference, RegistryConfig, RegistryError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "good-token";

/// A registry whose token server knows alice:pw; records every request's first line and
/// Authorization header.
async fn token_registry() -> (SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
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
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                log.lock().unwrap().push((line.clone(), auth.clone()));
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:pw")
                );
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{address}/token\",service=\"test\"\r\n"
                );
                let (status, extra, body) = if line.starts_with("GET /token") {
                    if auth == basic {
                        (
                            "200 OK",
                            String::new(),
                            format!("{{\"token\":\"{TOKEN}\"}}"),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            "{\"details\":\"incorrect username or password\"}".to_string(),
                        )
                    }
                } else if auth == format!("Bearer {TOKEN}") {
                    if line.starts_with("GET /v2/ ") {
                        ("200 OK", String::new(), "{}".to_string())
                    } else {
                        ("404 Not Found", String::new(), "{}".to_string())
                    }
                } else {
                    ("401 Unauthorized", challenge, "{}".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    (address, seen)
}

#[tokio::test]
async fn bearer_login_is_checked_stored_used_and_forgotten() {
    let (address, seen) = token_registry().await;
    let dir = std::env::temp_dir().join(format!("berth-registry-login-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("auth.json");
    let client = Client::new(RegistryConfig {
        auth_file: Some(file.clone()),
        ..RegistryConfig::default()
    })
    .unwrap();
    let server = address.to_string();

    let e = client.login(&server, "alice", "wrong").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string().contains("incorrect username or password"),
        "{e}"
    );
    assert!(!file.exists());

    let done = client
        .login(&format!("http://{server}/"), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(
        (done.server.as_str(), done.key.as_str()),
        (server.as_str(), server.as_str())
    );
    let token_requests: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(line, _)| line.clone())
        .filter(|l| l.starts_with("GET /token"))
        .collect();
    assert!(
        token_requests.iter().all(|l| !l.contains("scope=")),
        "a login asks for no scope: {token_requests:?}"
    );
    let (logins, path) = client.logins().unwrap();
    assert_eq!(path.as_deref(), Some(file.as_path()));
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].username, "alice");

    // A pull without credentials authenticates with the login (the manifest is then 404).
    let reference = Reference::parse(&format!("{server}/app:1")).unwrap();
    let e = client.fetch_manifest(&reference, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");

    assert_eq!(client.logout(&server).unwrap(), (server.clone(), true));
    assert_eq!(client.logout(&server).unwrap(), (server.clone(), false));
    let e = client.fetch_manifest(&reference, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
