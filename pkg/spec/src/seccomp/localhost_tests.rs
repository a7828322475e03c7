//! Localhost profiles: both formats, and every way a file can be unusable.

use oci_spec::runtime::{Arch, Capability, LinuxSeccompAction, LinuxSeccompOperator};

use super::tests::{allowed, amd64, default_caps, host, localhost, with, write_profile};
use super::*;

#[test]
fn localhost_oci_format() {
    let f = write_profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"],
            "flags":["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[
              {"names":["sethostname","setdomainname"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
              {"names":["chmod"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
              {"names":["personality"],"action":"SCMP_ACT_KILL_PROCESS",
               "args":[{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_NE"}]}
            ]}"#,
    );
    let s = linux_seccomp(&localhost(&f), &default_caps())
        .unwrap()
        .unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert_eq!(s.default_errno_ret(), None);
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchAarch64][..])
    );
    assert_eq!(s.flags().as_ref().unwrap().len(), 1);
    let rules = s.syscalls().as_ref().unwrap();
    // The two EPERM rules merged.
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].names(), &["sethostname", "setdomainname", "chmod"]);
    assert_eq!(rules[0].errno_ret(), Some(1));
    let arg = rules[1].args().as_ref().unwrap()[0];
    assert_eq!(arg.value_two(), Some(0));
    assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpNe);

    // No architectures: runc's native default.
    let f = write_profile(r#"{"defaultAction":"SCMP_ACT_LOG","architectures":[]}"#);
    let s = linux_seccomp(&localhost(&f), &default_caps())
        .unwrap()
        .unwrap();
    assert_eq!(s.architectures(), &None);
    assert_eq!(s.syscalls().as_deref(), Some(&[][..]));
}

#[test]
fn localhost_docker_format() {
    let f = write_profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":null}],
            "syscalls":[
              {"name":"read","action":"SCMP_ACT_ALLOW","comment":"old single-name form"},
              {"names":["write"],"action":"SCMP_ACT_ALLOW"},
              {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["unshare"],"action":"SCMP_ACT_ALLOW",
               "includes":{"caps":["CAP_SYS_ADMIN","CAP_NOT_A_CAP"]}},
              {"names":["chmod"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_CHOWN"]}},
              {"names":["futex_waitv"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.0"}},
              {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}}
            ]}"#,
    );
    let p = localhost(&f);
    let s = render::render(
        &load(f.path()).unwrap(),
        &default_caps(),
        &amd64(),
        render::Shape::AsWritten,
    )
    .unwrap();
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
    );
    let rules = s.syscalls().as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].names(), &["read", "write", "arch_prctl"]);

    let admin = with(&[Capability::SysAdmin]);
    let s = linux_seccomp(&p, &admin).unwrap().unwrap();
    assert!(allowed(&s, "mount"));
    assert!(
        !allowed(&s, "unshare"),
        "needs a capability no container has"
    );
    let mut no_chown = default_caps();
    no_chown.remove(&Capability::Chown);
    let s = render::render(
        &load(f.path()).unwrap(),
        &no_chown,
        &amd64(),
        render::Shape::AsWritten,
    )
    .unwrap();
    assert!(allowed(&s, "chmod"));
    let arm = host(Some(Arch::ScmpArchAarch64), "arm64", (6, 1));
    let s = render::render(
        &load(f.path()).unwrap(),
        &no_chown,
        &arm,
        render::Shape::AsWritten,
    )
    .unwrap();
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchAarch64][..])
    );
    assert!(!allowed(&s, "arch_prctl"));
}

#[test]
fn bad_localhost_profiles_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let big = dir.path().join("big.json");
    fs::File::create(&big)
        .unwrap()
        .set_len(MAX_PROFILE_BYTES + 1)
        .unwrap();
    let paths = [
        missing.to_string_lossy().into_owned(),
        "relative/profile.json".to_string(),
        dir.path().to_string_lossy().into_owned(),
        big.to_string_lossy().into_owned(),
    ];
    for path in paths {
        let err =
            linux_seccomp(&SeccompProfile::Localhost(path.clone()), &default_caps()).unwrap_err();
        assert!(
            matches!(
                err,
                SpecError::InvalidSeccompProfile { .. }
                    | SpecError::UnreadableSeccompProfile { .. }
            ),
            "{path}: {err}"
        );
        assert!(err.to_string().contains(&path), "{err}");
    }

    let cases = [
        ("", "not a valid seccomp profile"),
        ("{", "not a valid seccomp profile"),
        ("[]", "not a valid seccomp profile"),
        (r#"{"syscalls":[]}"#, "defaultAction"),
        (
            r#"{"defaultAction":"SCMP_ACT_FOO"}"#,
            "unknown seccomp action \"SCMP_ACT_FOO\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
            "unknown seccomp architecture \"SCMP_ARCH_VAX\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["x86"]}]}"#,
            "unknown seccomp architecture \"x86\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
            "both \"architectures\" and \"archMap\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_FAST"]}"#,
            "unknown seccomp filter flag",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_DENY"}]}"#,
            "syscalls[0]: unknown seccomp action \"SCMP_ACT_DENY\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_LIKE"}]}]}"#,
            "unknown seccomp operator \"SCMP_CMP_LIKE\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "argument index 6",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#,
            "syscalls[0]: the rule names no syscall",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
            "the rule names no syscall",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[""],"action":"SCMP_ACT_ERRNO"}]}"#,
            "empty syscall name",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
            "both \"name\" and \"names\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"latest"}}]}"#,
            "minKernel \"latest\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":-1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "not a valid seccomp profile",
        ),
    ];
    for (json, want) in cases {
        let f = write_profile(json);
        let path = f.path().to_string_lossy().into_owned();
        let err = linux_seccomp(&localhost(&f), &default_caps()).unwrap_err();
        assert!(
            matches!(err, SpecError::InvalidSeccompProfile { .. }),
            "{json}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path) && msg.contains(want), "{json}: {msg}");
    }
}
