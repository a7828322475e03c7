//! berth: a command-line client for Berth (or any CRI runtime), with docker's verbs, talking CRI.

mod archive;
mod client;
mod containers;
mod cp;
mod crilog;
mod ctrops;
mod df;
mod duration;
mod endpoint;
mod events;
mod exec;
mod exit;
mod flags;
mod help;
mod images;
mod inspect;
mod login;
mod logs;
mod output;
mod play;
mod podls;
mod pods;
mod podstats;
mod portforward;
mod progress;
mod prune;
mod ps;
mod run;
mod select;
mod stats;
mod stream;
mod table;
// ioctl(TIOCGWINSZ): the terminal's size.
#[allow(unsafe_code)]
mod term;
mod volume;

use std::process::ExitCode;

use berth_cri_api::v1 as cri;
use clap::{FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Command-line client for the Berth container runtime",
    after_help = AFTER_HELP
)]
struct Cli {
    /// CRI endpoint, unix:///PATH (or /PATH) [default: see below].
    #[arg(long, short = 'H', global = true, value_name = "ENDPOINT")]
    endpoint: Option<String>,
    /// crictl config file whose runtime-endpoint is used when no flag or variable names one
    /// [env: CRI_CONFIG_FILE] [default: /etc/crictl.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Seconds to wait for the runtime to answer.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the client's and the runtime's versions.
    Version,
    /// Show the runtime's status, conditions and configuration.
    Info,
    /// Pull an image (short names mean docker.io/library/NAME:latest), showing each layer's
    /// progress: bars on a terminal, a line per layer state change otherwise.
    Pull {
        /// Image reference, e.g. busybox or registry.example.com/app:1.2.
        image: String,
        /// Registry credentials as USER:PASSWORD.
        #[arg(long, env = "BERTH_CREDS", hide_env_values = true)]
        creds: Option<String>,
        /// No progress: print only the image's ID.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List images, or those a reference names.
    Images {
        /// Only images this reference (name[:tag], ID or digest) names.
        filter: Option<String>,
        /// Only print image IDs.
        #[arg(long, short)]
        quiet: bool,
        /// Show the DIGEST column.
        #[arg(long)]
        digests: bool,
        /// Show IDs and digests in full.
        #[arg(long)]
        no_trunc: bool,
        /// Show the PINNED column (images the runtime never garbage-collects).
        #[arg(long)]
        pinned: bool,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Remove images by ID, tag or digest. Removing one tag of an image with several keeps the rest.
    Rmi {
        /// Image IDs, tags or digests.
        #[arg(required_unless_present = "prune")]
        images: Vec<String>,
        /// Remove every image no container uses (pinned images are kept), as crictl's.
        #[arg(long, conflicts_with = "images")]
        prune: bool,
    },
    /// Show a container's, pod's or image's status as JSON (looked for in that order).
    Inspect {
        /// Container (ID, ID prefix or name), pod ID or image reference.
        target: String,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Show the disk used by images (ImageFsInfo).
    Imagefs,
    /// Start a pod sandbox (no containers); prints its ID.
    Runp {
        /// The pod's name (its metadata name).
        name: String,
        /// The pod's namespace.
        #[arg(long, short, default_value = "default")]
        namespace: String,
        /// Use the node's network namespace.
        #[arg(long)]
        host_network: bool,
        /// One PID namespace for the whole pod.
        #[arg(long)]
        share_pid: bool,
        /// HOST:CONTAINER[/tcp|udp|sctp], repeatable.
        #[arg(long = "port", short)]
        ports: Vec<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "label", short)]
        labels: Vec<String>,
        /// RuntimeClass handler (default: the configured default).
        #[arg(long, default_value = "")]
        runtime: String,
        /// Where the pod's log directory is made.
        #[arg(
            long = "log-dir",
            env = "BERTH_LOG_DIR",
            default_value = pods::LOG_ROOT,
            value_name = "DIR"
        )]
        log_root: String,
    },
    /// List pod sandboxes (all of them unless filtered).
    Pods(podls::PodsArgs),
    /// Stop pod sandboxes by ID or unique ID prefix.
    Stopp {
        /// Pod IDs or unique ID prefixes.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove stopped pod sandboxes (--force: ready ones too).
    Rmp {
        /// Pod IDs or unique ID prefixes.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Stop ready pods first instead of refusing them.
        #[arg(long, short)]
        force: bool,
        /// Remove every pod (ready ones only with --force; without it they are left and named).
        #[arg(long, short, conflicts_with = "ids")]
        all: bool,
    },
    /// Show a pod sandbox's status and details as JSON.
    Inspectp {
        /// Pod ID or unique ID prefix.
        id: String,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Create a container in an existing pod (--pod); prints its ID. Pulls the image if absent.
    #[command(override_usage = format!("berth create --pod POD {}", flags::USAGE))]
    Create(containers::CreateArgs),
    /// Run a container in a new pod of its own: pull, create, start, then print its output until
    /// it exits (or, with -d, print its ID).
    #[command(override_usage = format!("berth run {}", flags::USAGE))]
    Run(run::RunArgs),
    /// Start created containers; with -a, one, showing its output until it exits (exits with its
    /// exit code), as docker start -a.
    #[command(override_usage = "berth start [-a] [-i] CONTAINER...")]
    Start(ctrops::StartArgs),
    /// Stop running containers: SIGTERM (or the image's stop signal), then SIGKILL after --time.
    Stop(containers::StopArgs),
    /// Remove containers and their logs (--force: running ones too).
    Rm(containers::RmArgs),
    /// List containers (running ones, unless --all or --state).
    Ps(ps::PsArgs),
    /// Print a container's output (its CRI log file on this node).
    Logs(logs::LogsArgs),
    /// Show a container's status and details as JSON.
    Inspectc {
        /// Container ID, unique ID prefix or name.
        id: String,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Change the resource limits of containers.
    Update(exec::UpdateArgs),
    /// Run a command in a running container; exits with its exit code.
    ///
    /// Without -i/-t the command runs with ExecSync (its output is shown once it exits); with them,
    /// in a streaming Exec session: stdin is sent as it comes (-i), and -t gives the command a
    /// terminal (this one, if stdin is one, is in raw mode meanwhile and passes on its size).
    #[command(override_usage = "berth exec [-i] [-t] CONTAINER CMD [ARG...]")]
    Exec(exec::ExecArgs),
    /// Attach to a running container's output and stdin.
    ///
    /// Its output is shown here, and stdin sent to it if it has one (created with -i). The end of
    /// stdin detaches, and so does Ctrl-P Ctrl-Q on a terminal; if the container exits first,
    /// berth exits with its exit code.
    Attach(exec::AttachArgs),
    /// Forward local ports to ports in a pod's network namespace, until Ctrl-C.
    #[command(override_usage = "berth port-forward POD [LOCAL_PORT:]REMOTE_PORT...")]
    PortForward(portforward::PortForwardArgs),
    /// Show containers' resource usage.
    Stats(stats::StatsArgs),
    /// Print container events as they happen (CRI GetContainerEvents), until interrupted.
    Events(events::EventsArgs),
    /// Show pods' resource usage (CRI ListPodSandboxStats).
    Statsp(podstats::StatspArgs),
    /// Show the runtime's per-pod metrics (CRI ListPodSandboxMetrics).
    Metricsp(podstats::MetricspArgs),
    /// Housekeeping: `system prune` and `system df`.
    System {
        #[command(subcommand)]
        command: prune::SystemCommand,
    },
    /// Run the Pods (and the pod templates of Deployments, StatefulSets, DaemonSets and Jobs) of a
    /// Kubernetes manifest, with its ConfigMaps and Secrets, as compose runs services.
    ///
    /// Pods start in document order, each once the one before is ready (readinessProbe). In the
    /// foreground their output is shown and Ctrl-C removes the play; --detach leaves a supervisor
    /// that restarts containers as restartPolicy says. --down removes everything the play made.
    #[command(
        override_usage = "berth play [OPTIONS] FILE\n       berth play --down FILE\n       berth play --logs [-f] FILE"
    )]
    Play(play::PlayArgs),
    /// Make a container's changes (its writable layer) a new image; prints the image's ID.
    #[command(
        override_usage = "berth commit [-a AUTHOR] [-m MESSAGE] [-p] CONTAINER [IMAGE[:TAG]]"
    )]
    Commit(archive::CommitArgs),
    /// Write images as an OCI image-layout tar (to -o FILE, or to stdout).
    Save(archive::SaveArgs),
    /// Load images from an OCI image-layout or docker archive (-i FILE, or stdin).
    Load(archive::LoadArgs),
    /// Send a signal (default KILL) to containers' main processes.
    Kill(ctrops::KillArgs),
    /// Wait until containers exit, then print each one's exit code.
    Wait(ctrops::WaitArgs),
    /// List a container's processes (read on the host: no ps needed in the image).
    Top(ctrops::TopArgs),
    /// Copy files between a container and this host, as docker cp (tar archives; - for stdio).
    #[command(
        override_usage = "berth cp [-L] CONTAINER:SRC_PATH DEST_PATH|-\n       berth cp [-L] SRC_PATH|- CONTAINER:DEST_PATH"
    )]
    Cp(cp::CpArgs),
    /// Manage named volumes: create, ls, inspect, rm, prune (kept by Berth under its root).
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Log in to a registry: berthd checks the credentials with it and keeps them for pulls
    /// that bring none.
    #[command(override_usage = "berth login [-u USER] [-p PASSWORD | --password-stdin] [SERVER]")]
    Login(login::LoginArgs),
    /// Log out of a registry (forget the credentials berthd keeps for it).
    Logout(login::LogoutArgs),
    /// Print a shell completion script (clap_complete).
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages, berth.1 and berth-VERB.1 for each verb, into DIR.
    Man {
        /// Where the pages go (made if missing).
        dir: std::path::PathBuf,
    },
}

const AFTER_HELP: &str = "\
The endpoint is the first of: --endpoint/-H, $BERTH_ENDPOINT, $CONTAINER_RUNTIME_ENDPOINT,
runtime-endpoint in the crictl config file (--config, $CRI_CONFIG_FILE or /etc/crictl.yaml),
unix:///run/berth/berth.sock.

Exit status, as docker's: the container's (run without -d, exec, attach); 125 when berth or the
runtime fails; 126 when the container's command can't be invoked; 127 when it isn't found.";

fn main() -> ExitCode {
    let parsed = help::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        // Usage errors are berth's errors (125, as docker's); --help and --version succeed.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::BERTH)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(exit::BERTH);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `berth logs ... | head`: the reader has all it wants.
        Err(e) if client::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {}", client::render(&e));
            exit::for_error(&e)
        }
    }
}

/// The endpoint the flags, environment and crictl config name (see [`AFTER_HELP`]).
fn endpoint_of(cli: &Cli) -> anyhow::Result<String> {
    let var = |name| std::env::var(name).ok();
    let (berth_env, cri_env) = (var("BERTH_ENDPOINT"), var("CONTAINER_RUNTIME_ENDPOINT"));
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    // The config file is only read when nothing before it names an endpoint.
    let config = if set(&cli.endpoint) || set(&berth_env) || set(&cri_env) {
        None
    } else {
        endpoint::read_config(cli.config.as_deref())?
    };
    endpoint::resolve(&endpoint::Sources {
        flag: cli.endpoint.as_deref(),
        berth_env: berth_env.as_deref(),
        cri_env: cri_env.as_deref(),
        config: config.as_deref(),
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Verbs that need no runtime (nor an endpoint that resolves).
    match &cli.command {
        Command::Completion { shell } => {
            help::completion(*shell);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            for page in help::man(dir)? {
                println!("{}", page.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let timeout = std::time::Duration::from_secs(cli.timeout);
    let endpoint = endpoint_of(&cli)?;
    let endpoint = endpoint.as_str();
    let connect = client::Connect {
        endpoint: endpoint.to_string(),
        timeout,
    };
    // Image verbs bound their calls by --timeout too, except pull, which takes as long as it takes.
    let images = |call_timeout| client::images(endpoint, timeout, call_timeout);
    match &cli.command {
        Command::Version => {
            let v = client::runtime(endpoint, timeout)
                .await?
                .version(cri::VersionRequest {
                    version: "v1".to_string(),
                })
                .await?
                .into_inner();
            println!("Client version:      {}", env!("CARGO_PKG_VERSION"));
            println!("Runtime name:        {}", v.runtime_name);
            println!("Runtime version:     {}", v.runtime_version);
            println!("Runtime API version: {}", v.runtime_api_version);
        }
        Command::Info => {
            let status = client::runtime(endpoint, timeout)
                .await?
                .status(cri::StatusRequest { verbose: true })
                .await?
                .into_inner();
            println!("{}", client::info_json(&status)?);
        }
        Command::Pull {
            image,
            creds,
            quiet,
        } => {
            let auth = images::auth(creds.as_deref())?;
            images::pull(&connect, image, auth, *quiet).await?;
        }
        Command::Images {
            filter,
            quiet,
            digests,
            no_trunc,
            pinned,
            output,
        } => {
            let columns = images::Columns {
                digests: *digests,
                no_trunc: *no_trunc,
                pinned: *pinned,
            };
            let mut client = images(Some(timeout)).await?;
            images::list(&mut client, filter.as_deref(), *quiet, columns, output).await?;
        }
        Command::Rmi {
            images: names,
            prune: false,
        } => {
            images::remove(&mut images(Some(timeout)).await?, names).await?;
        }
        Command::Rmi { prune: true, .. } => prune::rmi_prune(&connect).await?,
        Command::Inspect { target, output } => {
            inspect::inspect(&connect, target, output).await?;
        }
        Command::Imagefs => images::fs_info(&mut images(Some(timeout)).await?).await?,
        Command::Runp {
            name,
            namespace,
            host_network,
            share_pid,
            ports,
            labels,
            runtime,
            log_root,
        } => {
            let pod = pods::RunPod {
                name: name.clone(),
                namespace: namespace.clone(),
                host_network: *host_network,
                share_pid: *share_pid,
                ports: ports.clone(),
                labels: labels.clone(),
                runtime_handler: runtime.clone(),
                log_root: log_root.clone(),
            };
            pods::run(&mut client::runtime(endpoint, timeout).await?, &pod).await?;
        }
        Command::Pods(args) => podls::list(&mut connect.runtime().await?, args).await?,
        Command::Stopp { ids } => {
            pods::stop(&mut client::runtime(endpoint, timeout).await?, ids).await?;
        }
        Command::Rmp {
            all: true, force, ..
        } => {
            prune::rmp_all(&mut connect.runtime().await?, *force).await?;
        }
        Command::Rmp { ids, force, .. } => {
            pods::remove(&mut client::runtime(endpoint, timeout).await?, ids, *force).await?;
        }
        Command::Inspectp { id, output } => {
            pods::inspect(&mut client::runtime(endpoint, timeout).await?, id, output).await?;
        }
        Command::Create(args) => containers::create(&connect, args).await?,
        Command::Run(args) => return run::run(&connect, args).await,
        Command::Start(args) => return ctrops::start(&connect, args).await,
        Command::Stop(args) => containers::stop(&connect, args).await?,
        Command::Rm(args) => containers::rm(&mut connect.runtime().await?, args).await?,
        Command::Ps(args) => ps::ps(&connect, args).await?,
        Command::Logs(args) => logs::logs(&mut connect.runtime().await?, args).await?,
        Command::Inspectc { id, output } => {
            inspect::inspect_container(&mut connect.runtime().await?, id, output).await?;
        }
        Command::Update(args) => exec::update(&mut connect.runtime().await?, args).await?,
        Command::Exec(args) => return exec::exec(&connect, args).await,
        Command::Attach(args) => return exec::attach(&connect, args).await,
        Command::PortForward(args) => portforward::port_forward(&connect, args).await?,
        Command::Stats(args) => stats::stats(&mut connect.runtime().await?, args).await?,
        Command::Events(args) => {
            events::events(&mut connect.runtime_for(None).await?, args).await?
        }
        Command::Statsp(args) => podstats::statsp(&mut connect.runtime().await?, args).await?,
        Command::Metricsp(args) => podstats::metricsp(&mut connect.runtime().await?, args).await?,
        Command::System { command } => prune::system(&connect, command).await?,
        Command::Play(args) => return play::play(&connect, args).await,
        Command::Commit(args) => archive::commit(&connect, args).await?,
        Command::Save(args) => archive::save(&connect, args).await?,
        Command::Load(args) => archive::load(&connect, args).await?,
        Command::Kill(args) => ctrops::kill(&connect, args).await?,
        Command::Wait(args) => ctrops::wait(&connect, args).await?,
        Command::Top(args) => ctrops::top(&connect, args).await?,
        Command::Cp(args) => cp::cp(&connect, args).await?,
        Command::Volume { command } => volume::volume(&connect, command).await?,
        Command::Login(args) => login::login(&connect, args).await?,
        Command::Logout(args) => login::logout(&connect, args).await?,
        Command::Completion { .. } | Command::Man { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
