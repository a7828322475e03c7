//! berthd: the Berth CRI daemon.

mod cli;
mod logging;
mod serve;
mod socket;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Config {
            action: cli::ConfigAction::Default,
        }) => {
            print!("{}", berth_config::DEFAULT_CONFIG_TOML);
            ExitCode::SUCCESS
        }
        Some(cli::Command::Config {
            action: cli::ConfigAction::Show,
        }) => match show_config(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        None => match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

/// `berthd config show`: the effective configuration after files and flags, as TOML.
fn show_config(cli: &cli::Cli) -> anyhow::Result<()> {
    let loaded = cli.load_config()?;
    for source in &loaded.sources {
        println!("# from {}", source.display());
    }
    print!("{}", toml::to_string_pretty(&loaded.config)?);
    Ok(())
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    // Logging may not be set up yet (config errors come first), so write straight to stderr.
    eprintln!("berthd: {e:#}");
    ExitCode::FAILURE
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let loaded = cli.load_config()?;
    logging::init(&loaded.config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for a node daemon and keep idle memory low; blocking work
        // (disk, runtime binaries) goes to the blocking pool.
        .worker_threads(2)
        .enable_all()
        .thread_name("berthd")
        .build()?;
    runtime.block_on(serve::serve(loaded))
}
