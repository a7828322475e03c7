//! The requests of proto/monitor/v1, each answered at once or (Create, Wait, Exec, Attach) once the
//! event loop has the answer.

use std::time::{Duration, Instant};

use berth_monitor_api::check_container_id;
use berth_monitor_api::proto::{self, request, response};

use super::{Server, Waiter};
use crate::container::Create;

impl Server {
    pub(super) fn dispatch(&mut self, conn: u64, req: proto::Request) {
        let reply = match req.kind {
            Some(request::Kind::Create(c)) => match self.create(conn, &c) {
                Ok(()) => return,
                Err(message) => error(message),
            },
            Some(request::Kind::Wait(w)) => match self.find(&w.container_id) {
                None => not_found(&w.container_id),
                Some(i) => match &self.containers[i].exit {
                    Some(exit) => response::Kind::Exit(exit.to_proto(&w.container_id)),
                    None => {
                        let deadline = (w.timeout_ms > 0)
                            .then(|| Instant::now() + Duration::from_millis(w.timeout_ms));
                        self.waiters.push(Waiter {
                            conn,
                            container_id: w.container_id,
                            deadline,
                        });
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.busy = true;
                        }
                        return;
                    }
                },
            },
            Some(request::Kind::ReopenLog(r)) => match self.find(&r.container_id) {
                None => not_found(&r.container_id),
                Some(i) => match self.containers[i].log.reopen() {
                    Ok(()) => response::Kind::Done(proto::Done {}),
                    Err(e) => error(e.to_string()),
                },
            },
            Some(request::Kind::Forget(f)) => self.forget(&f.container_id, f.stay),
            Some(request::Kind::Exec(e)) => match self.exec(conn, &e) {
                Ok(()) => return,
                Err(reply) => reply,
            },
            Some(request::Kind::Attach(a)) => match self.attach(conn, &a) {
                None => return,
                Some(reply) => reply,
            },
            Some(request::Kind::CloseStdin(c)) => self.close_stdin(&c),
            Some(request::Kind::List(_)) => {
                let mut containers: Vec<proto::ContainerInfo> = self
                    .containers
                    .iter()
                    .map(|c| proto::ContainerInfo {
                        container_id: c.id.clone(),
                        pid: c.pid,
                        exit: c.exit.as_ref().map(|e| e.to_proto(&c.id)),
                        log_bytes: c.log_bytes(),
                        creating: false,
                    })
                    .collect();
                // Creates in flight too: a berthd that restarted meanwhile must learn that the
                // container exists and wait for its outcome rather than delete its runtime state
                // under the runtime's feet. Forgotten ones are as good as gone.
                containers.extend(self.creates.iter().filter(|c| !c.forgotten).map(|c| {
                    proto::ContainerInfo {
                        container_id: c.id.clone(),
                        creating: true,
                        ..Default::default()
                    }
                }));
                containers.sort_by(|a, b| a.container_id.cmp(&b.container_id));
                response::Kind::Containers(proto::Containers { containers })
            }
            None => error("empty request".to_string()),
        };
        self.respond(conn, reply);
    }

    fn create(&mut self, conn: u64, req: &proto::CreateContainer) -> Result<(), String> {
        check_container_id(&req.container_id)?;
        if self.quit {
            return Err("the monitor is exiting".to_string());
        }
        if self.find(&req.container_id).is_some()
            || self.creates.iter().any(|c| c.id == req.container_id)
        {
            return Err(format!("container {} already exists", req.container_id));
        }
        let create = Create::start(&self.dir, req, conn)?;
        self.creates.push(create);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.busy = true;
        }
        Ok(())
    }

    /// Drops a removed container (also one still being created). With none left (and no create in
    /// flight) the monitor exits, unless berthd asked it to `stay` for containers still to start.
    fn forget(&mut self, id: &str, stay: bool) -> response::Kind {
        let reply = match self.find(id) {
            Some(i) => {
                let container = self.containers.remove(i);
                container.remove_files(&self.dir);
                self.answer_waiters(id, || not_found(id));
                // Attachers still waiting for the end of the output (or of a container forgotten
                // while it ran) get what there is to know.
                let last = match &container.exit {
                    Some(exit) => response::Kind::Exit(exit.to_proto(id)),
                    None => not_found(id),
                };
                for conn in container.attachers {
                    self.respond(conn, last.clone());
                }
                response::Kind::Done(proto::Done {})
            }
            None => match self.creates.iter_mut().find(|c| c.id == id && !c.forgotten) {
                // Its runtime is still running: killing that could leave a half-made container
                // behind in the runtime's state. The container is killed once created instead
                // (see `forgotten_create_done`), and the monitor exits after that if it is idle.
                Some(create) => {
                    create.forgotten = true;
                    response::Kind::Done(proto::Done {})
                }
                None => not_found(id),
            },
        };
        if !stay {
            self.quit_if_idle();
        }
        reply
    }

    /// With no container left and no create in flight, the monitor exits: its socket and pid file
    /// go first, so a monitor spawned for the pod after this is never disturbed by this one's
    /// cleanup.
    pub(super) fn quit_if_idle(&mut self) {
        if self.containers.is_empty() && self.creates.is_empty() && !self.quit {
            crate::note(format_args!("no containers left, exiting"));
            self.remove_endpoint();
            self.quit = true;
        }
    }

    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.id == id)
    }

    /// The answer for a container that is not (yet) among the created ones.
    pub(super) fn missing(&self, id: &str) -> response::Kind {
        if self.creates.iter().any(|c| c.id == id) {
            not_running(format!(
                "container {id} is not running: it is being created"
            ))
        } else {
            not_found(id)
        }
    }
}

pub(super) fn error(message: String) -> response::Kind {
    response::Kind::Error(proto::Error {
        message,
        ..Default::default()
    })
}

pub(crate) fn not_found(id: &str) -> response::Kind {
    response::Kind::Error(proto::Error {
        message: format!("container {id} is not known"),
        not_found: true,
        ..Default::default()
    })
}

pub(super) fn not_running(message: String) -> response::Kind {
    response::Kind::Error(proto::Error {
        message,
        not_running: true,
        ..Default::default()
    })
}
