use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn image_json(manifest_mt: &str, config_mt: &str, layer_mt: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_mt}",
            "config":{{"mediaType":"{config_mt}","digest":"{D1}","size":7023}},
            "layers":[{{"mediaType":"{layer_mt}","digest":"{D2}","size":32654,
                        "urls":["https://example.com/l"],"annotations":{{"a":"b"}}}}]}}"#
    )
}

fn index_json(index_mt: &str, entry_mt: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{index_mt}","manifests":[
            {{"mediaType":"{entry_mt}","digest":"{D1}","size":100,
              "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{entry_mt}","digest":"{D2}","size":200,
              "platform":{{"architecture":"amd64","os":"linux","os.features":["x"]}}}}]}}"#
    )
}

#[test]
fn parses_oci_and_docker_manifests() {
    for (m, c, l) in [
        (mt::OCI_MANIFEST, mt::OCI_CONFIG, mt::OCI_LAYER_GZIP),
        (
            mt::DOCKER_MANIFEST,
            mt::DOCKER_CONFIG,
            mt::DOCKER_LAYER_GZIP,
        ),
    ] {
        let body = image_json(m, c, l);
        let ManifestKind::Image(img) = parse_manifest("r", m, body.as_bytes()).unwrap() else {
            panic!("{m}: not an image");
        };
        assert_eq!(img.config.media_type, c);
        assert_eq!(img.config.size, 7023);
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.layers[0].digest, D2);
        assert_eq!(img.layers[0].urls, ["https://example.com/l"]);
        assert_eq!(img.layers[0].annotations["a"], "b");
        assert_eq!(detect_media_type(None, body.as_bytes()).as_deref(), Some(m));
    }
}

#[test]
fn parses_oci_index_and_docker_list() {
    for (i, e) in [
        (mt::OCI_INDEX, mt::OCI_MANIFEST),
        (mt::DOCKER_MANIFEST_LIST, mt::DOCKER_MANIFEST),
    ] {
        let body = index_json(i, e);
        let ManifestKind::Index(idx) = parse_manifest("r", i, body.as_bytes()).unwrap() else {
            panic!("{i}: not an index");
        };
        assert_eq!(idx.manifests.len(), 2);
        let p = idx.manifests[0].platform.as_ref().unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(
            idx.manifests[1].platform.as_ref().unwrap().os_features,
            ["x"]
        );
    }
}

#[test]
fn schema1_is_refused_clearly() {
    let body = br#"{"schemaVersion":1,"name":"x","tag":"latest","fsLayers":[],"history":[]}"#;
    for t in [mt::DOCKER_SCHEMA1, mt::DOCKER_SCHEMA1_SIGNED] {
        let e = parse_manifest("docker.io/library/old:1", t, body).unwrap_err();
        assert!(
            matches!(e, RegistryError::UnsupportedMediaType { .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("schema 1 manifests are not supported"),
            "{msg}"
        );
        assert!(msg.contains("docker.io/library/old:1"), "{msg}");
    }
    // Served as plain JSON: detected from the body, then refused.
    let detected = detect_media_type(Some("application/json; charset=utf-8"), body).unwrap();
    assert_eq!(detected, mt::DOCKER_SCHEMA1);
    assert!(parse_manifest("r", &detected, body).is_err());
}

#[test]
fn refuses_unknown_and_inconsistent() {
    let body = image_json(mt::OCI_MANIFEST, mt::OCI_CONFIG, mt::OCI_LAYER);
    let e = parse_manifest("r", "text/html", body.as_bytes()).unwrap_err();
    assert!(matches!(e, RegistryError::UnsupportedMediaType { .. }));
    // An image manifest body served as an index.
    let e = parse_manifest("r", mt::OCI_INDEX, body.as_bytes()).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidManifest { .. }), "{e}");
    // Bad descriptor digest.
    let bad = body.replace(D2, "sha256:nothex");
    let e = parse_manifest("r", mt::OCI_MANIFEST, bad.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("sha256:nothex"), "{e}");
    // Not JSON at all.
    assert!(parse_manifest("r", mt::OCI_MANIFEST, b"<html>").is_err());
    // Missing schemaVersion.
    let e = parse_manifest("r", mt::OCI_MANIFEST, br#"{"config":{}}"#).unwrap_err();
    assert!(e.to_string().contains("schemaVersion"), "{e}");
}

#[test]
fn detect_media_type_prefers_specific_header() {
    let body = index_json(mt::OCI_INDEX, mt::OCI_MANIFEST);
    assert_eq!(
        detect_media_type(
            Some("application/vnd.docker.distribution.manifest.list.v2+json"),
            b""
        )
        .as_deref(),
        Some(mt::DOCKER_MANIFEST_LIST)
    );
    assert_eq!(
        detect_media_type(Some("application/json"), body.as_bytes()).as_deref(),
        Some(mt::OCI_INDEX)
    );
    let no_mt = br#"{"schemaVersion":2,"manifests":[]}"#;
    assert_eq!(
        detect_media_type(None, no_mt).as_deref(),
        Some(mt::OCI_INDEX)
    );
    assert_eq!(detect_media_type(None, b"junk"), None);
}

#[test]
fn parses_image_config_with_nulls() {
    let body = br#"{
        "created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux",
        "config":{"User":"berth","Env":["PATH=/bin","FOO=x"],"Entrypoint":["/bin/sh","-c"],
                  "Cmd":null,"WorkingDir":"/work/dir","Volumes":{"/data":{}},
                  "ExposedPorts":{"8080/tcp":{}},"StopSignal":"SIGUSR1",
                  "Labels":null,"OnBuild":null},
        "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
        "history":[{"created":"1970-01-01T00:00:00Z","created_by":"x"},{"empty_layer":true}],
        "container_config":{"Hostname":"ignored"},"docker_version":"24"
    }"#;
    let c = parse_config("sha256:x", body).unwrap();
    assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
    let cc = c.config.unwrap();
    assert_eq!(cc.user.as_deref(), Some("berth"));
    assert_eq!(cc.env, ["PATH=/bin", "FOO=x"]);
    assert_eq!(cc.entrypoint.unwrap(), ["/bin/sh", "-c"]);
    assert_eq!(cc.cmd, None);
    assert_eq!(cc.working_dir.as_deref(), Some("/work/dir"));
    assert!(cc.volumes.contains_key("/data"));
    assert!(cc.exposed_ports.contains_key("8080/tcp"));
    assert_eq!(cc.stop_signal.as_deref(), Some("SIGUSR1"));
    assert!(cc.labels.is_empty());
    assert_eq!(c.rootfs.kind, "layers");
    assert_eq!(c.rootfs.diff_ids.len(), 1);
    assert_eq!(c.history.len(), 2);
    assert_eq!(c.history[1].empty_layer, Some(true));

    let e = parse_config("sha256:abc", b"[1,2]").unwrap_err();
    assert!(e.to_string().contains("sha256:abc"), "{e}");
}
