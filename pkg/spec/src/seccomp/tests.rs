use std::io::Write;
use std::time::Instant;

use oci_spec::runtime::{Arch, Capability, LinuxSeccompAction, LinuxSeccompOperator};

use super::compact::tests::{holds, probe_values};
use super::host::{Host, KernelVersion};
use super::*;
use crate::Security;

pub(super) fn default_caps() -> Capabilities {
    crate::caps::capabilities(&Security::default())
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
}

pub(super) fn with(extra: &[Capability]) -> Capabilities {
    let mut caps = default_caps();
    caps.extend(extra.iter().copied());
    caps
}

pub(super) fn host(arch: Option<Arch>, go_arch: &'static str, kernel: (u32, u32)) -> Host {
    Host {
        arch,
        go_arch,
        kernel: Some(KernelVersion {
            major: kernel.0,
            minor: kernel.1,
        }),
        x32: true,
    }
}

pub(super) fn amd64() -> Host {
    host(Some(Arch::ScmpArchX86_64), "amd64", (6, 1))
}

fn render_default(caps: &Capabilities, host: &Host) -> LinuxSeccomp {
    render::render(default_profile().unwrap(), caps, host, render::Shape::Fast).unwrap()
}

/// Allowed whatever its arguments.
pub(super) fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
    s.syscalls().as_ref().unwrap().iter().any(|r| {
        r.action() == LinuxSeccompAction::ScmpActAllow
            && r.args().as_ref().is_none_or(|a| a.is_empty())
            && r.names().iter().any(|n| n == name)
    })
}

fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a oci_spec::runtime::LinuxSyscall> {
    let all = s.syscalls().as_ref().unwrap();
    all.iter()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect()
}

pub(super) fn write_profile(json: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(json.as_bytes()).unwrap();
    f
}

pub(super) fn localhost(f: &tempfile::NamedTempFile) -> SeccompProfile {
    SeccompProfile::Localhost(f.path().to_string_lossy().into_owned())
}

#[test]
fn the_built_in_profile_parses() {
    let p = default_profile().unwrap();
    assert_eq!(p.default_action, LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret, Some(1));
    assert_eq!(p.rules.len(), 56);
    assert_eq!(p.rules[0].names.len(), 361);
}

#[test]
fn unconfined_is_no_filter() {
    assert!(
        linux_seccomp(&SeccompProfile::Unconfined, &default_caps())
            .unwrap()
            .is_none()
    );
}

#[test]
fn runtime_default_on_this_host() {
    let s = linux_seccomp(&SeccompProfile::RuntimeDefault, &default_caps())
        .unwrap()
        .unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(s.default_errno_ret(), Some(1));
    if cfg!(target_arch = "x86_64") {
        // X32 only where the kernel runs x32 code (see host.rs).
        let mut arches = vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
        if !host::current().x32 {
            arches.pop();
        }
        assert_eq!(s.architectures().as_deref(), Some(&arches[..]));
        assert!(allowed(&s, "arch_prctl") && allowed(&s, "modify_ldt"));
    }
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "fchmodat",
        "wait4",
        "getdents64",
    ] {
        assert!(allowed(&s, name), "{name}");
    }
    // Removed from the default upstream (io_uring) or never there.
    for name in [
        "io_uring_setup",
        "keyctl",
        "add_key",
        "userfaultfd",
        "kexec_load",
    ] {
        assert!(rules_for(&s, name).is_empty(), "{name}");
    }
}

#[test]
fn capability_groups_follow_the_bounding_set() {
    let h = amd64();
    let plain = render_default(&default_caps(), &h);
    for name in [
        "sethostname",
        "setdomainname",
        "mount",
        "umount2",
        "setns",
        "unshare",
        "bpf",
        "reboot",
        "kcmp",
        "pidfd_getfd",
        "settimeofday",
        "clock_settime",
        "init_module",
        "acct",
        "iopl",
        "vhangup",
        "mbind",
        "syslog",
        "perf_event_open",
        "open_by_handle_at",
    ] {
        assert!(!allowed(&plain, name), "{name} without its capability");
    }
    // CHROOT is in the default set.
    assert!(allowed(&plain, "chroot"));
    assert!(!allowed(&render_default(&with(&[]), &h), "reboot"));

    let admin = render_default(&with(&[Capability::SysAdmin]), &h);
    for name in [
        "sethostname",
        "setdomainname",
        "mount",
        "setns",
        "unshare",
        "bpf",
        "clone3",
    ] {
        assert!(allowed(&admin, name), "{name} with CAP_SYS_ADMIN");
    }
    assert!(!allowed(&admin, "reboot"));
    assert!(allowed(
        &render_default(&with(&[Capability::SysBoot]), &h),
        "reboot"
    ));
    let ptrace = render_default(&with(&[Capability::SysPtrace]), &h);
    for name in ["ptrace", "kcmp", "pidfd_getfd", "process_vm_readv"] {
        assert!(allowed(&ptrace, name), "{name} with CAP_SYS_PTRACE");
    }
    for (cap, name) in [
        (Capability::SysTime, "clock_settime"),
        (Capability::SysModule, "finit_module"),
        (Capability::SysNice, "set_mempolicy"),
        (Capability::Syslog, "syslog"),
        (Capability::Bpf, "bpf"),
        (Capability::Perfmon, "perf_event_open"),
        (Capability::DacReadSearch, "open_by_handle_at"),
        (Capability::SysRawio, "ioperm"),
        (Capability::SysPacct, "acct"),
        (Capability::SysTtyConfig, "vhangup"),
    ] {
        assert!(allowed(&render_default(&with(&[cap]), &h), name), "{name}");
    }

    // Without CHROOT in the bounding set.
    let mut no_chroot = default_caps();
    no_chroot.remove(&Capability::SysChroot);
    assert!(!allowed(&render_default(&no_chroot, &h), "chroot"));
}

#[test]
fn clone_is_restricted_without_sys_admin() {
    let h = amd64();
    let plain = render_default(&default_caps(), &h);
    assert!(!allowed(&plain, "clone"));
    let clone = rules_for(&plain, "clone");
    assert_eq!(clone.len(), 1);
    let arg = clone[0].args().as_ref().unwrap()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.op()),
        (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
    );
    let clone3 = rules_for(&plain, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));

    let admin = render_default(&with(&[Capability::SysAdmin]), &h);
    assert_eq!(rules_for(&admin, "clone").len(), 1);
    assert!(allowed(&admin, "clone") && allowed(&admin, "clone3"));
    assert_eq!(rules_for(&admin, "clone3").len(), 1);

    // s390 passes the flags as the second argument.
    let s390 = render_default(
        &default_caps(),
        &host(Some(Arch::ScmpArchS390x), "s390x", (6, 1)),
    );
    let clone = rules_for(&s390, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args().as_ref().unwrap()[0].index(), 1);
}

#[test]
fn personality_and_socket_keep_their_argument_rules() {
    let s = render_default(&default_caps(), &amd64());
    let allows = |name: &str, x: u64| {
        rules_for(&s, name).iter().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().as_ref().unwrap().iter().all(|a| holds(a, x))
        })
    };
    let personality: Vec<u64> = probe_values()
        .into_iter()
        .filter(|&x| allows("personality", x))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(personality, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    // Address families below AF_DECnet (12) and 25 more, nothing with a high bit.
    let families: Vec<u64> = probe_values()
        .into_iter()
        .filter(|&x| allows("socket", x))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut want: Vec<u64> = (0..12).collect();
    want.extend([
        13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43,
        44, 45,
    ]);
    assert_eq!(families, want);
    assert!(!allowed(&s, "socket"));
    // In fewer rules than the profile has (26 and 5).
    assert_eq!(rules_for(&s, "socket").len(), 11);
    assert_eq!(rules_for(&s, "personality").len(), 2);
}

/// What the filter decides for syscall `name` when every argument is `x`: the actions (with
/// errno) of the rules that match; empty = the default action. (In the built-in profile every
/// argument rule tests one argument, so one value per call is enough to compare two renderings.)
fn decisions(s: &LinuxSeccomp, name: &str, x: u64) -> Vec<(LinuxSeccompAction, Option<u32>)> {
    let mut out: Vec<_> = rules_for(s, name)
        .iter()
        .filter(|r| r.args().iter().flatten().all(|a| holds(a, x)))
        .map(|r| (r.action(), r.errno_ret()))
        .collect();
    out.dedup();
    out
}

/// The fast rendering runc gets decides every syscall and argument value exactly as the profile
/// as written does, for every capability group and architecture; only X32 goes, and only where
/// the kernel can't run x32 code.
#[test]
fn the_fast_rendering_decides_like_the_profile_as_written() {
    let mut no_x32 = amd64();
    no_x32.x32 = false;
    let hosts = [
        amd64(),
        no_x32,
        host(Some(Arch::ScmpArchAarch64), "arm64", (6, 1)),
        host(Some(Arch::ScmpArchS390x), "s390x", (6, 1)),
        host(Some(Arch::ScmpArchX86_64), "amd64", (4, 7)),
    ];
    let cap_sets = [
        default_caps(),
        with(&[Capability::SysAdmin]),
        with(&[Capability::SysPtrace, Capability::SysBoot]),
    ];
    // Every value up to 300, each bit alone, around it and with the personality flags; the
    // compaction itself is checked on many more values in compact.rs.
    let mut values: Vec<u64> = (0..=300).collect();
    for b in 0..64 {
        let p = 1u64 << b;
        values.extend([p, p - 1, p + 1, !p, p | 13, p | 0x20008]);
    }
    let profile = default_profile().unwrap();
    for h in &hosts {
        for caps in &cap_sets {
            let written = render::render(profile, caps, h, render::Shape::AsWritten).unwrap();
            let fast = render::render(profile, caps, h, render::Shape::Fast).unwrap();
            assert_eq!(fast.default_action(), written.default_action());
            assert_eq!(fast.default_errno_ret(), written.default_errno_ret());
            let mut arches = written.architectures().clone();
            if !h.x32
                && let Some(a) = arches.as_mut()
            {
                a.retain(|a| *a != Arch::ScmpArchX32);
            }
            assert_eq!(fast.architectures(), &arches, "{h:?}");
            assert_eq!(fast.flags(), written.flags());
            let names: std::collections::BTreeSet<&String> = written
                .syscalls()
                .iter()
                .chain(fast.syscalls())
                .flatten()
                .flat_map(|r| r.names())
                .collect();
            for name in names {
                let with_args = rules_for(&written, name)
                    .iter()
                    .chain(&rules_for(&fast, name))
                    .any(|r| r.args().is_some());
                let xs: &[u64] = if with_args { &values } else { &[0] };
                for &x in xs {
                    assert_eq!(
                        decisions(&fast, name, x),
                        decisions(&written, name, x),
                        "{name}({x:#x}) on {h:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn arches_per_native_architecture() {
    let caps = default_caps();
    let arm = render_default(&caps, &host(Some(Arch::ScmpArchAarch64), "arm64", (6, 1)));
    assert_eq!(
        arm.architectures().as_deref(),
        Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
    );
    assert!(allowed(&arm, "set_tls") && allowed(&arm, "cacheflush"));
    assert!(!allowed(&arm, "arch_prctl") && !allowed(&arm, "modify_ldt"));

    let x86 = render_default(&caps, &amd64());
    assert!(!allowed(&x86, "set_tls") && !allowed(&x86, "riscv_flush_icache"));

    let riscv = render_default(&caps, &host(Some(Arch::ScmpArchRiscv64), "riscv64", (6, 1)));
    assert_eq!(
        riscv.architectures().as_deref(),
        Some(&[Arch::ScmpArchRiscv64][..])
    );
    assert!(allowed(&riscv, "riscv_flush_icache"));

    let mips = render_default(
        &caps,
        &host(Some(Arch::ScmpArchMipsel64), "mips64le", (6, 1)),
    );
    assert_eq!(
        mips.architectures().as_deref(),
        Some(
            &[
                Arch::ScmpArchMipsel64,
                Arch::ScmpArchMipsel,
                Arch::ScmpArchMipsel64n32
            ][..]
        )
    );
    // No archMap entry (e.g. ppc64le): runc's native default.
    let ppc = render_default(&caps, &host(Some(Arch::ScmpArchPpc64le), "ppc64le", (6, 1)));
    assert_eq!(ppc.architectures(), &None);
    assert!(allowed(&ppc, "swapcontext"));
    assert_eq!(
        render_default(&caps, &host(None, "sparc64", (6, 1))).architectures(),
        &None
    );
}

#[test]
fn min_kernel_is_evaluated_against_the_kernel() {
    let caps = default_caps();
    let old = render_default(&caps, &host(Some(Arch::ScmpArchX86_64), "amd64", (4, 7)));
    let new = render_default(&caps, &host(Some(Arch::ScmpArchX86_64), "amd64", (4, 8)));
    for name in ["ptrace", "process_vm_readv", "process_vm_writev"] {
        assert!(!allowed(&old, name), "{name} before 4.8");
        assert!(allowed(&new, name), "{name} from 4.8");
    }
    // Before 4.8 ptrace could bypass seccomp, so only CAP_SYS_PTRACE gets it.
    let old_ptrace = render_default(
        &with(&[Capability::SysPtrace]),
        &host(Some(Arch::ScmpArchX86_64), "amd64", (4, 7)),
    );
    assert!(allowed(&old_ptrace, "ptrace"));
    // An unknown kernel version satisfies no minKernel.
    let unknown = Host {
        kernel: None,
        ..amd64()
    };
    assert!(!allowed(&render_default(&caps, &unknown), "ptrace"));
}

#[test]
fn rules_are_merged_without_duplicates() {
    let s = render_default(&with(&[Capability::SysAdmin, Capability::Syslog]), &amd64());
    let rules = s.syscalls().as_ref().unwrap();
    let unconditional: Vec<_> = rules
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        .collect();
    assert_eq!(unconditional.len(), 1, "one plain allow list");
    let names = unconditional[0].names();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "no name twice");
    assert!(names.iter().any(|n| n == "syslog") && names.iter().any(|n| n == "sethostname"));
    // The plain list, 11 socket rules and 2 personality rules (26 and 5 as written).
    assert_eq!(rules.len(), 14);
}

/// Not an assertion on time (machines differ): prints the cost and the size for the record.
/// `cargo test -p berth-spec seccomp::tests::cost -- --nocapture`
#[test]
fn cost_of_the_default_profile() {
    let caps = default_caps();
    let first = Instant::now();
    let s = linux_seccomp(&SeccompProfile::RuntimeDefault, &caps)
        .unwrap()
        .unwrap();
    let first = first.elapsed();
    let n = 1000;
    let start = Instant::now();
    for _ in 0..n {
        let s = linux_seccomp(&SeccompProfile::RuntimeDefault, &caps).unwrap();
        std::hint::black_box(s);
    }
    let per_call = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(s.clone());
    }
    let per_clone = start.elapsed() / n;
    let json = serde_json::to_string(&s).unwrap();
    println!(
        "linux_seccomp(RuntimeDefault): first call {first:?}, then {per_call:?} per call \
         (a clone of its result: {per_clone:?}); linux.seccomp JSON {} bytes, {} rules",
        json.len(),
        s.syscalls().as_ref().unwrap().len()
    );
}

#[test]
fn build_sets_the_filter_except_for_privileged_containers() {
    let mut f = crate::tests::Fixture::new();
    let seccomp = |f: &crate::tests::Fixture| {
        f.build()
            .unwrap()
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .clone()
    };
    assert_eq!(seccomp(&f), None, "Unconfined");
    f.config.security.seccomp = SeccompProfile::RuntimeDefault;
    let s = seccomp(&f).unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(!allowed(&s, "sethostname"));
    f.config.security.add_capabilities = vec!["SYS_ADMIN".into()];
    assert!(allowed(&seccomp(&f).unwrap(), "sethostname"));
    f.config.security.privileged = true;
    assert_eq!(seccomp(&f), None, "privileged");

    f.config.security.privileged = false;
    f.config.security.seccomp = SeccompProfile::Localhost("/nonexistent/profile.json".into());
    let err = f.build().unwrap_err();
    assert!(
        matches!(err, SpecError::UnreadableSeccompProfile { op: "open", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/profile.json"),
        "{err}"
    );
}
