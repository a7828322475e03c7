//! `berth login` / `berth logout` (`berth.registries.v1.Registries`) against a real berthd and the
//! htpasswd registry on 127.0.0.1:5001 (`hack/registry.sh start-auth`, images pushed by
//! `hack/test-images.sh --with-auth`): a wrong password is refused by the registry, a login makes
//! pulls without credentials work (`berth pull`, which streams progress, and CRI PullImage), the
//! file is docker's config.json (mode 0600, read by Python's json), a logout takes it away, and an
//! existing docker config.json, named by `registry.auth_file` at a SIGHUP reload, is used as it is.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use berth_cri_api::v1 as cri;
use berth_e2e::registry::{AUTH, AUTH_PASSWORD, AUTH_USER};
use berth_e2e::{Berthd, berth_binary};
use serde_json::{Value, json};
use tonic::Code;

/// `berth ARGS` with `stdin` fed in; (exit code, stdout, stderr).
fn berth(berthd: &Berthd, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(berth_binary().unwrap())
        .env_remove("BERTH_ENDPOINT")
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The file as Python's json module reads it (a peer nobody here wrote), back as JSON.
fn python_json(path: &Path) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image() -> String {
    format!("{AUTH}/berth-test/pause:3.9")
}

async fn cri_pull(berthd: &Berthd, auth: Option<cri::AuthConfig>) -> Result<String, tonic::Status> {
    let mut images = berthd.images().await.unwrap();
    images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

fn rmi(berthd: &Berthd) {
    let (code, _, err) = berth(berthd, &["rmi", &image()], "");
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn login_makes_pulls_work_and_logout_takes_it_away() {
    let berthd = Berthd::start("login").await.unwrap();
    let file = berthd.root.join("auth.json");

    // Refused by the registry: nothing stored.
    let (code, _, err) = berth(
        &berthd,
        &["login", "-u", AUTH_USER, "-p", "wrong", AUTH],
        "",
    );
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("login refused") && err.contains("401"),
        "{err}"
    );
    assert!(!file.exists());
    let (code, _, err) = berth(&berthd, &["login", AUTH], "");
    assert!(code == 125 && err.contains("not a terminal"), "{err}");

    let (code, out, err) = berth(
        &berthd,
        &[
            "login",
            "-u",
            AUTH_USER,
            "--password-stdin",
            &format!("http://{AUTH}/"),
        ],
        &format!("{AUTH_PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Login Succeeded");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    assert_eq!(
        python_json(&file),
        json!({"auths": {AUTH: {"auth": encoded}}})
    );

    // Pulls that bring no credentials use the login: berth pull (the progress service) and CRI.
    let (code, out, err) = berth(&berthd, &["pull", &image()], "");
    assert_eq!(code, 0, "{out}{err}");
    rmi(&berthd);
    cri_pull(&berthd, None).await.unwrap();
    rmi(&berthd);
    // A request's own credentials come first, even wrong ones.
    let wrong = cri::AuthConfig {
        username: AUTH_USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = cri_pull(&berthd, Some(wrong)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let (code, out, err) = berth(&berthd, &["logout", AUTH], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Removing login credentials for {AUTH}")),
        "{out}"
    );
    assert_eq!(python_json(&file), json!({"auths": {}}));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let err = cri_pull(&berthd, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let (code, _, err) = berth(&berthd, &["pull", &image()], "");
    assert!(code == 125 && err.contains("not authorized"), "{err}");
    let (code, out, _) = berth(&berthd, &["logout", AUTH], "");
    assert!(code == 0 && out.contains("Not logged in"), "{out}");
    berthd.finish();
}

#[tokio::test]
async fn a_terminal_is_asked_for_the_password_without_echo() {
    let berthd = Berthd::start("loginpty").await.unwrap();
    // `script` gives berth a terminal (a pty) and copies this pipe to it: the password is typed
    // once the prompt is up, and the transcript is everything the terminal showed.
    let command = format!(
        "{} -H unix://{} login -u {AUTH_USER} {AUTH}",
        berth_binary().unwrap().display(),
        berthd.socket.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let mut input = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::io::Write::write_all(&mut input, format!("{AUTH_PASSWORD}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(input);
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("Password:"), "{transcript}");
    assert!(transcript.contains("Login Succeeded"), "{transcript}");
    assert!(!transcript.contains(AUTH_PASSWORD), "echoed: {transcript}");
    assert!(berthd.root.join("auth.json").is_file());
    berthd.finish();
}

#[tokio::test]
async fn an_existing_docker_config_is_used_as_it_is() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let config = dir.path().join("docker/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // As a docker CLI leaves it: a URL as the key, other settings beside `auths`.
    std::fs::write(
        &config,
        json!({
            "auths": {
                format!("http://{AUTH}/v2/"): {"username": AUTH_USER, "password": AUTH_PASSWORD},
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}
            },
            "psFormat": "table {{.ID}}",
            "credsStore": "desktop"
        })
        .to_string(),
    )
    .unwrap();
    // Pointed at it by a reload: the path is part of [registry], which SIGHUP applies.
    let berthd = Berthd::start("logindocker").await.unwrap();
    let err = cri_pull(&berthd, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let dropin = berthd
        .config_file
        .parent()
        .unwrap()
        .join("config.d/50-test.toml");
    let text = format!(
        "[registry]\nauth_file = {:?}\n",
        config.display().to_string()
    );
    std::fs::write(&dropin, text).unwrap();
    let pid = nix::unistd::Pid::from_raw(berthd.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = cri_pull(&berthd, None).await {
        assert!(
            std::time::Instant::now() < deadline,
            "not pulled after the reload: {e:?}\n{}",
            berthd.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    rmi(&berthd);
    let (code, out, err) = berth(&berthd, &["logout", &format!("https://{AUTH}")], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Removing"), "{out}");
    // Only that entry went; the rest of docker's file is as it was.
    assert_eq!(
        python_json(&config),
        json!({
            "auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}},
            "psFormat": "table {{.ID}}",
            "credsStore": "desktop"
        })
    );
    let err = cri_pull(&berthd, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    berthd.finish();
}
