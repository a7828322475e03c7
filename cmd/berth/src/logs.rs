//! `berth logs`: reading a container's CRI log file on this node, as kubelet does for
//! `kubectl logs` (see [`crate::crilog`] for the format), following it as it grows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use k8s_cri::v1 as cri;

use crate::containers::{self, Runtime};
use crate::crilog::{Joiner, Line, LogFile, Stream};

/// How often a followed log and the container's state are looked at.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Container ID, unique ID prefix or name.
    pub id: String,
    /// Keep printing output as it arrives, until the container exits.
    #[arg(long, short)]
    pub follow: bool,
    /// Print only the last N lines ("all": every line).
    #[arg(long, value_name = "N", value_parser = tail, default_value = "all")]
    pub tail: Tail,
    /// Prefix each line with the time the runtime logged it.
    #[arg(long, short)]
    pub timestamps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail(pub Option<usize>);

fn tail(spec: &str) -> Result<Tail, String> {
    match spec {
        "all" | "-1" => Ok(Tail(None)),
        n => n
            .parse()
            .map(|n| Tail(Some(n)))
            .map_err(|_| format!("{n:?} is not a number of lines (or \"all\")")),
    }
}

/// Reads a container's log and prints it: content to stdout or stderr by stream.
pub struct Follower {
    file: LogFile,
    joiner: Joiner,
    timestamps: bool,
    /// Applied to the first batch only: what was in the file when berth looked.
    tail: Option<usize>,
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>, timestamps: bool, tail: Tail) -> Follower {
        Follower {
            file: LogFile::new(path),
            joiner: Joiner::default(),
            timestamps,
            tail: tail.0,
        }
    }

    /// Prints the lines completed since the last call.
    pub fn pump(&mut self) -> std::io::Result<()> {
        let raw = self.file.read_lines()?;
        let lines: Vec<Line> = raw.iter().filter_map(|r| self.joiner.push(r)).collect();
        self.print(lines)
    }

    /// The container is gone: prints everything left, unfinished lines too.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.pump()?;
        let mut lines: Vec<Line> = self
            .file
            .rest()
            .and_then(|rest| self.joiner.push(&rest))
            .into_iter()
            .collect();
        lines.extend(self.joiner.flush());
        self.print(lines)
    }

    fn print(&mut self, mut lines: Vec<Line>) -> std::io::Result<()> {
        if let Some(n) = self.tail.take() {
            lines.drain(..lines.len().saturating_sub(n));
        }
        if lines.is_empty() {
            return Ok(());
        }
        let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
        for line in &lines {
            let out: &mut dyn Write = match line.stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr => &mut stderr,
            };
            if self.timestamps && !line.timestamp.is_empty() {
                write!(out, "{} ", line.timestamp)?;
            }
            out.write_all(&line.content)?;
        }
        stdout.flush()?;
        stderr.flush()
    }
}

/// The absolute log path ContainerStatus reports.
pub fn log_path(status: &cri::ContainerStatus) -> anyhow::Result<PathBuf> {
    let path = Path::new(&status.log_path);
    if status.log_path.is_empty() {
        bail!("container {} has no log file", status.id);
    }
    if !path.is_absolute() {
        bail!(
            "container {}: the runtime reports a relative log path, {:?}; berth needs an absolute one",
            status.id,
            status.log_path
        );
    }
    Ok(path.to_path_buf())
}

/// How following a container's output ended.
pub enum End {
    /// With this exit code.
    Exited(i32),
    /// The container was removed meanwhile.
    Gone,
    /// `interrupted` said to stop following.
    Interrupted,
}

/// Prints the container's output as it arrives, until it exits.
pub async fn follow(
    runtime: &mut Runtime,
    id: &str,
    follower: &mut Follower,
    mut interrupted: impl FnMut() -> bool,
) -> anyhow::Result<End> {
    loop {
        let state = containers::status(runtime, id, false).await?;
        match state.and_then(|r| r.status) {
            Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => {
                // Give the runtime a moment to write what the container printed last.
                follower.pump()?;
                tokio::time::sleep(POLL / 2).await;
                follower.finish()?;
                return Ok(End::Exited(s.exit_code));
            }
            Some(_) => follower.pump()?,
            None => {
                follower.finish()?;
                return Ok(End::Gone);
            }
        }
        tokio::time::sleep(POLL).await;
        if interrupted() {
            follower.finish()?;
            return Ok(End::Interrupted);
        }
    }
}

pub async fn logs(runtime: &mut Runtime, args: &LogsArgs) -> anyhow::Result<()> {
    let status = containers::find(runtime, &args.id, false).await?;
    let path = log_path(&status)?;
    let mut follower = Follower::new(&path, args.timestamps, args.tail);
    if !args.follow {
        return follower
            .finish()
            .with_context(|| format!("reading {}", path.display()));
    }
    follow(runtime, &status.id, &mut follower, || false).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_values() {
        assert_eq!(tail("all"), Ok(Tail(None)));
        assert_eq!(tail("3"), Ok(Tail(Some(3))));
        assert!(tail("x").is_err());
    }
}
