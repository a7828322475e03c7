//! Helpers for the security-context tests: run a script under a security context and read what
//! it printed, and the seccomp profiles they use.

use std::path::{Path, PathBuf};

use berth_cri_api::v1 as cri;

use crate::Berthd;
use crate::containers::{Pod, all_lines, remove, run_to_exit, security, shell};

/// Runs `sh -c script` in a busybox container of `pod` with `tweak` applied to its security
/// context, to its exit; removes it and returns its exit code and its log lines (both streams).
pub async fn script_output(
    berthd: &Berthd,
    pod: &Pod,
    name: &str,
    script: &str,
    tweak: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
) -> (i32, Vec<String>) {
    let mut config = shell(name, script);
    tweak(security(&mut config));
    let (id, status, log) = run_to_exit(berthd, pod, config).await;
    remove(berthd, &id).await.expect("RemoveContainer");
    (status.exit_code, all_lines(&log))
}

/// The value of a `/proc/self/status` field as the script printed it with
/// `grep <field>: /proc/self/status`.
pub fn status_field<'a>(lines: &'a [String], field: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

pub fn profile(kind: cri::security_profile::ProfileType, localhost: &str) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost.to_string(),
    }
}

/// Writes a seccomp profile file into the test's directory.
pub fn write_profile(berthd: &Berthd, name: &str, json: &str) -> PathBuf {
    let dir = berthd.dir.join("seccomp");
    std::fs::create_dir_all(&dir).expect("seccomp profile dir");
    let path = dir.join(name);
    std::fs::write(&path, json).expect("writing a seccomp profile");
    path
}

/// An OCI-format profile that allows everything but makes `names` fail with EPERM.
pub fn blocking_profile(names: &[&str]) -> String {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
    .to_string()
}

/// Builds a static binary that prints its effective uid (`euid=N`) and makes it setuid root,
/// in `dir`; returns the directory to bind-mount. Needs gcc (hack/install-deps.sh installs it).
pub fn setuid_euid_printer(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = dir.join("suid");
    std::fs::create_dir_all(&out).expect("suid dir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let src = out.join("euid.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { printf(\"euid=%d\\n\", (int)geteuid()); return 0; }\n",
    )
    .expect("writing euid.c");
    let bin = out.join("euid");
    let status = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("running gcc");
    assert!(status.success(), "gcc -static euid.c failed");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    out
}
