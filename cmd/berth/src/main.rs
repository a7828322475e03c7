//! berth: a command-line client for Berth (or any CRI runtime), with docker's verbs, talking CRI.

mod client;
mod containers;
mod crilog;
mod exec;
mod flags;
mod images;
mod inspect;
mod logs;
mod pods;
mod portforward;
mod ps;
mod run;
mod stats;
mod stream;
mod table;
mod term;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_cri::v1 as cri;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Command-line client for the Berth container runtime"
)]
struct Cli {
    /// CRI endpoint.
    #[arg(
        long,
        short = 'H',
        env = "BERTH_ENDPOINT",
        default_value = "unix:///run/berth/berth.sock",
        global = true
    )]
    endpoint: String,
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
    /// Pull an image (short names mean docker.io/library/NAME:latest).
    Pull {
        image: String,
        /// Registry credentials as USER:PASSWORD.
        #[arg(long, env = "BERTH_CREDS", hide_env_values = true)]
        creds: Option<String>,
    },
    /// List images, or those a reference names.
    Images {
        filter: Option<String>,
        /// Only print image IDs.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Remove images by ID, tag or digest. Removing one tag of an image with several keeps the rest.
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show a container's, pod's or image's status as JSON (looked for in that order).
    Inspect {
        /// Container (ID, ID prefix or name), pod ID or image reference.
        target: String,
    },
    /// Show the disk used by images (ImageFsInfo).
    Imagefs,
    /// Start a pod sandbox (no containers); prints its ID.
    Runp {
        name: String,
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
    /// List pod sandboxes.
    Pods {
        /// Only print pod IDs.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Stop pod sandboxes by ID or unique ID prefix.
    Stopp {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove stopped pod sandboxes (--force: ready ones too).
    Rmp {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, short)]
        force: bool,
    },
    /// Show a pod sandbox's status and details as JSON.
    Inspectp { id: String },
    /// Create a container in an existing pod (--pod); prints its ID. Pulls the image if absent.
    #[command(override_usage = format!("berth create --pod POD {}", flags::USAGE))]
    Create(containers::CreateArgs),
    /// Run a container in a new pod of its own: pull, create, start, then print its output until
    /// it exits (or, with -d, print its ID).
    #[command(override_usage = format!("berth run {}", flags::USAGE))]
    Run(run::RunArgs),
    /// Start created containers.
    Start {
        /// Container IDs, unique ID prefixes or names.
        #[arg(required = true)]
        ids: Vec<String>,
    },
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `berth logs ... | head`: the reader has all it wants.
        Err(e) if client::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {}", client::render(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let timeout = std::time::Duration::from_secs(cli.timeout);
    let endpoint = cli.endpoint.as_str();
    let connect = client::Connect {
        endpoint: cli.endpoint.clone(),
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
        Command::Pull { image, creds } => {
            let auth = images::auth(creds.as_deref())?;
            images::pull(&mut images(None).await?, image, auth).await?;
        }
        Command::Images { filter, quiet } => {
            images::list(&mut images(Some(timeout)).await?, filter.as_deref(), *quiet).await?;
        }
        Command::Rmi { images: names } => {
            images::remove(&mut images(Some(timeout)).await?, names).await?;
        }
        Command::Inspect { target } => inspect::inspect(&connect, target).await?,
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
        Command::Pods { quiet } => {
            pods::list(&mut client::runtime(endpoint, timeout).await?, *quiet).await?;
        }
        Command::Stopp { ids } => {
            pods::stop(&mut client::runtime(endpoint, timeout).await?, ids).await?;
        }
        Command::Rmp { ids, force } => {
            pods::remove(&mut client::runtime(endpoint, timeout).await?, ids, *force).await?;
        }
        Command::Inspectp { id } => {
            pods::inspect(&mut client::runtime(endpoint, timeout).await?, id).await?;
        }
        Command::Create(args) => containers::create(&connect, args).await?,
        Command::Run(args) => return run::run(&connect, args).await,
        Command::Start { ids } => containers::start(&mut connect.runtime().await?, ids).await?,
        Command::Stop(args) => containers::stop(&connect, args).await?,
        Command::Rm(args) => containers::rm(&mut connect.runtime().await?, args).await?,
        Command::Ps(args) => ps::ps(&mut connect.runtime().await?, args).await?,
        Command::Logs(args) => logs::logs(&mut connect.runtime().await?, args).await?,
        Command::Inspectc { id } => {
            inspect::inspect_container(&mut connect.runtime().await?, id).await?;
        }
        Command::Update(args) => exec::update(&mut connect.runtime().await?, args).await?,
        Command::Exec(args) => return exec::exec(&connect, args).await,
        Command::Attach(args) => return exec::attach(&connect, args).await,
        Command::PortForward(args) => portforward::port_forward(&connect, args).await?,
        Command::Stats(args) => stats::stats(&mut connect.runtime().await?, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let Ok(Command::Run(run)) = parse(&[
            "run",
            "-d",
            "--rm",
            "-e",
            "A=1",
            "-p",
            "8080:80",
            "--net",
            "host",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
            "-d",
        ]) else {
            panic!("run did not parse");
        };
        assert!(run.detach && run.rm && run.net == "host");
        assert_eq!(run.ports, ["8080:80"]);
        assert_eq!(run.container.image(), "busybox");
        assert_eq!(run.container.command(), ["sh", "-c", "echo -n hi", "-d"]);
        let Ok(Command::Create(create)) = parse(&[
            "create", "--pod", "p1", "-v", "/a:/b:ro", "-m", "16m", "--cpus", "0.5", "-u", "1000",
            "-t", "-i", "-w", "/w", "--label", "k=v", "--name", "web", "img", "--help",
        ]) else {
            panic!("create did not parse");
        };
        assert_eq!(create.pod.as_deref(), Some("p1"));
        assert_eq!(create.container.memory, Some(16 << 20));
        assert_eq!(create.container.command(), ["--help"]);
        let Ok(Command::Run(run)) = parse(&["run", "busybox", "-H", "x"]) else {
            panic!("run did not parse");
        };
        assert_eq!(run.container.command(), ["-H", "x"]);
        assert!(parse(&["run", "-d"]).is_err(), "no image");
        let Ok(Command::Exec(exec)) = parse(&["exec", "c1", "ls", "-l"]) else {
            panic!("exec did not parse");
        };
        assert_eq!(exec.container_and_command, ["c1", "ls", "-l"]);
        assert!(parse(&["exec", "c1"]).is_err(), "no command");
        let Ok(Command::Exec(exec)) = parse(&["exec", "-it", "c1", "sh", "-i"]) else {
            panic!("exec -it did not parse");
        };
        assert!(exec.interactive && exec.tty);
        assert_eq!(exec.container_and_command, ["c1", "sh", "-i"]);
        let Ok(Command::Attach(attach)) = parse(&["attach", "--no-stdin", "c1"]) else {
            panic!("attach did not parse");
        };
        assert!(attach.no_stdin && attach.container == "c1");
        let Ok(Command::PortForward(pf)) = parse(&["port-forward", "web", "8080", ":80"]) else {
            panic!("port-forward did not parse");
        };
        assert_eq!(pf.pod, "web");
        assert_eq!(
            pf.ports,
            [
                portforward::PortSpec {
                    local: 8080,
                    remote: 8080
                },
                portforward::PortSpec {
                    local: 0,
                    remote: 80
                }
            ]
        );
        assert!(parse(&["port-forward", "web"]).is_err(), "no port");
        assert!(parse(&["port-forward", "web", "80:x"]).is_err());
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(parse(&["run", "--memory", "16x", "busybox"]).is_err());
        assert!(parse(&["run", "--cpus", "0", "busybox"]).is_err());
        assert!(parse(&["run", "-v", "/a", "busybox"]).is_err());
        assert!(parse(&["run", "--net", "none", "busybox"]).is_err());
        assert!(parse(&["ps", "--state", "sleeping"]).is_err());
        assert!(parse(&["logs", "--tail", "x", "c"]).is_err());
        assert!(parse(&["stop"]).is_err());
        let Ok(Command::Stop(stop)) = parse(&["stop", "-t", "3", "a", "b"]) else {
            panic!("stop did not parse");
        };
        assert_eq!((stop.time, stop.ids.len()), (3, 2));
        let Ok(Command::Stop(stop)) = parse(&["stop", "a"]) else {
            panic!("stop did not parse");
        };
        assert_eq!(stop.time, 10);
    }
}
