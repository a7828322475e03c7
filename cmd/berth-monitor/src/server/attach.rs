//! Attach connections: each gets the container's output as `Output` frames (besides the log) until
//! the container exits, then `Exit`. Output is queued per connection and never waited for: a
//! client that falls more than [`BACKLOG`] behind is dropped, so it can never stall the container
//! or the log.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use berth_monitor_api::encode_frame;
use berth_monitor_api::proto::{self, response};

use super::Server;
use super::requests::{error, not_running};
use crate::conn::Conn;

/// The most output one attach connection may have queued in the monitor.
pub const BACKLOG: usize = 1 << 20;
/// How long after the exit attach connections wait for output still in flight (a pty's last
/// output arrives just after the exit) before they get their `Exit` anyway.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Queues one chunk of output for every attach connection in `attachers`; the ones over their
/// backlog, or dead, are added to `dropped` (for the caller to close).
pub fn fan_out(
    conns: &mut BTreeMap<u64, Conn>,
    attachers: &[u64],
    stream: i32,
    data: &[u8],
    dropped: &mut Vec<u64>,
) {
    let output = proto::Response {
        kind: Some(response::Kind::Output(proto::Output {
            stream,
            data: data.to_vec(),
        })),
    };
    // Chunks are at most one read of the scratch buffer, far below the frame limit.
    let Ok(frame) = encode_frame(&output) else {
        return;
    };
    for id in attachers {
        if dropped.contains(id) {
            continue;
        }
        if let Some(conn) = conns.get_mut(id)
            && !conn.queue_frame(&frame, BACKLOG)
        {
            crate::note(format_args!(
                "dropping an attach connection: more than {BACKLOG} bytes of output queued"
            ));
            dropped.push(*id);
        }
    }
}

impl Server {
    /// Copies readable output of container `i`'s stream on `fd` to the log and its attachers.
    pub(super) fn pump(&mut self, i: usize, fd: RawFd) {
        let Some(container) = self.containers.get_mut(i) else {
            return;
        };
        let conns = &mut self.conns;
        let mut dropped = Vec::new();
        container.pump(fd, &mut self.scratch, &mut |attachers, stream, data| {
            fan_out(conns, attachers, stream, data, &mut dropped)
        });
        for conn in dropped {
            self.close(conn);
        }
    }

    pub(super) fn attach(&mut self, conn: u64, req: &proto::Attach) -> Option<response::Kind> {
        let Some(i) = self.find(&req.container_id) else {
            return Some(self.missing(&req.container_id));
        };
        let container = &mut self.containers[i];
        if container.exit.is_some() {
            return Some(not_running(format!(
                "container {} is not running: it has exited",
                req.container_id
            )));
        }
        let mut fds = Vec::new();
        let mut answer = proto::Attached::default();
        // A tty client always gets the master: it resizes the terminal with it, input or not.
        let wanted = match container.pty() {
            Some(master) => Some((master, &mut answer.pty)),
            None if req.stdin => container
                .stdin
                .as_ref()
                .map(|w| (std::os::fd::AsFd::as_fd(w), &mut answer.stdin)),
            None => None,
        };
        if let Some((fd, flag)) = wanted {
            match fd.try_clone_to_owned() {
                Ok(dup) => {
                    fds.push(dup);
                    *flag = true;
                }
                Err(e) => return Some(error(format!("duplicating a descriptor: {e}"))),
            }
        }
        container.attachers.push(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.busy = true;
        }
        self.send(conn, response::Kind::Attached(answer), fds);
        None
    }

    /// The monitor's stdin write end goes; a terminal's master stays (it carries the output).
    pub(super) fn close_stdin(&mut self, req: &proto::CloseStdin) -> response::Kind {
        let Some(i) = self.find(&req.container_id) else {
            return self.missing(&req.container_id);
        };
        let container = &mut self.containers[i];
        if !container.tty {
            container.stdin = None;
        }
        response::Kind::Done(proto::Done {})
    }

    /// Gives the attach connections of exited containers their `Exit`, once the output streams are
    /// at EOF or the grace period is over; whether any got it.
    pub(super) fn finish_attaches(&mut self, now: Instant) -> bool {
        let mut done = Vec::new();
        for container in &mut self.containers {
            let Some(exit) = &container.exit else {
                continue;
            };
            let due =
                container.streams.is_empty() || container.attach_deadline.is_none_or(|d| d <= now);
            if container.attachers.is_empty() || !due {
                continue;
            }
            container.attach_deadline = None;
            for conn in container.attachers.drain(..) {
                done.push((conn, exit.to_proto(&container.id)));
            }
        }
        let any = !done.is_empty();
        for (conn, exit) in done {
            self.respond(conn, response::Kind::Exit(exit));
        }
        any
    }

    /// When attach connections of exited containers are due their `Exit`.
    pub(super) fn attach_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.containers
            .iter()
            .filter(|c| !c.attachers.is_empty())
            .filter_map(|c| c.attach_deadline)
    }
}
