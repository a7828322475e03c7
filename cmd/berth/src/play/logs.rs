//! `berth play --logs`: every container of the play (init containers and earlier attempts still
//! kept too), interleaved by the runtime's timestamps, each line prefixed `pod/container |` as
//! compose prefixes service output. Both streams go to stdout, as compose prints them.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;

use super::convert::{CONTAINER_LABEL, PLAY_LABEL, POD_LABEL};
use super::supervise::{list_containers, list_pods};
use crate::containers::Runtime;
use crate::crilog::{Joiner, Line, LogFile};

struct Source {
    prefix: String,
    file: LogFile,
    joiner: Joiner,
}

/// Follows the log files of a play's containers.
pub struct Tail {
    project: String,
    known: BTreeSet<String>,
    sources: Vec<Source>,
    width: usize,
}

/// `web/httpd | line`, padded so the bars line up.
pub fn format_line(prefix: &str, width: usize, content: &[u8]) -> Vec<u8> {
    let mut out = format!("{prefix:<width$} | ").into_bytes();
    out.extend_from_slice(content);
    if !content.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// A timestamp that sorts as text: RFC 3339 with the fraction padded to nanoseconds (Berth writes
/// nine digits; Go's RFC3339Nano, as containerd writes, drops trailing zeros).
pub fn sort_key(timestamp: &str) -> String {
    let Some((whole, rest)) = timestamp.split_once('.') else {
        // No fraction: nanoseconds zero, before the zone.
        let time = timestamp.find('T').unwrap_or(0);
        let zone = timestamp[time..]
            .find(['Z', '+', '-'])
            .map_or(timestamp.len(), |z| time + z);
        let (whole, zone) = timestamp.split_at(zone);
        return format!("{whole}.000000000{zone}");
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (fraction, zone) = rest.split_at(digits);
    format!("{whole}.{fraction:0<9}{zone}")
}

impl Tail {
    pub fn new(project: &str) -> Tail {
        Tail {
            project: project.to_string(),
            known: BTreeSet::new(),
            sources: Vec::new(),
            width: 0,
        }
    }

    /// Adds the containers that appeared since the last call (restarts make new ones).
    pub async fn discover(&mut self, rt: &mut Runtime) -> anyhow::Result<()> {
        let mut containers = list_containers(rt, &[(PLAY_LABEL, &self.project)]).await?;
        containers.sort_by_key(|c| c.created_at);
        for c in containers {
            if self.known.contains(&c.id) {
                continue;
            }
            let Some(status) = crate::containers::status(rt, &c.id, false)
                .await?
                .and_then(|r| r.status)
            else {
                continue;
            };
            let Ok(path) = crate::logs::log_path(&status) else {
                continue;
            };
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let prefix = format!("{}/{}", label(POD_LABEL), label(CONTAINER_LABEL));
            self.width = self.width.max(prefix.len());
            self.known.insert(c.id.clone());
            self.sources.push(Source {
                prefix,
                file: LogFile::new(path),
                joiner: Joiner::default(),
            });
        }
        Ok(())
    }

    /// Prints what was written since the last call, ordered by timestamp; `finish` also prints
    /// unfinished lines.
    pub fn pump(&mut self, finish: bool) -> std::io::Result<()> {
        let mut lines: Vec<(String, usize, Line)> = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            let raw = s.file.read_lines()?;
            for r in raw {
                if let Some(line) = s.joiner.push(&r) {
                    lines.push((line.timestamp.clone(), i, line));
                }
            }
            if finish {
                if let Some(rest) = s.file.rest()
                    && let Some(line) = s.joiner.push(&rest)
                {
                    lines.push((line.timestamp.clone(), i, line));
                }
                for line in s.joiner.flush() {
                    lines.push((line.timestamp.clone(), i, line));
                }
            }
        }
        // The sort is stable: lines of one file keep their order.
        lines.sort_by_cached_key(|l| sort_key(&l.0));
        let mut out = std::io::stdout().lock();
        for (_, i, line) in lines {
            out.write_all(&format_line(
                &self.sources[i].prefix,
                self.width,
                &line.content,
            ))?;
        }
        out.flush()
    }
}

/// Whether any of the play's containers still runs.
async fn running(rt: &mut Runtime, project: &str) -> anyhow::Result<bool> {
    Ok(list_containers(rt, &[(PLAY_LABEL, project)])
        .await?
        .iter()
        .any(|c| c.state == cri::ContainerState::ContainerRunning as i32))
}

/// Prints the play's logs; with `follow`, until Ctrl-C, `--down`, or every container has
/// exited with no supervisor left to restart one.
pub async fn logs(
    connect: &crate::client::Connect,
    project: &str,
    supervisor_dir: &std::path::Path,
    follow: bool,
) -> anyhow::Result<()> {
    let mut rt = connect.runtime().await?;
    if list_pods(&mut rt, project).await?.is_empty() {
        anyhow::bail!("no pods of play {project} (is it running? --project names another)");
    }
    let mut tail = Tail::new(project);
    tail.discover(&mut rt).await?;
    if !follow {
        tail.pump(true)?;
        return Ok(());
    }
    let mut last = Instant::now();
    loop {
        tail.pump(false)?;
        tokio::select! {
            _ = tokio::time::sleep(crate::logs::POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                tail.pump(true)?;
                return Ok(());
            }
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            tail.discover(&mut rt).await?;
            let gone = list_pods(&mut rt, project).await?.is_empty();
            let idle = !running(&mut rt, project).await?
                && super::down::supervisor(supervisor_dir).is_none();
            if gone || idle {
                tail.pump(true)?;
                return Ok(());
            }
        }
    }
}
