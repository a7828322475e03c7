//! `berth logs`: reading a container's CRI log file on this node, as kubelet does for
//! `kubectl logs` (see [`crate::crilog`] for the format), following it as it grows and across
//! kubelet's rotations.
//!
//! Which lines print: those of the chosen stream, logged at or after `--since` and at or before
//! `--until`; of those the last `--tail` (of what was in the file when berth looked); and no more
//! than `--limit-bytes` bytes of output in all (timestamps included, as kubelet counts them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::{Args, ValueEnum};

use crate::containers::{self, Runtime};
use crate::crilog::{Joiner, Line, LogFile, Stream};
use crate::duration::{self, Point};

/// How often a followed log and the container's state are looked at.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamArg {
    /// The container's standard output only.
    Stdout,
    /// Its standard error only.
    Stderr,
    /// Both, interleaved as logged.
    All,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Container ID, unique ID prefix or name.
    pub id: String,
    /// Keep printing output as it arrives (across log rotations), until the container exits.
    #[arg(long, short)]
    pub follow: bool,
    /// Print only the last N lines ("all": every line).
    #[arg(long, value_name = "N", value_parser = tail, default_value = "all")]
    pub tail: Tail,
    /// Prefix each line with the time the runtime logged it.
    #[arg(long, short)]
    pub timestamps: bool,
    /// Only lines logged since this time: RFC 3339 (2024-05-01T10:00:00Z), Unix seconds, or a
    /// duration before now (10m, 1h30m).
    #[arg(long, value_name = "TIME", value_parser = duration::point)]
    pub since: Option<Point>,
    /// Only lines logged before this time (as --since); with -f, stop following then.
    #[arg(long, value_name = "TIME", value_parser = duration::point)]
    pub until: Option<Point>,
    /// The previous attempt's log: the same container name in the same pod, one restart before.
    #[arg(long, short)]
    pub previous: bool,
    /// Print at most this many bytes of output, then stop (also when following).
    #[arg(long, value_name = "BYTES")]
    pub limit_bytes: Option<u64>,
    /// Which of the container's streams to print.
    #[arg(long, value_enum, default_value = "all")]
    pub stream: StreamArg,
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

/// Which lines print (see the module comment). Times are nanoseconds since the epoch.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub stream: Option<Stream>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Select {
    /// Lines without a timestamp (not in the CRI format) can't be placed in time: they pass.
    fn wants(&self, line: &Line) -> bool {
        if self.stream.is_some_and(|s| s != line.stream) {
            return false;
        }
        let Some(at) = duration::parse_rfc3339(&line.timestamp) else {
            return true;
        };
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at <= until)
    }
}

/// The lines to print of one batch: selected, then the last `tail` of them.
pub fn choose(mut lines: Vec<Line>, select: &Select, tail: Option<usize>) -> Vec<Line> {
    lines.retain(|l| select.wants(l));
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    lines
}

/// What each line prints as, cut off once `budget` bytes (if any) are used up; the budget left.
pub fn render(
    lines: &[Line],
    timestamps: bool,
    mut budget: Option<u64>,
) -> (Vec<(Stream, Vec<u8>)>, Option<u64>) {
    let mut out = Vec::new();
    for line in lines {
        let mut bytes = Vec::with_capacity(line.content.len() + 32);
        if timestamps && !line.timestamp.is_empty() {
            bytes.extend_from_slice(line.timestamp.as_bytes());
            bytes.push(b' ');
        }
        bytes.extend_from_slice(&line.content);
        if let Some(left) = &mut budget {
            let take = bytes
                .len()
                .min(usize::try_from(*left).unwrap_or(usize::MAX));
            bytes.truncate(take);
            *left -= take as u64;
        }
        if !bytes.is_empty() {
            out.push((line.stream, bytes));
        }
        if budget == Some(0) {
            break;
        }
    }
    (out, budget)
}

/// Reads a container's log and prints it: content to stdout or stderr by stream.
pub struct Follower {
    file: LogFile,
    joiner: Joiner,
    timestamps: bool,
    /// Applied to the first batch only: what was in the file when berth looked.
    tail: Option<usize>,
    select: Select,
    /// `--limit-bytes`: what may still be printed.
    budget: Option<u64>,
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>, timestamps: bool, tail: Tail) -> Follower {
        Follower {
            file: LogFile::new(path),
            joiner: Joiner::default(),
            timestamps,
            tail: tail.0,
            select: Select::default(),
            budget: None,
        }
    }

    /// Only the lines `select` wants, and at most `limit` bytes.
    pub fn selecting(mut self, select: Select, limit: Option<u64>) -> Follower {
        self.select = select;
        self.budget = limit;
        self
    }

    /// Nothing more will print: the byte limit is used up, or `--until` has passed.
    pub fn done(&self) -> bool {
        self.budget == Some(0) || self.select.until.is_some_and(|u| berth_clock::now_ns() > u)
    }

    fn completed(&mut self) -> std::io::Result<Vec<Line>> {
        let raw = self.file.read_lines()?;
        Ok(raw.iter().filter_map(|r| self.joiner.push(r)).collect())
    }

    /// Prints the lines completed since the last call.
    pub fn pump(&mut self) -> std::io::Result<()> {
        let lines = self.completed()?;
        self.print(lines)
    }

    /// The container is gone: prints everything left, unfinished lines too (in one batch, so
    /// --tail counts them).
    pub fn finish(&mut self) -> std::io::Result<()> {
        let mut lines = self.completed()?;
        lines.extend(self.file.rest().and_then(|rest| self.joiner.push(&rest)));
        lines.extend(self.joiner.flush());
        self.print(lines)
    }

    fn print(&mut self, lines: Vec<Line>) -> std::io::Result<()> {
        // The first batch is cut to --tail even when empty: later batches are never cut.
        let lines = choose(lines, &self.select, self.tail.take());
        if lines.is_empty() || self.budget == Some(0) {
            return Ok(());
        }
        let (chunks, budget) = render(&lines, self.timestamps, self.budget);
        self.budget = budget;
        let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
        for (stream, bytes) in &chunks {
            let out: &mut dyn Write = match stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr => &mut stderr,
            };
            out.write_all(bytes)?;
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

/// Where crictl looks for the previous attempt's log: kubelet names a container's log
/// `<pod log dir>/<container name>/<attempt>.log`, so the same directory, `<attempt - 1>.log`.
pub fn previous_by_name(path: &Path, attempt: u32) -> Option<PathBuf> {
    let previous = attempt.checked_sub(1)?;
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    Some(path.with_file_name(format!("{previous}{extension}")))
}

/// The log of the attempt before `status`'s: the container of the same name in the same pod with
/// the highest lower attempt if the runtime still has it (whatever its log is called), else the
/// file kubelet's naming gives (crictl's way).
async fn previous_log(
    runtime: &mut Runtime,
    status: &cri::ContainerStatus,
) -> anyhow::Result<PathBuf> {
    let metadata = status.metadata.clone().unwrap_or_default();
    let listed = runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    let Some(own) = listed.iter().find(|c| c.id == status.id) else {
        bail!("container {} is gone", status.id);
    };
    let previous = listed
        .iter()
        .filter(|c| c.pod_sandbox_id == own.pod_sandbox_id)
        .filter_map(|c| c.metadata.as_ref().map(|m| (c, m)))
        .filter(|(_, m)| m.name == metadata.name && m.attempt < metadata.attempt)
        .max_by_key(|(_, m)| m.attempt);
    if let Some((c, _)) = previous
        && let Some(response) = containers::status(runtime, &c.id, false).await?
        && let Some(s) = response.status
    {
        return log_path(&s);
    }
    let path = log_path(status)?;
    match previous_by_name(&path, metadata.attempt) {
        Some(p) if p.exists() => Ok(p),
        _ => bail!(
            "previous terminated container {:?} (attempt {}) not found in pod {}",
            metadata.name,
            metadata.attempt.saturating_sub(1),
            own.pod_sandbox_id
        ),
    }
}

/// How following a container's output ended.
pub enum End {
    /// With this exit code.
    Exited(i32),
    /// The container was removed meanwhile.
    Gone,
    /// `interrupted` said to stop following, or the follower wants nothing more.
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
        if interrupted() || follower.done() {
            follower.finish()?;
            return Ok(End::Interrupted);
        }
    }
}

pub async fn logs(runtime: &mut Runtime, args: &LogsArgs) -> anyhow::Result<()> {
    let status = containers::find(runtime, &args.id, false).await?;
    let now = berth_clock::now_ns();
    let select = Select {
        stream: match args.stream {
            StreamArg::Stdout => Some(Stream::Stdout),
            StreamArg::Stderr => Some(Stream::Stderr),
            StreamArg::All => None,
        },
        since: args.since.as_ref().map(|p| p.at(now)),
        until: args.until.as_ref().map(|p| p.at(now)),
    };
    let path = if args.previous {
        previous_log(runtime, &status).await?
    } else {
        log_path(&status)?
    };
    let mut follower =
        Follower::new(&path, args.timestamps, args.tail).selecting(select, args.limit_bytes);
    // The previous attempt has exited: its log is read once, as kubelet does.
    if !args.follow || args.previous {
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

    const T: &str = "2024-05-01T10:00:0";

    fn line(second: u32, stream: Stream, text: &str) -> Line {
        Line {
            timestamp: format!("{T}{second}.000000000Z"),
            stream,
            content: format!("{text}\n").into_bytes(),
        }
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.content).trim_end().to_string())
            .collect()
    }

    #[test]
    fn tail_values() {
        assert_eq!(tail("all"), Ok(Tail(None)));
        assert_eq!(tail("3"), Ok(Tail(Some(3))));
        assert!(tail("x").is_err());
    }

    #[test]
    fn lines_are_chosen_by_stream_time_and_tail() {
        let lines = vec![
            line(1, Stream::Stdout, "a"),
            line(2, Stream::Stderr, "b"),
            line(3, Stream::Stdout, "c"),
            line(4, Stream::Stdout, "d"),
            Line {
                timestamp: String::new(),
                stream: Stream::Stdout,
                content: b"raw\n".to_vec(),
            },
        ];
        let at = |s: u32| duration::parse_rfc3339(&format!("{T}{s}Z"));
        let all = Select::default();
        assert_eq!(texts(&choose(lines.clone(), &all, None)).len(), 5);
        let stderr = Select {
            stream: Some(Stream::Stderr),
            ..Default::default()
        };
        assert_eq!(texts(&choose(lines.clone(), &stderr, None)), ["b"]);
        let window = Select {
            since: at(2),
            until: at(3),
            ..Default::default()
        };
        // Both ends count; an untimed line can't be placed, so it stays.
        assert_eq!(
            texts(&choose(lines.clone(), &window, None)),
            ["b", "c", "raw"]
        );
        let stdout_since = Select {
            stream: Some(Stream::Stdout),
            since: at(2),
            ..Default::default()
        };
        // The tail is taken of the selected lines.
        assert_eq!(
            texts(&choose(lines.clone(), &stdout_since, Some(2))),
            ["d", "raw"]
        );
        assert!(choose(lines, &all, Some(0)).is_empty());
    }

    #[test]
    fn byte_limits_cut_mid_line_and_count_timestamps() {
        let lines = [
            line(1, Stream::Stdout, "hello"),
            line(2, Stream::Stderr, "world"),
        ];
        let (chunks, left) = render(&lines, false, Some(8));
        assert_eq!(
            chunks,
            [
                (Stream::Stdout, b"hello\n".to_vec()),
                (Stream::Stderr, b"wo".to_vec())
            ]
        );
        assert_eq!(left, Some(0));
        let (chunks, left) = render(&lines, true, None);
        assert_eq!(chunks[1].1, format!("{T}2.000000000Z world\n").into_bytes());
        assert_eq!(left, None);
        let (chunks, _) = render(&lines, true, Some(10));
        assert_eq!(chunks, [(Stream::Stdout, b"2024-05-01".to_vec())]);
    }

    #[test]
    fn the_previous_attempt_is_named_as_kubelet_names_it() {
        assert_eq!(
            previous_by_name(Path::new("/var/log/pods/ns_p_u/web/3.log"), 3),
            Some(PathBuf::from("/var/log/pods/ns_p_u/web/2.log"))
        );
        assert_eq!(previous_by_name(Path::new("/x/web/0.log"), 0), None);
    }
}
