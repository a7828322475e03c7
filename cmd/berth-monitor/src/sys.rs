//! Thin wrappers over the system calls std does not offer: pipes, poll, signalfd, waitpid,
//! non-blocking reads, writev and SCM_RIGHTS.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; a bad one fails with EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// One read(2); `Ok(0)` is EOF. EINTR is retried.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes all of `parts` with as few writev(2) calls as the kernel allows: normally one, so a
/// reader of an O_APPEND file never sees a torn line. On failure, how much did get written.
pub fn write_all_vectored(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> Result<(), (usize, io::Error)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    while done < total {
        // Skip what was already written (only after a short write).
        let mut iov: [libc::iovec; 6] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 6];
        let mut count = 0;
        let mut skip = done;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            if count == iov.len() {
                break;
            }
            let rest = &part[skip..];
            skip = 0;
            iov[count] = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            };
            count += 1;
        }
        // At most iov.len() (6).
        #[allow(clippy::cast_possible_truncation)]
        let count = count as libc::c_int;
        // SAFETY: iov[..count] point into live slices.
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), count) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err((done, err));
        }
        if n == 0 {
            return Err((done, io::Error::from(io::ErrorKind::WriteZero)));
        }
        done += n as usize;
    }
    Ok(())
}

/// poll(2) with EINTR reported as zero ready descriptors.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so a deadline 0.4 ms away does not spin.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    // SAFETY: fds is a valid slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

/// Blocks SIGCHLD, SIGTERM and SIGINT and returns a non-blocking signalfd for them. Children get
/// an empty mask again from std's Command.
pub fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    // SAFETY: valid set; the old mask is not needed.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: as above.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drains the signalfd; returns (SIGCHLD seen, SIGTERM/SIGINT seen).
pub fn read_signals(fd: BorrowedFd<'_>) -> (bool, bool) {
    let (mut child, mut term) = (false, false);
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: reading one siginfo into a buffer of its size.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n != size as isize {
            return (child, term);
        }
        match info.ssi_signo as libc::c_int {
            libc::SIGCHLD => child = true,
            libc::SIGTERM | libc::SIGINT => term = true,
            _ => {}
        }
    }
}

/// The next exited child, if any: (pid, wait status).
pub fn reap_one() -> Option<(i32, libc::c_int)> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            return Some((pid, status));
        }
        if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // 0: children remain but none exited; ECHILD: no children.
        return None;
    }
}

pub fn kill(pid: i32, signal: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) on a positive pid never touches our memory.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Raises the soft RLIMIT_NOFILE to `want` (at most the hard limit); best effort.
pub fn raise_nofile(want: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Signals every process of the process group `pgid`.
pub fn kill_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: as kill: a negative pid names a process group.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Receives one descriptor passed with SCM_RIGHTS (runc's console socket protocol: the pty name as
/// data, the master as the descriptor). `Ok(None)` if the peer closed without sending one.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut data = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: msg points at valid buffers.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut received = None;
    // SAFETY: walking the control messages the kernel filled in, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = payload / std::mem::size_of::<RawFd>();
                let fds = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(fds.add(i)));
                    // Keep the first; any extra one is closed by dropping it.
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if received.is_none() && n > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "console socket message without a descriptor",
        ));
    }
    Ok(received)
}

/// The most descriptors one answer carries (an exec's stdin, stdout and stderr).
pub const MAX_SEND_FDS: usize = 3;

/// One sendmsg(2) of `data` with `fds` attached (SCM_RIGHTS); how much of `data` went out. The
/// descriptors travel with the first byte: once this returns `Ok(n > 0)` the peer has them.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.is_empty() || fds.len() > MAX_SEND_FDS || data.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // u64 words keep the control buffer aligned for cmsghdr; 32 bytes hold three descriptors.
    let mut control = [0u64; 4];
    // At most MAX_SEND_FDS (3) descriptors, checked above: 12 bytes.
    #[allow(clippy::cast_possible_truncation)]
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as usize;
    // SAFETY: the control buffer is large enough for one cmsghdr with `fds` (checked above).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
        let dst = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, &fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(dst.add(i), fd);
        }
    }
    loop {
        // SAFETY: msg points at valid buffers. MSG_NOSIGNAL: a vanished client is EPIPE, not a
        // signal.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads what `fd` holds right now (at most `limit` bytes) without blocking, also on a descriptor
/// in blocking mode (the far ends of an exec's pipes stay blocking for berthd: O_NONBLOCK would be
/// shared with it).
pub fn read_available(fd: BorrowedFd<'_>, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < limit {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        if ready <= 0 || pfd.revents & libc::POLLIN == 0 {
            break;
        }
        match read(fd, &mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}
