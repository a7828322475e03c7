//! Parsing, conversion and error messages of `berth play`, without a runtime.

use std::path::Path;
use std::time::Duration;

use berth_cri_api::v1 as cri;

use super::convert::{self, Plan, Which};
use super::env::{PodFacts, expand};
use super::parse::parse;
use super::volumes::{self, Paths, Source};

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: site}
data:
  index.html: "hello from play\n"
  GREETING: hi
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data:
  password: c2VjcmV0    # "secret"
stringData:
  user: admin
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {tier: front}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: busybox:1.36
        command: [httpd, -f, -p, "$(PORT)", -h, /www]
        env:
        - {name: PORT, value: "8080"}
        - name: USER
          valueFrom: {secretKeyRef: {name: creds, key: user}}
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - {name: URL, value: "http://$(IP):$(PORT)/ $$(PORT)"}
        envFrom:
        - configMapRef: {name: site}
          prefix: CM_
        ports: [{name: http, containerPort: 8080, hostPort: 18080}]
        volumeMounts:
        - {name: www, mountPath: /www}
        - {name: data, mountPath: /data, subPath: sub}
        resources:
          requests: {cpu: 250m, memory: 32Mi}
          limits: {cpu: "0.5", memory: 64Mi}
        securityContext:
          runAsUser: 1000
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {port: 8080}
        startupProbe:
          tcpSocket: {port: 8080}
      volumes:
      - name: www
        configMap:
          name: site
          items: [{key: index.html, path: index.html}]
      - {name: data, emptyDir: {}}
      - name: pw
        secret: {secretName: creds, defaultMode: 0o400}
status: {availableReplicas: 1}
"#;

fn paths() -> Paths {
    Paths::new(Path::new("/run/berth/play"), "app")
}

fn err(text: &str) -> String {
    format!("{:#}", parse(text).unwrap_err())
}

#[test]
fn a_manifest_becomes_pods_configmaps_and_secrets() {
    let m = parse(APP).unwrap();
    assert_eq!(m.pods.len(), 1);
    let pod = &m.pods[0];
    assert_eq!(
        (pod.name.as_str(), pod.namespace.as_str()),
        ("web", "default")
    );
    assert_eq!(pod.spec_path, "spec.template.spec");
    assert_eq!(pod.labels.get("tier").map(String::as_str), Some("front"));
    let key = ("default".to_string(), "creds".to_string());
    assert_eq!(m.secrets[&key]["password"], b"secret");
    assert_eq!(m.secrets[&key]["user"], b"admin");
    let w = m.warnings.join("\n");
    assert!(
        w.contains("document 3 (Service web): kind Service ignored"),
        "{w}"
    );
    assert!(
        w.contains("document 4 (Deployment web): spec.replicas: berth play runs one replica"),
        "{w}"
    );
    assert!(
        w.contains(
            "spec.template.spec.containers[0].startupProbe: not supported by berth play, ignored"
        ),
        "{w}"
    );
    // Cluster fields are not worth a warning.
    assert!(!w.contains("status") && !w.contains("selector"), "{w}");
}

#[test]
fn containers_are_converted_as_kubelet_does() {
    let m = parse(APP).unwrap();
    let paths = paths();
    let plan = Plan {
        project: "app",
        manifest: &m,
        paths: &paths,
        log_root: "/var/log/pods",
    };
    let pod = &m.pods[0];
    let sandbox = convert::sandbox(&plan, pod, "uid-1").unwrap();
    assert_eq!(sandbox.log_directory, "/var/log/pods/default_web_uid-1");
    assert_eq!(sandbox.hostname, "web");
    assert_eq!(sandbox.labels[convert::PLAY_LABEL], "app");
    assert_eq!(sandbox.labels[convert::POD_LABEL], "web");
    assert_eq!(sandbox.annotations[convert::GRACE_ANNOTATION], "2");
    assert_eq!(
        sandbox.port_mappings,
        [cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: 18080,
            host_ip: String::new()
        }]
    );
    let sources = volumes::plan(&m, pod, &paths, &mut Vec::new()).unwrap();
    let facts = PodFacts {
        uid: "uid-1".into(),
        ip: "10.1.2.3".into(),
    };
    let mut warnings = Vec::new();
    let which = Which {
        init: false,
        index: 0,
    };
    let c = convert::container(&plan, pod, which, 2, &facts, &sources, &mut warnings).unwrap();
    assert_eq!(c.command, ["httpd", "-f", "-p", "8080", "-h", "/www"]);
    assert_eq!(c.log_path, "httpd/2.log");
    assert_eq!(c.metadata.as_ref().unwrap().attempt, 2);
    let env: Vec<(&str, &str)> = c
        .envs
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("CM_GREETING", "hi"),
            ("CM_index.html", "hello from play\n"),
            ("PORT", "8080"),
            ("USER", "admin"),
            ("POD", "web"),
            ("IP", "10.1.2.3"),
            ("URL", "http://10.1.2.3:8080/ $(PORT)"),
        ]
    );
    let linux = c.linux.unwrap();
    let r = linux.resources.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.cpu_period),
        (256, 50_000, 100_000)
    );
    assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    let s = linux.security_context.unwrap();
    assert_eq!(s.run_as_user, Some(cri::Int64Value { value: 1000 }));
    assert!(s.readonly_rootfs && s.no_new_privs && !s.privileged);
    let caps = s.capabilities.unwrap();
    assert_eq!(
        (caps.add_capabilities, caps.drop_capabilities),
        (
            vec!["NET_BIND_SERVICE".to_string()],
            vec!["ALL".to_string()]
        )
    );
    let mounts: Vec<(&str, &str, bool)> = c
        .mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/www", "/run/berth/play/app/pods/web/volumes/www", true),
            (
                "/data",
                "/run/berth/play/app/pods/web/volumes/data/sub",
                false
            ),
            ("/etc/hosts", "/run/berth/play/app/pods/web/hosts", false),
        ]
    );
    let Source::Files { files, .. } = &sources["www"] else {
        panic!("{sources:?}")
    };
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].path.as_str(), files[0].mode),
        ("index.html", 0o644)
    );
    let Source::Files { files, .. } = &sources["pw"] else {
        panic!("{sources:?}")
    };
    assert!(files.iter().all(|f| f.mode == 0o400) && files.len() == 2);
    assert!(convert::check(&plan).is_ok());
}

#[test]
fn best_effort_containers_get_minimum_shares() {
    let m = parse("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}], restartPolicy: OnFailure}\n").unwrap();
    let paths = paths();
    let plan = Plan {
        project: "app",
        manifest: &m,
        paths: &paths,
        log_root: "/l",
    };
    let c = convert::container(
        &plan,
        &m.pods[0],
        Which {
            init: false,
            index: 0,
        },
        0,
        &PodFacts::default(),
        &Default::default(),
        &mut Vec::new(),
    )
    .unwrap();
    let r = c.linux.unwrap().resources.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2, 0, 0)
    );
    assert_eq!(m.pods[0].restart, super::manifest::RestartPolicy::OnFailure);
}

#[test]
fn quantities() {
    use super::manifest::Quantity;
    let q = |s: &str| convert::quantity(&Quantity(s.to_string()));
    assert_eq!(q("500m"), Some(0.5));
    assert_eq!(q("64Mi"), Some(67108864.0));
    assert_eq!(q("1G"), Some(1e9));
    assert_eq!(q("1e3"), Some(1000.0));
    assert_eq!(q("2"), Some(2.0));
    assert_eq!(q("x"), None);
    assert_eq!(q("-1"), None);
}

#[test]
fn errors_name_the_document_and_the_field() {
    let bad_port = "kind: ConfigMap\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    ports: [{containerPort: http}]\n";
    let e = err(bad_port);
    assert!(
        e.starts_with("document 2 (Pod p): spec.containers[0].ports[0].containerPort: invalid type: string \"http\""),
        "{e}"
    );
    let e = err(
        "kind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c}]}}}\n",
    );
    assert!(
        e.contains(
            "document 1 (Deployment d): spec.template.spec.containers[0]: missing field `image`"
        ),
        "{e}"
    );
    let e = err("kind: PersistentVolume\nmetadata: {name: v}\n");
    assert!(
        e.contains("document 1 (PersistentVolume v): kind PersistentVolume is not supported"),
        "{e}"
    );
    let e = err("metadata: {name: v}\n");
    assert!(e.contains("document 1: kind: missing"), "{e}");
    let e = err("kind: Pod\nmetadata: {name: Web}\nspec: {containers: [{name: c, image: i}]}\n");
    assert!(
        e.contains("metadata.name: \"Web\" must be a DNS label"),
        "{e}"
    );
    let e = err(
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}, {name: c, image: j}]}\n",
    );
    assert!(
        e.contains("spec.containers[1].name: \"c\" is used twice"),
        "{e}"
    );
    let e = err("kind: ConfigMap\nmetadata: {name: c}\ndata: {../../etc/x: v}\n");
    assert!(
        e.contains("document 1 (ConfigMap c): data.../../etc/x: a key must be"),
        "{e}"
    );
    let e = err("kind: Secret\nmetadata: {name: s}\ndata: {k: '%%%'}\n");
    assert!(
        e.contains("document 1 (Secret s): data.k: not valid base64"),
        "{e}"
    );
    let e = err(
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n---\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n",
    );
    assert!(
        e.contains("document 2 (Pod p): metadata.name: p is also the name of document 1 (Pod p)"),
        "{e}"
    );
    let e = err(
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, restartPolicy: x}]\n",
    );
    assert!(e.starts_with("document 1:"), "a YAML syntax error: {e}");
    let e = err("kind: ConfigMap\nmetadata: {name: a}\n");
    assert!(e.contains("no Pod, Deployment"), "{e}");
}

#[test]
fn conversion_errors_name_the_field() {
    let check = |spec: &str| {
        let m = parse(&format!("kind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{k: v}}\n---\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}")).unwrap();
        let paths = paths();
        let plan = Plan {
            project: "app",
            manifest: &m,
            paths: &paths,
            log_root: "/l",
        };
        format!("{:#}", convert::check(&plan).unwrap_err())
    };
    let e = check(
        "  containers:\n  - name: c\n    image: i\n    env:\n    - name: X\n      valueFrom: {configMapKeyRef: {name: cm, key: nope}}\n",
    );
    assert!(e.contains("document 2 (Pod p): spec.containers[0].env[0].valueFrom.configMapKeyRef: ConfigMap \"cm\" has no key \"nope\""), "{e}");
    let e = check(
        "  containers:\n  - name: c\n    image: i\n    volumeMounts: [{name: v, mountPath: /v}]\n  volumes: [{name: v, configMap: {name: other}}]\n",
    );
    assert!(
        e.contains("spec.volumes[0]: ConfigMap \"other\" is not defined in the manifest"),
        "{e}"
    );
    let e = check(
        "  containers:\n  - name: c\n    image: i\n    volumeMounts: [{name: w, mountPath: /v}]\n",
    );
    assert!(
        e.contains("spec.containers[0].volumeMounts[0].name: the pod has no volume \"w\""),
        "{e}"
    );
    let e = check(
        "  containers:\n  - name: c\n    image: i\n    readinessProbe: {httpGet: {port: web}}\n",
    );
    assert!(e.contains("spec.containers[0].readinessProbe.httpGet.port: the container has no port named \"web\""), "{e}");
    let e = check(
        "  containers:\n  - name: c\n    image: i\n  volumes: [{name: v, nfs: {server: x, path: /}}]\n",
    );
    assert!(
        e.contains("spec.volumes[0]: volume \"v\" has no source berth play supports"),
        "{e}"
    );
    let e = check(
        "  containers:\n  - name: c\n    image: i\n    resources: {limits: {memory: lots}}\n",
    );
    assert!(
        e.contains("spec.containers[0].resources.limits.memory: \"lots\" is not a quantity"),
        "{e}"
    );
    let e = check(
        "  containers:\n  - name: c\n    image: i\n  volumes: [{name: v, configMap: {name: cm, items: [{key: k, path: ../x}]}}]\n",
    );
    assert!(
        e.contains("spec.volumes[0].configMap.items[0].path: \"../x\" must be relative"),
        "{e}"
    );
}

#[test]
fn expansion_follows_kubelet() {
    let vars = [("A".to_string(), "1".to_string())].into_iter().collect();
    assert_eq!(expand("$(A)-$(B)-$$(A)-$-$", &vars), "1-$(B)-$(A)-$-$");
    assert_eq!(expand("$(A", &vars), "$(A");
}

#[test]
fn backoff_doubles_from_the_second_restart() {
    use super::manifest::RestartPolicy;
    use super::supervise::{backoff, restarts};
    let s = Duration::from_secs;
    assert_eq!(backoff(s(10), 0, s(1)), s(0));
    assert_eq!(backoff(s(10), 1, s(1)), s(10));
    assert_eq!(backoff(s(10), 3, s(1)), s(40));
    assert_eq!(backoff(s(10), 40, s(1)), s(300));
    assert_eq!(backoff(s(10), 5, s(900)), s(0), "a long run resets it");
    assert!(restarts(RestartPolicy::Always, 0) && restarts(RestartPolicy::OnFailure, 1));
    assert!(!restarts(RestartPolicy::OnFailure, 0) && !restarts(RestartPolicy::Never, 1));
}

#[test]
fn workloads_and_lists() {
    let m = parse("kind: List\nitems:\n- kind: Job\n  metadata: {name: once}\n  spec: {template: {spec: {containers: [{name: c, image: i}]}}}\n- kind: Pod\n  metadata: {name: p}\n  spec: {containers: [{name: c, image: i}]}\n").unwrap();
    assert_eq!(m.pods.len(), 2);
    assert_eq!(
        m.pods[0].restart,
        super::manifest::RestartPolicy::Never,
        "a Job's default"
    );
    assert_eq!(m.pods[0].doc.index, "1.items[0]");
    let e = err("kind: CronJob\nmetadata: {name: c}\n");
    assert!(e.contains("CronJob is not supported"), "{e}");
}

#[test]
fn hosts_files_list_the_other_pods() {
    let m = parse("kind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: i}]\n  hostAliases: [{ip: 10.9.9.9, hostnames: [db, db.local]}]\n").unwrap();
    let peers = [
        ("web".to_string(), "10.0.0.2".to_string()),
        ("client".to_string(), "10.0.0.3".to_string()),
    ];
    let text = super::hosts::content(&m.pods[0], "10.0.0.2", "app", &peers);
    assert!(
        text.starts_with("# Kubernetes-managed hosts file"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1\tlocalhost\n"), "{text}");
    assert!(text.contains("10.0.0.2\tweb\n"), "{text}");
    assert!(text.contains("10.9.9.9\tdb\tdb.local\n"), "{text}");
    assert!(
        text.ends_with("# Pods of berth play app.\n10.0.0.3\tclient\n"),
        "{text}"
    );
}

#[test]
fn project_names() {
    use super::project_name;
    assert_eq!(project_name(None, "dir/My App.yaml").unwrap(), "my-app");
    assert_eq!(project_name(None, "-").unwrap(), "play");
    assert_eq!(project_name(Some("x1"), "-").unwrap(), "x1");
    assert!(project_name(Some("../x"), "-").is_err());
}

#[test]
fn log_lines_are_prefixed() {
    assert_eq!(
        super::logs::format_line("web/httpd", 12, b"hi\n"),
        b"web/httpd    | hi\n"
    );
    assert_eq!(super::logs::format_line("a/b", 3, b"x"), b"a/b | x\n");
}

/// `kubectl get pod -o yaml` output: cluster fields pass quietly, the service account volume
/// goes without what the manifest lacks, and what matters is said once.
#[test]
fn a_pod_taken_from_a_cluster_plays() {
    let dump = r#"
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: "2024-05-01T10:00:00Z"
  name: web-7d4b9c
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c, uid: x}]
  resourceVersion: "123"
  uid: 0c1b2a3d
  managedFields: [{manager: kubectl}]
spec:
  containers:
  - image: busybox:1.36
    imagePullPolicy: IfNotPresent
    name: web
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    volumeMounts:
    - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      name: kube-api-access-abcde
      readOnly: true
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  nodeName: node-1
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccount: default
  serviceAccountName: default
  terminationGracePeriodSeconds: 30
  tolerations: [{effect: NoExecute, key: node.kubernetes.io/not-ready, operator: Exists}]
  volumes:
  - name: kube-api-access-abcde
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap:
          items: [{key: ca.crt, path: ca.crt}]
          name: kube-root-ca.crt
      - downwardAPI:
          items: [{fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}, path: namespace}]
status:
  phase: Running
  podIP: 10.244.0.7
"#;
    let m = parse(dump).unwrap();
    assert_eq!(m.pods[0].namespace, "shop");
    let paths = paths();
    let plan = Plan {
        project: "app",
        manifest: &m,
        paths: &paths,
        log_root: "/l",
    };
    let mut warnings = m.warnings.clone();
    warnings.extend(convert::check(&plan).unwrap());
    let w = warnings.join("\n");
    assert_eq!(warnings.len(), 3, "{w}");
    assert!(
        w.contains("projected.sources[0].serviceAccountToken: not supported"),
        "{w}"
    );
    assert!(
        w.contains("projected.sources[2].downwardAPI: not supported"),
        "{w}"
    );
    assert!(w.contains("ConfigMap \"kube-root-ca.crt\" is not defined in the manifest: the projected volume goes without it"), "{w}");
}

#[test]
fn host_network_pods_get_the_nodes_hosts_file_and_the_play() {
    let m = parse("kind: Pod\nmetadata: {name: edge}\nspec:\n  hostNetwork: true\n  containers: [{name: c, image: i}]\n").unwrap();
    let peers = [("web".to_string(), "10.0.0.2".to_string())];
    let text = super::hosts::content(&m.pods[0], "", "app", &peers);
    let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(text.starts_with(node.trim_end()), "{text}");
    assert!(!text.contains("Kubernetes-managed"), "{text}");
    assert!(text.ends_with("10.0.0.2\tweb\n"), "{text}");
}

#[test]
fn timestamps_sort_with_any_fraction() {
    use super::logs::sort_key;
    let mut t = vec![
        "2024-05-01T10:00:00.15Z",
        "2024-05-01T10:00:00.1Z",
        "2024-05-01T10:00:00.100000001Z",
        "2024-05-01T10:00:00Z",
    ];
    t.sort_by_key(|s| sort_key(s));
    assert_eq!(
        t,
        [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.1Z",
            "2024-05-01T10:00:00.100000001Z",
            "2024-05-01T10:00:00.15Z"
        ]
    );
}

#[test]
fn pull_policy_defaults_as_kubelets() {
    use super::manifest::PullPolicy::{Always, IfNotPresent, Never};
    use super::run::pull_policy;
    assert_eq!(pull_policy("busybox", None), Always);
    assert_eq!(pull_policy("busybox:latest", None), Always);
    assert_eq!(pull_policy("127.0.0.1:5000/a/b", None), Always);
    assert_eq!(pull_policy("127.0.0.1:5000/a/b:1.2", None), IfNotPresent);
    assert_eq!(pull_policy("busybox@sha256:abcd", None), IfNotPresent);
    assert_eq!(pull_policy("busybox", Some(Never)), Never);
}
