//! The persisted container: what CRI reports, and enough to tear it down or pick it up again after
//! berthd restarts, from the record alone.

use std::path::PathBuf;

use berth_spec::{ContainerConfig, ResolvedUser, Resources};
use berth_store::{Record, RecordKind};
use serde::{Deserialize, Serialize};

/// How far the container got. Written before each step's side effects, so a berthd that dies
/// half-way knows what may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// CreateContainer has not finished (or berthd died during it): cleaned up on restart.
    Creating,
    /// Bundle and rootfs ready; CRI `CONTAINER_CREATED`.
    Created,
    /// StartContainer asked the monitor to run it and has no answer yet (or berthd died then).
    Starting,
    /// CRI `CONTAINER_RUNNING`.
    Running,
    /// CRI `CONTAINER_EXITED`: exit code, reason and finish time are set.
    Exited,
    /// RemoveContainer has answered: the container is gone for CRI, and its monitor, rootfs and
    /// files are being released in the background (or, after a crash, at the next start).
    Removing,
}

/// CRI's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// The image ID (config digest).
    pub image_id: String,
    /// What CRI reports as the image: the name the request used, resolved to the stored image's
    /// reference (a tag or a digest reference).
    pub image_name: String,
    /// The image's repo digest if it has one, else its ID (CRI `image_ref`).
    pub image_ref: String,
    pub phase: Phase,
    pub created_at_ns: i64,
    #[serde(default)]
    pub started_at_ns: i64,
    #[serde(default)]
    pub finished_at_ns: i64,
    #[serde(default)]
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// Host PID of the container's process while it runs.
    #[serde(default)]
    pub pid: i32,
    /// The process's start time (clock ticks after boot): with `pid`, its identity, so a
    /// recycled PID is never signalled.
    #[serde(default)]
    pub pid_start_time: u64,
    /// The RuntimeClass handler, its binary and its `--root`.
    pub handler: String,
    pub runtime_path: PathBuf,
    pub runtime_root: PathBuf,
    /// `<state>/containers/<id>`: config.json and the rootfs mount point.
    pub bundle: PathBuf,
    /// `<root>/containers/<id>`: the writable layer (upper, work) and image volume dirs.
    pub rw_dir: PathBuf,
    /// The image snapshot the rootfs is built on (kept from garbage collection).
    pub snapshot: String,
    pub user: ResolvedUser,
    pub stop_signal: i32,
    /// Absolute CRI log path, if the pod has a log directory and the container a log path.
    pub log_path: Option<PathBuf>,
    /// The pod monitor's directory.
    pub monitor_dir: PathBuf,
    /// Current resources (updated by UpdateContainerResources).
    pub resources: Resources,
    /// The oom_score_adj given to the runtime (requested, clamped to what the host allows).
    #[serde(default)]
    pub oom_score_adj: i32,
    /// CRI log bytes the monitor wrote for it, known once it has exited.
    #[serde(default)]
    pub log_bytes: u64,
}

impl Record for ContainerRecord {
    const KIND: RecordKind = RecordKind::Container;

    fn id(&self) -> &str {
        &self.id
    }
}

impl ContainerRecord {
    pub fn state(&self) -> ContainerState {
        match self.phase {
            Phase::Creating => ContainerState::Unknown,
            Phase::Created | Phase::Starting => ContainerState::Created,
            Phase::Running => ContainerState::Running,
            Phase::Exited | Phase::Removing => ContainerState::Exited,
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Where the overlay rootfs keeps its upper and work dirs.
    pub(crate) fn overlay_dir(&self) -> PathBuf {
        self.rw_dir.join("fs")
    }

    /// The container's writable layer on disk (the overlay upperdir): what it wrote.
    pub fn writable_layer(&self) -> PathBuf {
        berth_snapshot::upper_dir(&self.overlay_dir())
    }

    /// Records an exit as CRI reports it.
    pub(crate) fn set_exited(&mut self, exit: &berth_monitor_api::Exit) {
        self.phase = Phase::Exited;
        self.exit_code = exit.exit_code;
        self.log_bytes = exit.log_bytes;
        self.finished_at_ns = exit.finished_at_ns;
        self.pid = 0;
        self.pid_start_time = 0;
        self.reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
        if exit.signal != 0 && !exit.oom_killed {
            self.message = format!("killed by signal {}", exit.signal);
        }
    }
}

/// The exit recorded for a container whose monitor is gone without having recorded one: nobody
/// saw how it ended.
pub(crate) fn unknown_exit() -> berth_monitor_api::Exit {
    berth_monitor_api::Exit {
        exit_code: 255,
        signal: 0,
        finished_at_ns: berth_clock::now_ns(),
        oom_killed: false,
        log_bytes: 0,
    }
}
