use std::os::unix::fs::PermissionsExt;

use super::*;

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

#[test]
fn servers_normalise_as_docker_names_them() {
    for (input, want) in [
        ("", "docker.io"),
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("http://127.0.0.1:5001", "127.0.0.1:5001"),
        ("https://Registry.Example.com/v2/", "registry.example.com"),
        ("127.0.0.1:5001", "127.0.0.1:5001"),
        ("[::1]:5000", "[::1]:5000"),
    ] {
        assert_eq!(normalize_server(input).unwrap(), want, "{input}");
    }
    for bad in ["https://", "a b", "host\"x"] {
        assert!(normalize_server(bad).is_err(), "{bad}");
    }
    assert_eq!(file_key("docker.io"), DOCKER_HUB_KEY);
    assert_eq!(file_key("127.0.0.1:5001"), "127.0.0.1:5001");
}

#[test]
fn parses_every_form_docker_writes() {
    let text = br#"{
        "auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "ghcr.io": {"username": "bob", "password": "pw"},
            "quay.io": {"identitytoken": "refresh"},
            "helper.example": {},
            "bad.example": {"auth": "!!!"}
        },
        "credsStore": "desktop",
        "credHelpers": {"gcr.io": "gcloud"}
    }"#;
    let logins = parse(text).unwrap();
    let find = |s: &str| logins.iter().find(|l| l.server == s).cloned();
    assert_eq!(
        find("docker.io").unwrap().credentials,
        basic("user", "pass")
    );
    assert_eq!(find("docker.io").unwrap().username, "user");
    assert_eq!(find("ghcr.io").unwrap().credentials, basic("bob", "pw"));
    assert_eq!(
        find("quay.io").unwrap().credentials,
        Credentials::IdentityToken("refresh".into())
    );
    // Empty entries (left by credential helpers) and broken ones are skipped.
    assert!(find("helper.example").is_none() && find("bad.example").is_none());
    assert_eq!(logins.len(), 3);
    assert!(parse(b"{}").unwrap().is_empty());
    assert!(parse(b"[]").is_err());
    assert!(parse(b"{\"auths\": 1}").is_err());
    assert!(parse(b"{\"au").is_err());
}

#[test]
fn store_lookup_remove_keep_the_rest_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/config.json");
    let file = AuthFile::new(path.clone());
    assert_eq!(file.lookup("docker.io").unwrap(), None, "no file yet");
    assert!(!file.remove("docker.io").unwrap());

    // An existing docker file: its other keys and entries survive our writes.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        r#"{"auths": {"index.docker.io": {"auth": "b2xkOm9sZA=="}, "ghcr.io": {"auth": "YTpi"}},
            "credsStore": "desktop", "psFormat": "{{.ID}}"}"#,
    )
    .unwrap();
    assert_eq!(file.lookup("docker.io").unwrap(), Some(basic("old", "old")));
    let key = file.store("docker.io", "alice", "s3cr:et").unwrap();
    assert_eq!(key, DOCKER_HUB_KEY);
    let key = file.store("http://127.0.0.1:5001/", "berth", "pw").unwrap();
    assert_eq!(key, "127.0.0.1:5001");

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["credsStore"], "desktop");
    assert_eq!(doc["psFormat"], "{{.ID}}");
    assert_eq!(doc["auths"]["ghcr.io"]["auth"], "YTpi");
    // The alias docker.io had before is replaced, not left to shadow the new login.
    assert!(doc["auths"].get("index.docker.io").is_none(), "{doc}");
    assert_eq!(
        doc["auths"][DOCKER_HUB_KEY]["auth"],
        STANDARD.encode("alice:s3cr:et")
    );
    for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        assert_eq!(file.lookup(name).unwrap(), Some(basic("alice", "s3cr:et")));
    }
    assert_eq!(
        file.lookup("127.0.0.1:5001").unwrap(),
        Some(basic("berth", "pw"))
    );
    assert_eq!(file.lookup("other.example").unwrap(), None);
    let names = usernames(&file.logins().unwrap());
    assert_eq!(names["docker.io"], "alice");
    assert_eq!(names["127.0.0.1:5001"], "berth");

    assert!(file.remove("https://index.docker.io/v1/").unwrap());
    assert!(!file.remove("docker.io").unwrap());
    assert_eq!(file.lookup("docker.io").unwrap(), None);
    assert_eq!(
        file.lookup("127.0.0.1:5001").unwrap(),
        Some(basic("berth", "pw"))
    );
    // Nothing but the file itself in its directory (no temporary files left).
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"]);
}

#[test]
fn changes_by_others_are_seen_and_broken_files_are_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    let file = AuthFile::new(path.clone());
    std::fs::write(&path, r#"{"auths": {"r.example": {"auth": "YTpi"}}}"#).unwrap();
    assert_eq!(file.lookup("r.example").unwrap(), Some(basic("a", "b")));
    // Another writer replaces the file (as docker login and berth do: a new inode).
    let other = dir.path().join("new.json");
    std::fs::write(&other, r#"{"auths": {"r.example": {"auth": "YzpkZA=="}}}"#).unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert_eq!(file.lookup("r.example").unwrap(), Some(basic("c", "dd")));
    std::fs::write(&path, b"{not json").unwrap();
    assert!(file.lookup("r.example").is_err());
    assert!(file.store("r.example", "u", "p").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(file.lookup("r.example").unwrap(), None);
}
