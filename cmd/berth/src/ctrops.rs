//! `berth kill`, `berth wait`, `berth top` and `berth start -a`: docker's verbs for a running
//! container's processes. Kill and top use berthd's `berth.containers.v1` service (CRI has no
//! calls for them); wait and start -a need only CRI.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_api::containers::v1 as api;
use berth_api::containers::v1::containers_client::ContainersClient;
use berth_cri_api::v1 as cri;
use clap::Args;
use tonic::Code;
use tonic::transport::Channel;

use crate::client::{self, Connect};
use crate::containers;
use crate::logs::{self, Follower, Tail};
use crate::output::{self, OutputArgs};
use crate::{exec, stream, table};

/// How long `wait` waits for an event before it looks at the container's state anyway: an event
/// lost (a lagging stream, a runtime without events) costs at most this much.
const RECHECK: Duration = Duration::from_secs(1);

pub type Containers = ContainersClient<Channel>;

/// A client of berthd's container service; `call` bounds each call (`None`: streams).
pub async fn service(connect: &Connect, call: Option<Duration>) -> anyhow::Result<Containers> {
    let channel = client::channel_with(&connect.endpoint, connect.timeout, call).await?;
    Ok(ContainersClient::new(channel))
}

/// The answer of a runtime without Berth's container service, said plainly.
pub fn no_service(status: tonic::Status, verb: &str) -> anyhow::Error {
    if status.code() == Code::Unimplemented {
        anyhow::anyhow!(
            "berth {verb} needs berthd's berth.containers.v1 service, which this runtime does not \
             serve ({})",
            status.message()
        )
    } else {
        status.into()
    }
}

/// Verbs over several containers go on past a failure, as docker's do, and fail at the end.
fn finish(failed: usize, total: usize, verb: &str) -> anyhow::Result<()> {
    if failed > 0 {
        bail!("{failed} of {total} containers not {verb}");
    }
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// The signal: a name (KILL, SIGUSR1, usr1, RTMIN+1) or a number.
    #[arg(long, short, default_value = "KILL", value_name = "SIGNAL")]
    pub signal: String,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `berth kill`: the signal to each container's main process; prints each as it is signalled.
pub async fn kill(connect: &Connect, args: &KillArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    let mut service = service(connect, Some(connect.timeout)).await?;
    let mut failed = 0;
    for arg in &args.ids {
        let result = async {
            let id = containers::find(&mut runtime, arg, false).await?.id;
            service
                .kill(api::KillRequest {
                    container_id: id,
                    signal: args.signal.clone(),
                })
                .await
                .map_err(|s| no_service(s, "kill"))?;
            anyhow::Ok(())
        };
        match result.await {
            Ok(()) => println!("{arg}"),
            Err(e) if args.ids.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("berth: {}", client::render(&e));
                failed += 1;
            }
        }
    }
    finish(failed, args.ids.len(), "killed")
}

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// Container events, if the runtime streams them.
type Events = tonic::Streaming<cri::ContainerEventResponse>;

/// Waits for something to happen to container `id` (an event naming it, or [`RECHECK`]).
async fn next_change(events: &mut Option<Events>, id: &str) {
    let Some(stream) = events.as_mut() else {
        tokio::time::sleep(logs::POLL * 2).await;
        return;
    };
    let deadline = tokio::time::Instant::now() + RECHECK;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return,
            Ok(Ok(Some(event))) if event.container_id == id => return,
            Ok(Ok(Some(_))) => {}
            // The stream ended or failed: poll from now on.
            Ok(_) => {
                *events = None;
                return;
            }
        }
    }
}

/// `berth wait`: blocks until each container has exited and prints its exit code, in order.
pub async fn wait(connect: &Connect, args: &WaitArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    // Subscribed before any state is read, so an exit between the read and the wait is an event.
    let mut events = match connect.runtime_for(None).await {
        Ok(mut r) => r
            .get_container_events(cri::GetEventsRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner),
        Err(_) => None,
    };
    let mut failed = 0;
    for arg in &args.ids {
        let result = async {
            let id = containers::find(&mut runtime, arg, false).await?.id;
            loop {
                let status = containers::status(&mut runtime, &id, false)
                    .await?
                    .and_then(|r| r.status);
                match status {
                    Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => {
                        return anyhow::Ok(s.exit_code);
                    }
                    Some(_) => next_change(&mut events, &id).await,
                    None => bail!("container {arg} was removed while berth waited for it"),
                }
            }
        };
        match result.await {
            Ok(code) => {
                println!("{code}");
                std::io::stdout().flush()?;
            }
            Err(e) if args.ids.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("berth: {}", client::render(&e));
                failed += 1;
            }
        }
    }
    finish(failed, args.ids.len(), "waited for")
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Container ID, unique ID prefix or name.
    pub container: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `strftime` of a Unix time in local time.
// localtime_r and strftime: std has no local time.
#[allow(unsafe_code)]
fn local_time(secs: i64, format: &std::ffi::CStr) -> String {
    let t: libc::time_t = secs;
    // SAFETY: tm is plain data, filled by localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::new();
    }
    let mut buf = [0u8; 64];
    // SAFETY: a buffer of the length given, a NUL-terminated format and a filled tm.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// ps's STIME: the time of day for a process started today, else the date.
fn stime(start_ns: i64, now_ns: i64) -> String {
    let secs = start_ns.div_euclid(1_000_000_000);
    let today = local_time(now_ns.div_euclid(1_000_000_000), c"%Y-%m-%d");
    if local_time(secs, c"%Y-%m-%d") == today {
        local_time(secs, c"%H:%M")
    } else {
        local_time(secs, c"%b%d")
    }
}

/// ps's TIME: CPU time as [DD-]HH:MM:SS.
fn cpu_time(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let (days, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// ps's C: CPU use over the process's life, in percent.
fn cpu_percent(p: &api::Process, now_ns: i64) -> u64 {
    let alive = (now_ns - p.start_time_ns).max(1) as u64;
    p.cpu_time_ns.saturating_mul(100) / alive
}

fn command_line(p: &api::Process) -> String {
    if p.args.is_empty() {
        format!("[{}]", p.comm)
    } else {
        p.args.join(" ")
    }
}

fn process_json(p: &api::Process) -> serde_json::Value {
    serde_json::json!({
        "pid": p.pid,
        "containerPid": p.container_pid,
        "ppid": p.ppid,
        "uid": p.uid,
        "gid": p.gid,
        "user": p.user,
        "hostUid": p.host_uid,
        "hostGid": p.host_gid,
        "startTimeNs": p.start_time_ns.to_string(),
        "cpuTimeNs": p.cpu_time_ns.to_string(),
        "tty": p.tty,
        "args": p.args,
        "comm": p.comm,
        "state": p.state,
    })
}

/// `berth top`: the container's processes, as `docker top` lists them (`-o json` for scripts).
pub async fn top(connect: &Connect, args: &TopArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    let id = containers::find(&mut runtime, &args.container, false)
        .await?
        .id;
    let mut service = service(connect, Some(connect.timeout)).await?;
    let response = service
        .top(api::TopRequest { container_id: id })
        .await
        .map_err(|s| no_service(s, "top"))?
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let items = response.processes.iter().map(process_json).collect();
    let processes = &response.processes;
    output::list(&args.output, "processes", items, |out, wide| {
        let rows: Vec<Vec<String>> = processes
            .iter()
            .map(|p| {
                let user = if p.user.is_empty() {
                    p.uid.to_string()
                } else {
                    p.user.clone()
                };
                let tty = if p.tty.is_empty() { "?" } else { &p.tty };
                let mut row = vec![
                    user,
                    p.pid.to_string(),
                    p.ppid.to_string(),
                    cpu_percent(p, now).to_string(),
                    stime(p.start_time_ns, now),
                    tty.to_string(),
                    cpu_time(p.cpu_time_ns),
                ];
                if wide {
                    row.push(p.container_pid.to_string());
                    row.push(p.host_uid.to_string());
                }
                row.push(command_line(p));
                row
            })
            .collect();
        let header: &[&str] = if wide {
            &[
                "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CPID", "HOST UID", "CMD",
            ]
        } else {
            &["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        };
        table::print_rows(out, header, &rows)
    })
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Show the container's output until it exits, and exit with its exit code (one container).
    #[arg(long, short)]
    pub attach: bool,
    /// Attach stdin too (the container must have been created with -i); implies --attach.
    #[arg(long, short)]
    pub interactive: bool,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `berth start`: starts the containers; with `-a`/`-i`, one, shown until it exits.
pub async fn start(connect: &Connect, args: &StartArgs) -> anyhow::Result<ExitCode> {
    if !args.attach && !args.interactive {
        containers::start(&mut connect.runtime().await?, &args.ids).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let [arg] = &args.ids[..] else {
        bail!("berth start -a/-i takes one container");
    };
    let mut runtime = connect.runtime().await?;
    let response = containers::find_response(&mut runtime, arg, true).await?;
    let tty = terminal(&response);
    let Some(status) = response.status else {
        bail!("container {arg:?} not found");
    };
    if status.state != cri::ContainerState::ContainerCreated as i32 {
        bail!(
            "container {arg} is {}, not created: CRI containers start once{}",
            containers::state_name(status.state).to_lowercase(),
            if status.state == cri::ContainerState::ContainerRunning as i32 {
                " (berth attach shows a running one)"
            } else {
                ""
            }
        );
    }
    let id = status.id.clone();
    // The output is read from the container's log, from its first byte, so nothing it prints
    // before berth could attach is missed (a CRI attach needs a running container); stdin goes
    // through an attach of stdin alone. A terminal (keystrokes echoed at once, raw mode) and a
    // container without a log file need the full streaming attach.
    let log = logs::log_path(&status).ok();
    runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .with_context(|| format!("starting container {arg}"))?;
    let Some(path) = log.filter(|_| !(args.interactive && tty)) else {
        let attach = exec::AttachArgs {
            no_stdin: !args.interactive,
            container: id,
        };
        return exec::attach(connect, &attach).await;
    };
    let mut follower = Follower::new(path, false, Tail(None));
    let interrupts = forward_interrupts(service(connect, Some(connect.timeout)).await?, &id)?;
    let stdin_url = if args.interactive {
        stdin_attach(&mut runtime, &id).await
    } else {
        None
    };
    let following = logs::follow(&mut runtime, &id, &mut follower, || {
        interrupts.load(Ordering::SeqCst) > 1
    });
    let end = match stdin_url {
        None => following.await?,
        Some(url) => {
            let streams = stream::Streams {
                stdin: true,
                tty: false,
                detach: true,
            };
            // The end of stdin ends the attach, not the wait for the container's exit (docker
            // start -a -i waits on too).
            let (end, sent) =
                tokio::join!(following, stream::session(&url, streams, connect.timeout));
            if let Err(e) = sent {
                eprintln!("berth: sending stdin: {}", client::render(&e));
            }
            end?
        }
    };
    match end {
        logs::End::Exited(code) => Ok(ExitCode::from((code & 0xff) as u8)),
        logs::End::Gone => bail!("container {arg} was removed while it ran"),
        logs::End::Interrupted => {
            eprintln!("Not waiting for container {arg} any more; it goes on running");
            Ok(ExitCode::from(130))
        }
    }
}

/// Whether the container has a terminal, as its verbose status says (containerd's config, or the
/// OCI spec berthd reports).
fn terminal(response: &cri::ContainerStatusResponse) -> bool {
    let Some(info) = response
        .info
        .get("info")
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
    else {
        return false;
    };
    ["/config/tty", "/runtimeSpec/process/terminal"]
        .iter()
        .find_map(|p| info.pointer(p).and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// A streaming URL for the running container's stdin alone; `None` (said why) if it has none.
async fn stdin_attach(runtime: &mut containers::Runtime, id: &str) -> Option<String> {
    let request = cri::AttachRequest {
        container_id: id.to_string(),
        stdin: true,
        tty: false,
        stdout: false,
        stderr: false,
        // No API server audit event is behind a CLI session.
        audit_request_id: String::new(),
    };
    match runtime.attach(request).await {
        Ok(r) => Some(r.into_inner().url),
        Err(s) => {
            eprintln!("berth: attaching stdin: {}", s.message());
            None
        }
    }
}

/// Ctrl-C once: SIGINT to the container (docker start -a proxies signals); twice: stop waiting.
fn forward_interrupts(service: Containers, id: &str) -> anyhow::Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("handling SIGINT")?;
    let seen = count.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                continue;
            }
            eprintln!("Sending SIGINT to the container (Ctrl-C again to stop waiting)");
            let request = api::KillRequest {
                container_id: id.clone(),
                signal: "INT".into(),
            };
            if let Err(s) = service.clone().kill(request).await {
                eprintln!("berth: signalling container {id}: {}", s.message());
            }
        }
    });
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_dockers() {
        use clap::Parser;
        #[derive(Parser)]
        struct Kill {
            #[command(flatten)]
            args: KillArgs,
        }
        #[derive(Parser)]
        struct Start {
            #[command(flatten)]
            args: StartArgs,
        }
        let k = Kill::try_parse_from(["kill", "a", "b"]).unwrap().args;
        assert_eq!((k.signal.as_str(), k.ids.len()), ("KILL", 2));
        let k = Kill::try_parse_from(["kill", "-s", "USR1", "a"])
            .unwrap()
            .args;
        assert_eq!(k.signal, "USR1");
        assert!(Kill::try_parse_from(["kill"]).is_err());
        let s = Start::try_parse_from(["start", "-ai", "job"]).unwrap().args;
        assert!(s.attach && s.interactive && s.ids == ["job"]);
    }

    #[test]
    fn ps_style_columns() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3_723_000_000_000), "01:02:03");
        assert_eq!(cpu_time(90_061_000_000_000), "1-01:01:01");
        let p = api::Process {
            start_time_ns: 0,
            cpu_time_ns: 500_000_000,
            comm: "sleep".into(),
            ..Default::default()
        };
        assert_eq!(cpu_percent(&p, 1_000_000_000), 50);
        assert_eq!(command_line(&p), "[sleep]");
        let now = 1_700_000_000_000_000_000;
        assert_eq!(stime(now, now).len(), 5, "HH:MM today");
        assert_eq!(stime(now - 3 * 86_400_000_000_000, now).len(), 5, "MonDD");
    }
}
