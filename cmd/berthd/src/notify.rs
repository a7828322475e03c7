//! The service manager's notify protocol (sd_notify(3)): berthd tells systemd when it is ready,
//! reloading and stopping, and what it is doing (`STATUS=`), one datagram per message to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! Without `$NOTIFY_SOCKET` (not run by systemd with `Type=notify`) every call does nothing.
//!
//! A few lines of our own rather than the `sd-notify` crate: that crate reads `$NOTIFY_SOCKET`
//! at each call and can only unset it with `std::env::remove_var`, which races with any other
//! thread reading the environment (why it is `unsafe` since Rust 2024), and berthd runs threads
//! from the start. Here [`init`] takes the address once, before any thread exists, and removes
//! the variable then, so that nothing berthd spawns (berth-monitor, runc, CNI plugins) inherits
//! it and could speak to systemd in berthd's name.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// Where messages go: the address, or why `$NOTIFY_SOCKET` could not be used (logged at each
/// message: [`init`] runs before logging is set up).
static TARGET: OnceLock<Result<SocketAddr, String>> = OnceLock::new();

/// A service manager that stops reading must not stall berthd's threads.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Takes `$NOTIFY_SOCKET` out of the environment and remembers where to send messages.
///
/// # Safety
///
/// No other thread may exist yet (it removes an environment variable, see the module comment):
/// call it first thing in `main`.
pub unsafe fn init() {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    // SAFETY: the caller guarantees that berthd is still single-threaded.
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    let _ = TARGET.set(parse(&value).map_err(|e| e.to_string()));
}

/// The CRI socket answers: systemd considers the service started (`Type=notify`).
pub fn ready() {
    send(&["READY=1", "STATUS=serving CRI"]);
}

/// A stop has begun: systemd shows the service as deactivating and does not restart it meanwhile.
pub fn stopping() {
    send(&["STOPPING=1", "STATUS=stopping: finishing in-flight calls"]);
}

/// A configuration reload has begun; [`reloaded`] ends it. The timestamp lets systemd 253+
/// (`Type=notify-reload`) tell this reload from an earlier one.
pub fn reloading() {
    let monotonic = format!("MONOTONIC_USEC={}", monotonic_usec());
    send(&[
        "RELOADING=1",
        &monotonic,
        "STATUS=reloading the configuration",
    ]);
}

/// A reload is over (whether or not the new configuration was taken): serving again.
pub fn reloaded() {
    send(&["READY=1", "STATUS=serving CRI"]);
}

/// What berthd is doing, shown by `systemctl status`.
pub fn status(text: &str) {
    // One line: a newline would start another assignment.
    let line = format!("STATUS={}", text.replace('\n', " "));
    send(&[&line]);
}

fn send(assignments: &[&str]) {
    let Some(target) = TARGET.get() else {
        return;
    };
    let message = assignments.join("\n");
    let result = match target {
        Ok(address) => send_to(address, &message),
        Err(e) => Err(io::Error::other(e.clone())),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, message = %message.replace('\n', " "), "cannot notify the service manager");
    }
}

/// `$NOTIFY_SOCKET`: an absolute path, or `@` and an abstract socket name. (systemd 253 added
/// `vsock:` for virtual machines, which a node runtime does not need.)
fn parse(value: &OsStr) -> io::Result<SocketAddr> {
    match value.as_bytes() {
        [b'/', ..] => SocketAddr::from_pathname(value),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={value:?} is neither an absolute path nor @abstract"),
        )),
    }
}

fn send_to(address: &SocketAddr, message: &str) -> io::Result<()> {
    // An unbound socket per message: messages are a handful per run, and nothing stays open.
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    socket.send_to_addr(message.as_bytes(), address)?;
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC exists
    // on every Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1000).unwrap_or(0);
    secs * 1_000_000 + micros
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let address = parse(path.as_os_str()).unwrap();
        send_to(&address, "READY=1\nSTATUS=serving CRI").unwrap();
        assert_eq!(receive(&receiver), "READY=1\nSTATUS=serving CRI");
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("berthd-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let address = parse(OsStr::new(&format!("@{name}"))).unwrap();
        send_to(&address, "STOPPING=1").unwrap();
        assert_eq!(receive(&receiver), "STOPPING=1");
    }

    #[test]
    fn refuses_relative_paths_and_vsock() {
        for value in ["notify.sock", "vsock:2:1234", ""] {
            assert!(parse(OsStr::new(value)).is_err(), "{value}");
        }
    }

    #[test]
    fn monotonic_usec_is_the_monotonic_clock() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec();
        assert!(b >= a + 2000, "{a} {b}");
        // CLOCK_MONOTONIC counts from boot, far below the wall clock's 1.7e15 µs.
        assert!(b < 1_000_000_000_000_000, "{b}");
    }
}
