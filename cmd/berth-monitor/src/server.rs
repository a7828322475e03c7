//! The event loop: one poll(2) over the signalfd, the listening socket, the client connections, the
//! containers' output streams and the console sockets of tty creates and execs. No threads: each
//! would cost its stack's pages.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_monitor_api::proto::{self, response};
use berth_monitor_api::{PID_FILE, SOCKET};

use crate::conn::{Conn, ReadOutcome};
use crate::container::{Container, Create};
use crate::exec::{ExecStart, RunningExec};
use crate::sys;
use crate::trim::Trim;

mod attach;
mod execs;
mod requests;
use requests::error;

/// Connections at once: every running exec and attach session holds one, so this bounds a pod's
/// concurrent sessions (kubelet probes plus users); beyond it new ones are closed.
const MAX_CONNS: usize = 1024;
/// The read buffer shared by all streams.
const SCRATCH: usize = 16 * 1024;

#[derive(Clone, Copy)]
enum Token {
    Signals,
    Listener,
    Conn(u64),
    /// A container (by index) and one of its streams (by descriptor).
    Stream(usize, RawFd),
    /// A create in flight (by index) waiting for its console.
    Console(usize),
    /// An exec in flight (by index) waiting for its console.
    ExecConsole(usize),
}

struct Waiter {
    conn: u64,
    container_id: String,
    deadline: Option<Instant>,
}

pub struct Server {
    dir: PathBuf,
    listener: UnixListener,
    signals: OwnedFd,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    containers: Vec<Container>,
    creates: Vec<Create>,
    waiters: Vec<Waiter>,
    exec_starts: Vec<ExecStart>,
    execs: Vec<RunningExec>,
    /// Names the files of the next exec.
    next_exec: u64,
    /// Children reaped while a create or exec was in flight and not known yet: a container or exec
    /// process can exit (and be reaped, reparented to us) before its runtime's exit is processed.
    early: Vec<(i32, libc::c_int, i64)>,
    scratch: Vec<u8>,
    trim: Trim,
    quit: bool,
}

impl Server {
    pub fn new(dir: PathBuf, listener: UnixListener, signals: OwnedFd) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Ok(Server {
            dir,
            listener,
            signals,
            conns: BTreeMap::new(),
            next_conn: 0,
            containers: Vec::new(),
            creates: Vec::new(),
            waiters: Vec::new(),
            exec_starts: Vec::new(),
            execs: Vec::new(),
            next_exec: 0,
            early: Vec::new(),
            scratch: vec![0; SCRATCH],
            trim: Trim::new(),
            quit: false,
        })
    }

    /// Serves until told to go (SIGTERM/SIGINT, or the last container forgotten); the exit code.
    pub fn run(&mut self) -> u8 {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        loop {
            fds.clear();
            tokens.clear();
            let mut add = |fd: RawFd, events: i16, token: Token| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                tokens.push(token);
            };
            add(self.signals.as_raw_fd(), libc::POLLIN, Token::Signals);
            add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener);
            for (i, create) in self.creates.iter().enumerate() {
                if let Some(fd) = create.console.as_ref().and_then(|c| c.poll_fd()) {
                    add(fd, libc::POLLIN, Token::Console(i));
                }
            }
            for (i, start) in self.exec_starts.iter().enumerate() {
                if let Some(fd) = start.console.as_ref().and_then(|c| c.poll_fd()) {
                    add(fd, libc::POLLIN, Token::ExecConsole(i));
                }
            }
            for (i, container) in self.containers.iter().enumerate() {
                for stream in &container.streams {
                    add(stream.fd(), libc::POLLIN, Token::Stream(i, stream.fd()));
                }
            }
            for (&id, conn) in &self.conns {
                add(conn.fd(), conn.events(), Token::Conn(id));
            }

            let timeout = self.next_timeout();
            let ready = match sys::poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(e) => {
                    crate::note(format_args!("poll: {e}"));
                    return 1;
                }
            };
            if ready > 0 {
                self.trim.touch();
            }
            // Consoles and streams first: indices stay valid until creates finish (signals) and
            // containers are forgotten (connections).
            for phase in 0..3 {
                for (pfd, &token) in fds.iter().zip(&tokens) {
                    if pfd.revents == 0 {
                        continue;
                    }
                    match (phase, token) {
                        (0, Token::Console(i)) => {
                            if let Some(console) =
                                self.creates.get_mut(i).and_then(|c| c.console.as_mut())
                            {
                                console.progress();
                            }
                        }
                        (0, Token::ExecConsole(i)) => {
                            if let Some(console) =
                                self.exec_starts.get_mut(i).and_then(|c| c.console.as_mut())
                            {
                                console.progress();
                            }
                        }
                        (0, Token::Stream(i, fd)) => self.pump(i, fd),
                        (1, Token::Signals) => self.on_signals(),
                        (2, Token::Listener) => self.accept(),
                        (2, Token::Conn(id)) => self.on_conn(id, pfd.revents),
                        _ => {}
                    }
                }
            }
            let now = Instant::now();
            if self.expire(now) | self.finish_attaches(now) {
                self.trim.touch();
            }
            // A connection that stopped being busy may have further requests buffered.
            let ready: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| !c.busy && c.has_request())
                .map(|(&id, _)| id)
                .collect();
            for id in ready {
                self.handle_requests(id);
            }
            if self.quit {
                // Their requesters' connections end with us: nobody could wait for or stop them.
                for exec in &self.execs {
                    exec.kill();
                }
                self.flush_all(Duration::from_secs(1));
                return 0;
            }
        }
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let deadlines = self
            .waiters
            .iter()
            .filter_map(|w| w.deadline)
            .chain(
                self.creates
                    .iter()
                    .filter(|c| !c.killed)
                    .map(|c| c.deadline),
            )
            .chain(
                self.exec_starts
                    .iter()
                    .filter(|s| !s.killed)
                    .map(|s| s.deadline),
            )
            .chain(self.attach_deadlines());
        let mut timeout = deadlines.min().map(|d| d.saturating_duration_since(now));
        if self.conns.values().any(|c| !c.busy && c.has_request()) {
            timeout = Some(Duration::ZERO);
        }
        // Only trims when the loop is about to block anyway.
        match (timeout, self.trim.tick()) {
            (Some(t), Some(trim)) => Some(t.min(trim)),
            (t, trim) => t.or(trim),
        }
    }

    fn on_signals(&mut self) {
        let (child, term) = sys::read_signals(self.signals.as_fd());
        if child {
            self.reap();
        }
        if term {
            // Containers keep running; berthd finds their exits in the exit files.
            crate::note(format_args!("terminated by signal"));
            self.remove_endpoint();
            self.quit = true;
        }
    }

    /// Reaps every exited child: runtimes finish their creates, containers record exits, and
    /// anything else (orphans reparented to us, the subreaper) is reaped and ignored.
    fn reap(&mut self) {
        while let Some((pid, status)) = sys::reap_one() {
            let at = berth_clock::now_ns();
            if let Some(i) = self.creates.iter().position(|c| c.runtime_pid == pid) {
                let create = self.creates.remove(i);
                self.create_done(create, status);
            } else if let Some(i) = self.exec_starts.iter().position(|s| s.runtime_pid == pid) {
                let start = self.exec_starts.remove(i);
                self.exec_started(start, status);
            } else if let Some(i) = self
                .containers
                .iter()
                .position(|c| c.pid == pid && c.exit.is_none())
            {
                self.container_exited(i, status, at);
            } else if let Some(i) = self.execs.iter().position(|e| e.pid == pid) {
                let exec = self.execs.remove(i);
                self.exec_exited(exec, status, at);
            } else if !self.creates.is_empty() || !self.exec_starts.is_empty() {
                self.early.push((pid, status, at));
            }
        }
        if self.creates.is_empty() && self.exec_starts.is_empty() {
            self.early.clear();
        }
    }

    fn create_done(&mut self, create: Create, status: libc::c_int) {
        let conn = create.conn;
        let id = create.id.clone();
        if create.forgotten {
            return self.forgotten_create_done(create, status);
        }
        let reply = match create.finish(status) {
            Ok(container) => {
                let pid = container.pid;
                crate::note(format_args!(
                    "container {} started, pid {pid}",
                    container.id
                ));
                self.containers.push(container);
                if let Some(i) = self.early.iter().position(|&(p, _, _)| p == pid) {
                    let (_, status, at) = self.early.remove(i);
                    self.container_exited(self.containers.len() - 1, status, at);
                }
                response::Kind::Created(proto::Created { pid })
            }
            Err(message) => {
                crate::note(format_args!("creating container {id}: {message}"));
                error(message)
            }
        };
        if let Some(conn) = conn {
            self.respond(conn, reply);
        }
    }

    /// The runtime of a create berthd has forgotten meanwhile exited: nobody wants the container,
    /// so it is killed (its process is reaped like any orphan) and its files go. The monitor then
    /// exits if that was its last container, as after any Forget.
    fn forgotten_create_done(&mut self, create: Create, status: libc::c_int) {
        let conn = create.conn;
        let id = create.id.clone();
        match create.finish(status) {
            Ok(container) => {
                let pid = container.pid;
                match self.early.iter().position(|&(p, _, _)| p == pid) {
                    // Already dead and reaped: nothing to kill (the pid may be reused).
                    Some(i) => {
                        self.early.remove(i);
                    }
                    None => sys::kill(pid, libc::SIGKILL),
                }
                container.remove_files(&self.dir);
                crate::note(format_args!(
                    "container {id} was forgotten while being created: killed pid {pid}"
                ));
            }
            Err(message) => {
                crate::note(format_args!("creating forgotten container {id}: {message}"));
            }
        }
        if let Some(conn) = conn {
            self.respond(conn, requests::not_found(&id));
        }
        self.quit_if_idle();
    }

    fn container_exited(&mut self, i: usize, status: libc::c_int, at: i64) {
        let conns = &mut self.conns;
        let mut dropped = Vec::new();
        let container = &mut self.containers[i];
        let exit = container.exited(
            &self.dir,
            status,
            at,
            &mut self.scratch,
            &mut |attachers, stream, data| {
                attach::fan_out(conns, attachers, stream, data, &mut dropped)
            },
        );
        let id = container.id.clone();
        if !container.attachers.is_empty() {
            container.attach_deadline = Some(Instant::now() + attach::EXIT_GRACE);
        }
        for conn in dropped {
            self.close(conn);
        }
        crate::note(format_args!(
            "container {id} exited: code {}, signal {}, oom {}",
            exit.exit_code, exit.signal, exit.oom_killed
        ));
        let proto_exit = exit.to_proto(&id);
        self.answer_waiters(&id, || response::Kind::Exit(proto_exit.clone()));
    }

    fn answer_waiters(&mut self, container_id: &str, reply: impl Fn() -> response::Kind) {
        let (done, rest): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.container_id == container_id);
        self.waiters = rest;
        for w in done {
            self.respond(w.conn, reply());
        }
    }

    /// Answers Waits whose timeout passed and kills runtimes past theirs; whether anything was due.
    fn expire(&mut self, now: Instant) -> bool {
        let (due, rest): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.deadline.is_some_and(|d| d <= now));
        self.waiters = rest;
        let mut any = !due.is_empty();
        for w in due {
            self.respond(w.conn, response::Kind::Pending(proto::Pending {}));
        }
        for create in &mut self.creates {
            if !create.killed && create.deadline <= now {
                // Answered with an error once the runtime is reaped.
                sys::kill(create.runtime_pid, libc::SIGKILL);
                create.killed = true;
                any = true;
            }
        }
        for start in &mut self.exec_starts {
            if !start.killed && start.deadline <= now {
                sys::kill(start.runtime_pid, libc::SIGKILL);
                start.killed = true;
                any = true;
            }
        }
        any
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_CONNS {
                        continue;
                    }
                    if let Ok(conn) = Conn::new(stream) {
                        self.conns.insert(self.next_conn, conn);
                        self.next_conn += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn on_conn(&mut self, id: u64, revents: i16) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if revents & libc::POLLOUT != 0 && !conn.flush() {
            return self.close(id);
        }
        if conn.busy {
            // Nothing was asked for but hang-ups and errors: the client gave up on its answer.
            if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.close(id);
            }
            return;
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        let outcome = conn.read_ready();
        self.handle_requests(id);
        if matches!(outcome, ReadOutcome::Closed) {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        self.conns.remove(&id);
        self.waiters.retain(|w| w.conn != id);
        for create in &mut self.creates {
            if create.conn == Some(id) {
                create.conn = None;
            }
        }
        // An exec lives only as long as the connection that asked for it: berthd gave up, or is
        // gone. Still ours to reap. One in flight is killed once its runtime has told its pid.
        for start in &mut self.exec_starts {
            if start.conn == Some(id) {
                start.conn = None;
            }
        }
        for exec in &mut self.execs {
            if exec.conn == Some(id) {
                exec.kill();
                exec.conn = None;
            }
        }
        for container in &mut self.containers {
            container.attachers.retain(|&c| c != id);
        }
    }

    fn handle_requests(&mut self, id: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if conn.busy {
                return;
            }
            match conn.next_request() {
                Ok(Some(req)) => self.dispatch(id, req),
                Ok(None) => return,
                Err(e) => {
                    crate::note(format_args!("closing a connection: {e}"));
                    return self.close(id);
                }
            }
        }
    }

    fn respond(&mut self, conn: u64, reply: response::Kind) {
        let alive = match self.conns.get_mut(&conn) {
            Some(c) => c.respond(reply),
            None => return,
        };
        if !alive {
            self.close(conn);
        }
    }

    /// Sends an answer that more answers follow on (`busy` stays set), with descriptors.
    fn send(&mut self, conn: u64, reply: response::Kind, fds: Vec<OwnedFd>) {
        let alive = match self.conns.get_mut(&conn) {
            Some(c) => c.send(reply, fds),
            None => return,
        };
        if !alive {
            self.close(conn);
        }
    }

    fn remove_endpoint(&self) {
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
        remove_pid_file(&self.dir);
    }

    /// Before exiting: give queued answers a moment to go out.
    fn flush_all(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.conns.retain(|_, c| c.flush() && c.pending_output());
            if self.conns.is_empty() || Instant::now() >= deadline {
                return;
            }
            let mut fds: Vec<libc::pollfd> = self
                .conns
                .values()
                .map(|c| libc::pollfd {
                    fd: c.fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                })
                .collect();
            let _ = sys::poll(
                &mut fds,
                Some(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
}

/// Removes the pid file only if it is still ours.
pub fn remove_pid_file(dir: &Path) {
    let path = dir.join(PID_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}
