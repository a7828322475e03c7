//! berth-init: PID 1 of a pod whose containers share one PID namespace (`shareProcessNamespace`).
//!
//! berthd starts it as the first process of a fresh PID namespace; the pod's containers join that
//! namespace. As PID 1 it must reap the zombies that containers' orphans leave, and, since the
//! kernel drops signals to a namespace's PID 1 that have no handler, it installs handlers for the
//! signals that should end it. It does nothing else: no allocation after start, no threads, so its
//! memory stays a few pages of its own.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_child(_: libc::c_int) {}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> bool {
    // SAFETY: a zeroed sigaction with a handler that only touches an atomic is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
    }
}

fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on any child, non-blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("berth-init {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let installed = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP]
        .into_iter()
        .all(|s| install(s, on_stop))
        && install(libc::SIGCHLD, on_child);
    if !installed {
        eprintln!("berth-init: cannot install signal handlers");
        return ExitCode::FAILURE;
    }
    while !STOP.load(Ordering::SeqCst) {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
        reap();
    }
    reap();
    ExitCode::SUCCESS
}
