//! `berth play`: the Pods (and workload pod templates) of a Kubernetes manifest run over CRI,
//! as `podman kube play` and `docker compose up` do. See the README's "berth play" section.
//!
//! What it makes is labelled `berth.io/play=<project>` (pods and containers) so `--down` and
//! `--logs` find it from the runtime alone; its files live in `<state-dir>/<project>`.

mod convert;
mod down;
mod env;
mod hosts;
mod logs;
mod manifest;
mod parse;
mod probe;
mod run;
mod supervise;
#[cfg(test)]
mod tests;
mod volumes;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::client::Connect;
use supervise::{Play, State};
use volumes::Paths;

/// Where plays keep their volumes, hosts files and state (kubelet's are under /var/lib/kubelet;
/// a play's last only as long as its pods).
pub const STATE_ROOT: &str = "/run/berth/play";

#[derive(Debug, Clone, Args)]
pub struct PlayArgs {
    /// The manifest: YAML documents of Kubernetes objects ("-": standard input).
    #[arg(value_name = "FILE", required_unless_present = "supervise")]
    pub file: Option<String>,
    /// Leave the play running once its pods have started, with a supervisor process that
    /// restarts containers as restartPolicy says until --down.
    #[arg(long, short)]
    pub detach: bool,
    /// Remove everything the play made: containers, pods, their log directories, volumes,
    /// configMap and secret files, hosts files and the supervisor.
    #[arg(long, conflicts_with_all = ["logs", "detach"])]
    pub down: bool,
    /// Print the output of all the play's containers, each line prefixed "pod/container |".
    #[arg(long, conflicts_with = "detach")]
    pub logs: bool,
    /// With --logs: keep printing output as it comes (a play in the foreground always does).
    #[arg(long, short)]
    pub follow: bool,
    /// The play's name, on its pods as the label berth.io/play [default: FILE's name without
    /// its extension; "play" for standard input].
    #[arg(long, short = 'p', value_name = "NAME")]
    pub project: Option<String>,
    /// Where plays keep their volumes, configMap files, hosts files and state.
    #[arg(long, env = "BERTH_PLAY_DIR", default_value = STATE_ROOT, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Where pod log directories are made.
    #[arg(
        long = "log-dir",
        env = "BERTH_LOG_DIR",
        default_value = crate::pods::LOG_ROOT,
        value_name = "DIR"
    )]
    pub log_root: String,
    /// Seconds each pod may take to be ready before the play gives up (pods start in document
    /// order, each once the one before is ready).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wait: u64,
    /// The restart back-off of a failed container after its first restart, in seconds; it
    /// doubles with each restart up to 300 (kubelet's is 10).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    pub restart_delay: Duration,
    /// Run as the supervisor of the play whose state file this is (what --detach starts).
    #[arg(long, value_name = "STATEFILE", hide = true)]
    pub supervise: Option<PathBuf>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds (0 to 3600)"))
}

/// The project from `--project` or the file's name: a label value and a directory name.
pub fn project_name(flag: Option<&str>, file: &str) -> anyhow::Result<String> {
    if let Some(p) = flag {
        let valid = !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && p.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            bail!(
                "--project {p:?}: letters, digits, '-', '_' and '.', at most 63, starting with a letter or digit"
            );
        }
        return Ok(p.to_string());
    }
    if file == "-" {
        return Ok("play".to_string());
    }
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    Ok(if name.is_empty() {
        "play".to_string()
    } else {
        name
    })
}

fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the manifest from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

pub async fn play(connect: &Connect, args: &PlayArgs) -> anyhow::Result<ExitCode> {
    if let Some(state) = &args.supervise {
        supervise::supervise(connect, state).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let file = args.file.as_deref().context("no manifest FILE")?;
    let project = project_name(args.project.as_deref(), file)?;
    let state_root = std::path::absolute(&args.state_dir).context("--state-dir")?;
    let paths = Paths::new(&state_root, &project);
    if args.down {
        down::down(connect, &project, &paths).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.logs {
        logs::logs(connect, &project, &paths.dir, args.follow).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = read(file)?;
    let state = State {
        project,
        manifest: text,
        log_root: std::path::absolute(&args.log_root)
            .context("--log-dir")?
            .to_string_lossy()
            .into_owned(),
        state_root,
        restart_delay_ms: u64::try_from(args.restart_delay.as_millis()).unwrap_or(u64::MAX),
    };
    up(connect, args, state, paths).await
}

async fn up(
    connect: &Connect,
    args: &PlayArgs,
    state: State,
    paths: Paths,
) -> anyhow::Result<ExitCode> {
    let manifest = parse::parse(&state.manifest)?;
    let mut play = Play {
        connect: connect.clone(),
        rt: connect.runtime().await?,
        long: connect.runtime_for(None).await?,
        project: state.project.clone(),
        manifest,
        paths: paths.clone(),
        log_root: state.log_root.clone(),
        restart_delay: args.restart_delay,
        pods: Vec::new(),
        containers: Vec::new(),
        pulled: Default::default(),
        liveness: Default::default(),
        interrupted: ctrl_c(),
    };
    let mut warnings = std::mem::take(&mut play.manifest.warnings);
    warnings.extend(convert::check(&play.plan())?);
    for w in &warnings {
        eprintln!("berth: warning: {w}");
    }
    let existing = supervise::list_pods(&mut play.rt, &play.project).await?;
    if !existing.is_empty() {
        bail!(
            "play {} has {} pod(s) already: `berth play --down` removes them (or choose another --project)",
            play.project,
            existing.len()
        );
    }
    // What a play whose pods went without `--down` left (emptyDir data, files): a new play
    // starts empty, as new pods would.
    if paths.state_file().exists() || paths.dir.join("pods").is_dir() {
        std::fs::remove_dir_all(&paths.dir)
            .with_context(|| format!("removing the stale {}", paths.dir.display()))?;
    }
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    // Secrets are written below it: for root alone (containers get their volumes by bind mounts).
    std::fs::set_permissions(
        &paths.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("chmod {}", paths.dir.display()))?;
    std::fs::write(paths.state_file(), serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", paths.state_file().display()))?;
    let mut tail = logs::Tail::new(&play.project);
    let interrupted = play.interrupted.clone();
    for index in 0..play.manifest.pods.len() {
        let started = run::start_pod(&mut play, index).await;
        let started = match started {
            // Only the pods after it wait for a pod to be ready.
            Ok(()) if index + 1 < play.manifest.pods.len() => {
                let run = play.pods.len() - 1;
                run::wait_ready(&mut play, run, Duration::from_secs(args.wait)).await
            }
            Ok(()) => Ok(()),
            Err(e) => Err(e),
        };
        if started.is_err() && interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("Interrupted: removing the play");
            down::down(connect, &play.project, &paths).await?;
            return Ok(ExitCode::from(130));
        }
        if let Err(e) = started {
            if !args.detach {
                let _ = tail.discover(&mut play.rt).await;
                let _ = tail.pump(true);
            }
            return Err(e.context(format!(
                "play {} not started (berth play --down removes what was made)",
                play.project
            )));
        }
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("Interrupted: removing the play");
            down::down(connect, &play.project, &paths).await?;
            return Ok(ExitCode::from(130));
        }
    }
    if args.detach {
        let pid = supervise::spawn(connect, &paths)?;
        println!(
            "Play {} started: {} pod(s); supervisor {pid} (berth play --logs, berth play --down)",
            play.project,
            play.pods.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    foreground(&mut play, &mut tail, &interrupted, &paths).await
}

fn ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = flag.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    flag
}

/// Shows the output and restarts containers until Ctrl-C (which removes the play, as
/// `--down`), or until every container has finished for good (the play is left for `--logs`).
async fn foreground(
    play: &mut Play,
    tail: &mut logs::Tail,
    interrupted: &std::sync::atomic::AtomicBool,
    paths: &Paths,
) -> anyhow::Result<ExitCode> {
    eprintln!("Play {} running: Ctrl-C removes it", play.project);
    let mut last = std::time::Instant::now() - Duration::from_secs(1);
    loop {
        if last.elapsed() >= Duration::from_secs(1) {
            last = std::time::Instant::now();
            if supervise::list_pods(&mut play.rt, &play.project)
                .await?
                .is_empty()
            {
                tail.pump(true)?;
                eprintln!("Play {}: its pods were removed", play.project);
                return Ok(ExitCode::SUCCESS);
            }
            play.tick().await?;
            tail.discover(&mut play.rt).await?;
        }
        tail.pump(false)?;
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            tail.pump(true)?;
            eprintln!("Interrupted: removing the play");
            down::down(&play.connect, &play.project, paths).await?;
            return Ok(ExitCode::from(130));
        }
        let (all, worst) = run::finished(play);
        if all {
            tail.discover(&mut play.rt).await?;
            tokio::time::sleep(crate::logs::POLL).await;
            tail.pump(true)?;
            eprintln!(
                "Play {}: every container has finished (berth play --down removes the play)",
                play.project
            );
            return Ok(ExitCode::from(if worst == 0 { 0 } else { 1 }));
        }
        tokio::time::sleep(crate::logs::POLL).await;
    }
}
