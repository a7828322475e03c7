use super::*;

const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn p(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// (input, registry, repository, tag, digest)
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

#[test]
fn normalisation_table() {
    let dig = format!("@{D}");
    let cases: &[Case] = &[
        (
            "busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "busybox:1.36",
            "docker.io",
            "library/busybox",
            Some("1.36"),
            None,
        ),
        ("user/img", "docker.io", "user/img", Some("latest"), None),
        ("user/img:v1", "docker.io", "user/img", Some("v1"), None),
        (
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "index.docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "registry-1.docker.io/user/x",
            "docker.io",
            "user/x",
            Some("latest"),
            None,
        ),
        ("localhost/x", "localhost", "x", Some("latest"), None),
        (
            "localhost:5000/x",
            "localhost:5000",
            "x",
            Some("latest"),
            None,
        ),
        ("localhost:5000/x:t", "localhost:5000", "x", Some("t"), None),
        (
            "127.0.0.1:5000/berth-test/busybox:latest",
            "127.0.0.1:5000",
            "berth-test/busybox",
            Some("latest"),
            None,
        ),
        ("[::1]:5000/x", "[::1]:5000", "x", Some("latest"), None),
        ("[::1]/x", "[::1]", "x", Some("latest"), None),
        (
            "registry.k8s.io/pause:3.9",
            "registry.k8s.io",
            "pause",
            Some("3.9"),
            None,
        ),
        (
            "quay.io/a/b/c_d__e.f-g--h:TAG_1.x-y",
            "quay.io",
            "a/b/c_d__e.f-g--h",
            Some("TAG_1.x-y"),
            None,
        ),
        ("Registry/img", "Registry", "img", Some("latest"), None),
        (
            "my-reg.example.com:443/ns/img",
            "my-reg.example.com:443",
            "ns/img",
            Some("latest"),
            None,
        ),
        // localhost:5000 with no slash is docker.io/library/localhost tagged 5000, as in Docker.
        (
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        ),
    ];
    for &(input, reg, repo, tag, digest) in cases {
        let r = p(input);
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            (reg, repo, tag, digest),
            "{input}"
        );
    }

    let r = p(&format!("busybox{dig}"));
    assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
    let r = p(&format!("img:1.0{dig}"));
    assert_eq!(
        (r.tag.as_deref(), r.digest.as_deref()),
        (Some("1.0"), Some(D))
    );
    let r = p(&format!("localhost:5000/a/b{dig}"));
    assert_eq!(r.registry, "localhost:5000");
    assert_eq!(r.tag, None);
}

#[test]
fn display_and_name() {
    assert_eq!(p("busybox").to_string(), "docker.io/library/busybox:latest");
    assert_eq!(p("busybox").name(), "docker.io/library/busybox");
    assert_eq!(
        p(&format!("busybox@{D}")).to_string(),
        format!("docker.io/library/busybox@{D}")
    );
    assert_eq!(
        p(&format!("a/b:1@{D}")).to_string(),
        format!("docker.io/a/b:1@{D}")
    );
    // Display output parses back to the same reference.
    for s in ["busybox", "localhost:5000/x:t", "[::1]:5000/x"] {
        let r = p(s);
        assert_eq!(p(&r.to_string()), r);
    }
}

#[test]
fn with_digest_and_manifest_key() {
    let r = p("busybox:1.36");
    assert_eq!(r.manifest_key(), "1.36");
    let pinned = r.with_digest(D);
    assert_eq!(pinned.tag.as_deref(), Some("1.36"));
    assert_eq!(pinned.manifest_key(), D);
    assert_eq!(
        pinned.to_string(),
        format!("docker.io/library/busybox:1.36@{D}")
    );
}

#[test]
fn rejects_invalid() {
    let cases = [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("user/Img", "lowercase"),
        ("docker.io/User/img", "lowercase"),
        ("busybox:", "empty tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:.x", "invalid tag"),
        (&format!("busybox:{}", "a".repeat(129)), "tag longer"),
        ("busybox@sha256:abc", "64 lowercase hex"),
        (
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "unsupported algorithm",
        ),
        (
            &format!("busybox@{}", D.to_uppercase()),
            "unsupported algorithm",
        ),
        ("busybox@", "expected"),
        ("a@b@c", "expected"),
        ("a//b", "path component"),
        ("a/b/", "path component"),
        ("-a/b", "path component"),
        ("a_/b", "path component"),
        ("a...b", "path component"),
        ("a___b", "path component"),
        ("a b", "path component"),
        (":tag", "empty repository"),
        ("example.com:/x", "registry host"),
        ("example.com:99999/x", "registry host"),
        ("exa_mple.com/x", "registry host"),
        ("-bad.com/x", "registry host"),
        ("[::1/x", "registry host"),
        ("[zz]:5000/x", "registry host"),
        ("[::1]x/y", "registry host"),
        (&"a".repeat(64).replace('a', "f"), "reserved"),
        (&format!("example.com/{}", "a".repeat(250)), "255"),
    ];
    for (input, want) in cases {
        match Reference::parse(input) {
            Ok(r) => panic!("{input:?} parsed as {r:?}"),
            Err(e) => {
                assert!(matches!(e, RegistryError::InvalidReference { .. }));
                let msg = e.to_string();
                assert!(msg.contains(want), "{input:?}: {msg}");
            }
        }
    }
}
