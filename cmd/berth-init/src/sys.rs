//! The five system calls berth-init makes, and its `_start`.

use core::arch::{asm, global_asm};

pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGTERM: u32 = 15;
pub const SIGCHLD: u32 = 17;

const SIG_BLOCK: usize = 0;
const WNOHANG: usize = 1;
const SFD_CLOEXEC: usize = 0o2000000;
const SIGSET_SIZE: usize = 8;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const WAIT4: usize = 61;
    pub const EXIT_GROUP: usize = 231;
    pub const SIGNALFD4: usize = 289;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: usize = 63;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const WAIT4: usize = 260;
    pub const EXIT_GROUP: usize = 94;
    pub const SIGNALFD4: usize = 74;
}

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym crate::start,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, xzr",
    "mov x30, xzr",
    "bl {start}",
    "udf #0",
    start = sym crate::start,
);

#[cfg(target_arch = "x86_64")]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`; rcx and r11 are clobbered by
    // the `syscall` instruction.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b,
             in("rdx") c, in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c,
             in("x3") d, options(nostack));
    }
    ret
}

/// A kernel signal set (`sigset_t` as the kernel sees it: one 64-bit word).
pub fn sigset(signals: &[u32]) -> u64 {
    signals.iter().fold(0, |set, s| set | 1 << (s - 1))
}

pub fn block_signals(set: u64) -> isize {
    // SAFETY: rt_sigprocmask reads SIGSET_SIZE bytes from `set`, which lives across the call.
    unsafe {
        syscall4(
            nr::RT_SIGPROCMASK,
            SIG_BLOCK,
            &set as *const u64 as usize,
            0,
            SIGSET_SIZE,
        )
    }
}

pub fn signalfd(set: u64) -> isize {
    // SAFETY: signalfd4(-1, &set, 8, SFD_CLOEXEC) reads `set` only during the call.
    unsafe {
        syscall4(
            nr::SIGNALFD4,
            usize::MAX,
            &set as *const u64 as usize,
            SIGSET_SIZE,
            SFD_CLOEXEC,
        )
    }
}

pub fn read(fd: isize, buf: &mut [u8]) -> isize {
    // SAFETY: the kernel writes at most buf.len() bytes into `buf`.
    unsafe {
        syscall4(
            nr::READ,
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
        )
    }
}

pub fn wait4_any_nohang() -> isize {
    // SAFETY: wait4(-1, NULL, WNOHANG, NULL) touches no memory of ours.
    unsafe { syscall4(nr::WAIT4, usize::MAX, 0, WNOHANG, 0) }
}

pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group never returns.
    unsafe {
        syscall4(nr::EXIT_GROUP, code as usize, 0, 0, 0);
        core::hint::unreachable_unchecked()
    }
}
