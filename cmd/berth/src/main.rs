//! berth: a command-line client for Berth (or any CRI runtime), with docker's verbs, talking CRI.

mod client;
mod images;
mod pods;
mod table;

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
    /// Show an image's status and config as JSON.
    Inspect { image: String },
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let timeout = std::time::Duration::from_secs(cli.timeout);
    let endpoint = cli.endpoint.as_str();
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
        Command::Inspect { image } => {
            images::inspect(&mut images(Some(timeout)).await?, image).await?;
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
        } => {
            let pod = pods::RunPod {
                name: name.clone(),
                namespace: namespace.clone(),
                host_network: *host_network,
                share_pid: *share_pid,
                ports: ports.clone(),
                labels: labels.clone(),
                runtime_handler: runtime.clone(),
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
    }
    Ok(())
}
