//! Running `berth play` for the tests, and the manifests they play.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::Berthd;
use berth_e2e::registry::SHARED;

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `berth play ARGS` with the test's state and log directories; the manifest on stdin.
pub fn play(berthd: &Berthd, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let dir = berthd.dir.to_str().unwrap();
    let mut child = Command::new(berth_e2e::berth_binary().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .arg("play")
        .args(args)
        .env("BERTH_PLAY_DIR", format!("{dir}/play-state"))
        .env("BERTH_LOG_DIR", format!("{dir}/play-logs"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub type Spawned = (std::process::Child, std::sync::mpsc::Receiver<String>);

/// `berth play ARGS` left running; its stdout lines come through the channel.
pub fn spawn_play(berthd: &Berthd, args: &[&str], stdin: Option<&str>) -> Spawned {
    let dir = berthd.dir.to_str().unwrap();
    let mut child = Command::new(berth_e2e::berth_binary().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .arg("play")
        .args(args)
        .env("BERTH_PLAY_DIR", format!("{dir}/play-state"))
        .env("BERTH_LOG_DIR", format!("{dir}/play-logs"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

pub fn read_until(spawned: &mut Spawned, line: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(l) = spawned.1.recv_timeout(Duration::from_millis(200))
            && l == line
        {
            return Some(l);
        }
    }
    None
}

/// `yaml.safe_dump_all` of the documents in `docs` (a JSON array).
pub fn pyyaml_dump_all(docs: &serde_json::Value) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; yaml.safe_dump_all(json.load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (python3-yaml)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(docs.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML failed");
    String::from_utf8(out.stdout).unwrap()
}

pub async fn wait_file(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn app(out: &Path, host_port: u16) -> String {
    let image = format!("{SHARED}/berth-test/busybox:latest");
    let out = out.display();
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: site}}
data:
  index.html: "hello from the configmap\n"
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
data: {{password: c2VjcmV0}}
stringData: {{user: admin}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: [{{name: http, containerPort: 8080, hostPort: {host_port}}}]
    volumeMounts: [{{name: www, mountPath: /www}}]
    readinessProbe:
      httpGet: {{path: /index.html, port: http}}
      periodSeconds: 1
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
    livenessProbe: {{tcpSocket: {{port: 8080}}}}
    startupProbe: {{tcpSocket: {{port: 8080}}}}
  - name: side
    image: {image}
    command: [httpd, -f, -p, "9090", -h, /www]
    volumeMounts: [{{name: www, mountPath: /www}}]
    readinessProbe:
      tcpSocket: {{port: 9090}}
      initialDelaySeconds: 1
      periodSeconds: 1
  volumes:
  - name: www
    configMap: {{name: site}}
status: {{phase: Running}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client}}
spec:
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: setup
        image: {image}
        command: [sh, -c, "echo prepared by init > /work/init.txt; echo setup-done"]
        volumeMounts: [{{name: work, mountPath: /work}}]
      containers:
      - name: fetch
        image: {image}
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: USER_NAME
          valueFrom: {{secretKeyRef: {{name: creds, key: user}}}}
        resources:
          requests: {{cpu: 250m, memory: 16Mi}}
          limits: {{cpu: 500m, memory: 64Mi}}
        readinessProbe:
          exec: {{command: [test, -s, /out/web-ip]}}
          periodSeconds: 1
        command:
        - sh
        - -c
        - |
          set -e
          cp /work/init.txt /out/init.txt
          ip=$(awk '$2 == "web" {{print $1}}' /etc/hosts)
          wget -q -O /out/by-ip.html "http://$ip:8080/index.html"
          wget -q -O /out/by-name.html http://web:8080/index.html
          echo "$ip" > /out/web-ip.tmp
          echo "$POD_NAME" > /out/pod-name
          echo "$USER_NAME" > /out/user
          cat /creds/pw/password > /out/password
          mv /out/web-ip.tmp /out/web-ip
          echo fetched
          exec sleep 3600
        volumeMounts:
        - {{name: work, mountPath: /work}}
        - {{name: out, mountPath: /out}}
        - {{name: creds, mountPath: /creds}}
      volumes:
      - {{name: work, emptyDir: {{}}}}
      - name: creds
        secret:
          secretName: creds
          items: [{{key: password, path: pw/password}}]
      - name: out
        hostPath: {{path: {out}, type: DirectoryOrCreate}}
---
apiVersion: v1
kind: Pod
metadata: {{name: edge}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: get
    image: {image}
    # A fresh connection per try, each bounded (by `timeout`: busybox-static's `wget -T` segfaults):
    # once in a CI run the first connection to the hostPort on 127.0.0.1 went unanswered and wget
    # waited out the test. The pod's log shows any retry.
    command:
    - sh
    - -c
    - |
      fetch() {{ for try in 1 2 3 4 5; do timeout 5 wget -q -O "$1" "$2" && return 0; echo "retry $2"; sleep 1; done; return 1; }}
      fetch /out/by-hostport.html http://127.0.0.1:{host_port}/index.html
      fetch /out/edge-by-name.html http://web:8080/index.html
      echo edge-done
      exec sleep 3600
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes:
  - name: out
    hostPath: {{path: {out}, type: DirectoryOrCreate}}
"#
    )
}
