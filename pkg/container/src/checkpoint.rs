//! CheckpointContainer (kubelet's forensic container checkpointing): the running container's
//! processes dumped by CRIU through the OCI runtime (`runc checkpoint --leave-running`), written
//! with its spec, its metadata and its writable layer into one tar archive at the location
//! kubelet names, in the layout containerd and CRI-O use (checkpointctl reads it):
//!
//! - `checkpoint/`: CRIU's image files
//! - `config.dump`: the container's ID, name, image and times (JSON)
//! - `spec.dump`: the OCI runtime spec it runs with
//! - `rootfs-diff.tar`: the writable layer as an OCI layer tar (whiteouts for deletions), as
//!   containerd writes it
//! - `dump.log`: CRIU's log of the dump
//!
//! The container keeps running. Everything is built in a scratch dir beside the archive and
//! the archive is renamed into place last, so a failure leaves neither a partial archive nor the
//! scratch dir behind.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

use crate::ContainerService;
use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};

/// The CRIU binary runc runs (runc looks it up in PATH too).
const CRIU: &str = "criu";
/// When kubelet sends no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);

/// `config.dump`, with checkpointctl's field names.
#[derive(Debug, Serialize)]
struct ConfigDump<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "rootfsImage")]
    rootfs_image: &'a str,
    #[serde(rename = "rootfsImageRef")]
    rootfs_image_ref: &'a str,
    #[serde(rename = "rootfsImageName")]
    rootfs_image_name: &'a str,
    runtime: &'a str,
    #[serde(rename = "createdTime")]
    created_time: String,
    #[serde(rename = "checkpointedTime")]
    checkpointed_time: String,
}

impl ContainerService {
    /// Dumps the running container `id` into a checkpoint archive at `location` (absolute; its
    /// directory must exist). `timeout` None or zero: four minutes.
    pub async fn checkpoint(
        &self,
        id: &str,
        location: &Path,
        timeout: Option<Duration>,
    ) -> Result<PathBuf, ContainerError> {
        if !location.is_absolute() || location.file_name().is_none() {
            return Err(ContainerError::InvalidCheckpointLocation {
                location: location.to_path_buf(),
                reason: "must be an absolute file path",
            });
        }
        let dir = location.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(ContainerError::InvalidCheckpointLocation {
                location: location.to_path_buf(),
                reason: "its directory does not exist",
            });
        }
        let id = self.resolve(id)?;
        let record = self.inner.record(&id)?;
        if record.phase != Phase::Running {
            return Err(ContainerError::WrongState {
                id: id.clone(),
                state: format!("{:?}", record.state()),
                needs: "not running: only a running container can be checkpointed",
            });
        }
        criu_usable().await?;
        let timeout = timeout.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_TIMEOUT);
        let scratch = tempfile_dir(dir, &id)?;
        let result = self.dump_into(&record, &scratch, location, timeout).await;
        if let Err(e) = fs::remove_dir_all(&scratch) {
            tracing::warn!(dir = %scratch.display(), error = %e, "removing checkpoint scratch dir");
        }
        result.map(|()| location.to_path_buf())
    }

    async fn dump_into(
        &self,
        record: &ContainerRecord,
        scratch: &Path,
        location: &Path,
        timeout: Duration,
    ) -> Result<(), ContainerError> {
        let images = scratch.join("checkpoint");
        fs::create_dir(&images).map_err(ContainerError::io("create", &images))?;
        let work = scratch.join("work");
        fs::create_dir(&work).map_err(ContainerError::io("create", &work))?;
        let checkpointed_ns = berth_clock::now_ns();
        let runtime = self.inner.runtime_for(record);
        let mut cmd = Command::new(&runtime.path);
        cmd.args(runtime.global_args())
            .arg("checkpoint")
            .arg("--leave-running")
            .arg("--image-path")
            .arg(&images)
            .arg("--work-path")
            .arg(&work)
            .arg(&record.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(ContainerError::io("run", &runtime.path))?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| ContainerError::CheckpointTimedOut {
                id: record.id.clone(),
                after: timeout,
            })?
            .map_err(ContainerError::io("wait for", &runtime.path))?;
        // runc's own message names the step; CRIU's log says why the dump itself failed.
        let criu_log = work.join("dump.log");
        if !output.status.success() {
            let log = fs::read_to_string(&criu_log).unwrap_or_default();
            return Err(ContainerError::Runtime {
                op: "checkpoint",
                message: format!(
                    "{} checkpoint failed: {}{}",
                    runtime.path.display(),
                    crate::runtime::error_text(&output.stderr),
                    last_error_line(&log)
                        .map(|l| format!(" (CRIU: {l})"))
                        .unwrap_or_default()
                ),
            });
        }
        let record = record.clone();
        let scratch = scratch.to_path_buf();
        let location = location.to_path_buf();
        tokio::task::spawn_blocking(move || {
            write_archive(&record, &scratch, &location, checkpointed_ns)
        })
        .await
        .map_err(ContainerError::task("writing the checkpoint archive"))?
    }
}

/// CRIU must be installed and pass `criu check` on this kernel; otherwise the dump would fail
/// with a message that names neither.
async fn criu_usable() -> Result<(), ContainerError> {
    let output = Command::new(CRIU)
        .arg("check")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ContainerError::CriuUnavailable(
                "checkpointing needs CRIU, which is not installed (Debian package criu)".into(),
            ));
        }
        Err(e) => return Err(ContainerError::io("run", Path::new(CRIU))(e)),
    };
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(ContainerError::CriuUnavailable(format!(
        "CRIU cannot checkpoint on this host: `criu check` failed: {}",
        first_error_line(&text).unwrap_or("no message")
    )))
}

fn first_error_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| l.starts_with("Error"))
}

fn last_error_line(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| l.contains("Error"))
}

/// A fresh private dir beside the archive (same filesystem: the final rename stays atomic).
fn tempfile_dir(dir: &Path, id: &str) -> Result<PathBuf, ContainerError> {
    let short = id.get(..12).unwrap_or(id);
    for attempt in 0..100u32 {
        let path = dir.join(format!(
            ".berth-checkpoint-{short}-{}-{attempt}",
            std::process::id()
        ));
        match fs::DirBuilder::new().create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ContainerError::io("create", &path)(e)),
        }
    }
    Err(ContainerError::NoScratchDir(dir.to_path_buf()))
}

/// Adds the metadata files to `scratch` and tars `checkpoint/` and them into `location`.
fn write_archive(
    record: &ContainerRecord,
    scratch: &Path,
    location: &Path,
    checkpointed_ns: i64,
) -> Result<(), ContainerError> {
    let config = ConfigDump {
        id: &record.id,
        name: &record.config.name,
        rootfs_image: &record.image_name,
        rootfs_image_ref: &record.image_id,
        rootfs_image_name: &record.config.image,
        runtime: &record.handler,
        created_time: berth_image::rfc3339(record.created_at_ns),
        checkpointed_time: berth_image::rfc3339(checkpointed_ns),
    };
    let json =
        serde_json::to_vec_pretty(&config).map_err(ContainerError::json("encoding config.dump"))?;
    write_file(&scratch.join("config.dump"), &json)?;
    let spec_src = record.bundle.join("config.json");
    let spec_dst = scratch.join("spec.dump");
    fs::copy(&spec_src, &spec_dst).map_err(ContainerError::io("copy", &spec_src))?;
    let diff = scratch.join("rootfs-diff.tar");
    let out = File::create(&diff).map_err(ContainerError::io("create", &diff))?;
    let (out, _) = berth_snapshot::write_layer_tar(&record.writable_layer(), BufWriter::new(out))?;
    finish(out, &diff)?;

    let partial = scratch.join("archive.tar");
    let file = File::create(&partial).map_err(ContainerError::io("create", &partial))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    let add = |tar: &mut tar::Builder<BufWriter<File>>, name: &str| {
        let path = scratch.join(name);
        if path.is_dir() {
            tar.append_dir_all(name, &path)
        } else {
            tar.append_path_with_name(&path, name)
        }
        .map_err(ContainerError::io("archive", &path))
    };
    add(&mut tar, "checkpoint")?;
    for name in ["config.dump", "spec.dump", "rootfs-diff.tar"] {
        add(&mut tar, name)?;
    }
    if scratch.join("work/dump.log").is_file() {
        let log = scratch.join("work/dump.log");
        tar.append_path_with_name(&log, "dump.log")
            .map_err(ContainerError::io("archive", &log))?;
    }
    let out = tar
        .into_inner()
        .map_err(ContainerError::io("finish", &partial))?;
    finish(out, &partial)?;
    fs::rename(&partial, location).map_err(ContainerError::io("rename into", location))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    fs::write(path, data).map_err(ContainerError::io("write", path))
}

/// Flushes and syncs a file written through a BufWriter.
fn finish(out: BufWriter<File>, path: &Path) -> Result<(), ContainerError> {
    let file = out
        .into_inner()
        .map_err(|e| ContainerError::io("flush", path)(e.into_error()))?;
    file.sync_all().map_err(ContainerError::io("sync", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_error_lines_are_found() {
        let check = "Warn (criu/kerndat.c:1): foo\nError (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\nError (x): later\n";
        assert_eq!(
            first_error_line(check),
            Some("Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds")
        );
        assert_eq!(last_error_line(check), Some("Error (x): later"));
        assert_eq!(first_error_line("all good\n"), None);
    }

    #[test]
    fn config_dump_has_checkpointctl_names() {
        let config = ConfigDump {
            id: "abc",
            name: "counter",
            rootfs_image: "localhost:5000/busybox:latest",
            rootfs_image_ref: "sha256:1",
            rootfs_image_name: "busybox",
            runtime: "runc",
            created_time: berth_image::rfc3339(0),
            checkpointed_time: berth_image::rfc3339(1_000_000_000),
        };
        let v: serde_json::Value = serde_json::to_value(&config).unwrap();
        for key in [
            "id",
            "name",
            "rootfsImage",
            "rootfsImageRef",
            "rootfsImageName",
            "runtime",
            "createdTime",
            "checkpointedTime",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["checkpointedTime"], "1970-01-01T00:00:01Z");
    }

    #[test]
    fn scratch_dirs_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let a = tempfile_dir(dir.path(), "0123456789abcdef").unwrap();
        let b = tempfile_dir(dir.path(), "0123456789abcdef").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
    }
}
