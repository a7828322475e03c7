//! Exec requests: the runtime's `exec --detach` in flight, the answer with the process's stdio,
//! and the process's exit, answered on the connection that asked (never recorded in the exits
//! directory: an exec does not change its container's state).

use berth_monitor_api::check_container_id;
use berth_monitor_api::proto::{self, response};

use super::Server;
use super::requests::{error, not_running};
use crate::exec::{ExecStart, RunningExec};
use crate::exits::exit_from_status;

impl Server {
    pub(super) fn exec(&mut self, conn: u64, req: &proto::Exec) -> Result<(), response::Kind> {
        check_container_id(&req.container_id).map_err(error)?;
        if self.quit {
            return Err(error("the monitor is exiting".to_string()));
        }
        let Some(i) = self.find(&req.container_id) else {
            return Err(self.missing(&req.container_id));
        };
        if self.containers[i].exit.is_some() {
            return Err(not_running(format!(
                "container {} is not running: it has exited",
                req.container_id
            )));
        }
        let n = self.next_exec;
        self.next_exec += 1;
        let start = ExecStart::start(&self.dir, req, n, conn).map_err(error)?;
        self.exec_starts.push(start);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.busy = true;
        }
        Ok(())
    }

    /// The runtime of an exec was reaped: answer with the process's stdio, or the error.
    pub(super) fn exec_started(&mut self, start: ExecStart, status: libc::c_int) {
        let conn = start.conn.filter(|c| self.conns.contains_key(c));
        let id = start.container_id.clone();
        let group = start.runtime_pid;
        match start.finish(status) {
            Ok(started) => {
                let pid = started.pid;
                // The process may have exited, and been reaped, before its runtime was.
                let early = self.take_early(pid);
                let exec = RunningExec {
                    pid,
                    group,
                    conn,
                    container_id: id.clone(),
                };
                let Some(conn) = conn else {
                    // The requester hung up meanwhile: nobody can use the process.
                    if early.is_none() {
                        exec.kill();
                        self.execs.push(exec);
                    }
                    return;
                };
                crate::note(format_args!("exec in container {id} started, pid {pid}"));
                match early {
                    // Tracked before the answer goes out: a connection that turns out dead is
                    // closed by `send`, which kills the process.
                    None => {
                        self.execs.push(exec);
                        let reply = response::Kind::ExecStarted(started.answer);
                        self.send(conn, reply, started.fds);
                    }
                    Some((status, at)) => {
                        let reply = response::Kind::ExecStarted(started.answer);
                        self.send(conn, reply, started.fds);
                        self.exec_exited(exec, status, at);
                    }
                }
            }
            Err(failed) => {
                crate::note(format_args!("exec in container {id}: {}", failed.message));
                if let Some(pid) = failed.stray
                    && self.take_early(pid).is_none()
                {
                    let stray = RunningExec {
                        pid,
                        group,
                        conn: None,
                        container_id: id,
                    };
                    stray.kill();
                    self.execs.push(stray);
                }
                if let Some(conn) = conn {
                    self.respond(conn, error(failed.message));
                }
            }
        }
    }

    pub(super) fn exec_exited(&mut self, exec: RunningExec, status: libc::c_int, at: i64) {
        // OOM kills are counted per cgroup, which the exec shares with its container: not
        // attributable to the exec.
        let exit = exit_from_status(status, at, false);
        let Some(conn) = exec.conn else {
            return;
        };
        crate::note(format_args!(
            "exec {} in container {} exited: code {}, signal {}",
            exec.pid, exec.container_id, exit.exit_code, exit.signal
        ));
        self.respond(
            conn,
            response::Kind::Exit(exit.to_proto(&exec.container_id)),
        );
    }

    /// A child reaped before it was known: its wait status and time.
    fn take_early(&mut self, pid: i32) -> Option<(libc::c_int, i64)> {
        let i = self.early.iter().position(|&(p, _, _)| p == pid)?;
        let (_, status, at) = self.early.remove(i);
        Some((status, at))
    }
}
