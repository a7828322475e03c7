//! Bringing up `lo` in a new network namespace.
//!
//! A new netns has a loopback device that is down. Every pod needs it (containers talk to
//! themselves on 127.0.0.1), and runtimes run the CNI `loopback` plugin just for this; an ioctl
//! from the pin thread, which is already inside the namespace, does it without spawning a process.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::NamespaceError;

pub(crate) fn up() -> Result<(), NamespaceError> {
    let fail = |source: io::Error| NamespaceError::Loopback { source };
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh, valid fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; zero is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // IFF_UP is 1.
    #[allow(clippy::cast_possible_truncation)]
    let up = libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which lives across the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= up;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
    }
    Ok(())
}
