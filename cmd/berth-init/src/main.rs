//! berth-init: PID 1 of a pod whose containers share one PID namespace (`shareProcessNamespace`).
//!
//! berthd starts it as the first process of a fresh PID namespace; the pod's containers join that
//! namespace. As PID 1 it must reap the zombies that containers' orphans leave, and it must end
//! on SIGTERM/SIGINT/SIGHUP (the kernel drops signals to a namespace's PID 1 unless it handles
//! them; blocked signals read from a signalfd count as handled).
//!
//! It is a few KiB with no libc and no allocator: raw Linux system calls from its own `_start`,
//! so a pod that shares its PID namespace costs a few pages of memory, not a runtime's worth.
//! x86_64 and aarch64 Linux only.

#![no_std]
#![no_main]

// Everything unsafe: `_start` in global_asm, and the raw system calls (rt_sigprocmask, signalfd4,
// read, wait4, exit_group) in inline asm, with no libc.
#[allow(unsafe_code)]
mod sys;

use sys::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// `struct signalfd_siginfo` is 128 bytes; the signal number is its first field.
const SIGINFO_SIZE: usize = 128;

fn reap() {
    // wait4(-1, NULL, WNOHANG, NULL) until no exited child is left.
    while sys::wait4_any_nohang() > 0 {}
}

fn run() -> i32 {
    let mask = sys::sigset(&[SIGTERM, SIGINT, SIGHUP, SIGCHLD]);
    if sys::block_signals(mask) < 0 {
        return 1;
    }
    let fd = sys::signalfd(mask);
    if fd < 0 {
        return 1;
    }
    let mut info = [0u8; SIGINFO_SIZE];
    loop {
        let n = sys::read(fd, &mut info);
        if n < 0 {
            // EINTR cannot happen with every handled signal blocked; anything else is fatal.
            return 1;
        }
        if n as usize != SIGINFO_SIZE {
            continue;
        }
        let signal = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
        if signal == SIGCHLD {
            reap();
        } else {
            reap();
            return 0;
        }
    }
}

/// The entry point `_start` (in `sys`) jumps to.
extern "C" fn start() -> ! {
    sys::exit(run())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(2)
}

/// The precompiled `core` refers to the unwinding personality routine even though this binary
/// aborts on panic; nothing ever calls it.
// An exported symbol name (no_mangle) is an unsafe attribute; this one defines an empty function.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
