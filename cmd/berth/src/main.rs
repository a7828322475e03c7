//! berth: a command-line client for Berth (or any CRI runtime), with docker's verbs, talking CRI.

mod client;

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
    let mut runtime = client::runtime(&cli.endpoint, timeout).await?;
    match cli.command {
        Command::Version => {
            let v = runtime
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
            let status = runtime
                .status(cri::StatusRequest { verbose: true })
                .await?
                .into_inner();
            println!("{}", client::info_json(&status)?);
        }
    }
    Ok(())
}
