//! `berth login` and `berth logout`, as docker's: berthd checks the credentials against the
//! registry and keeps them in its root-only auth file (`berth.registries.v1.Registries`), and
//! pulls that bring no credentials use them.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;

use anyhow::{Context, bail};
use berth_api::registries::v1 as api;
use berth_api::registries::v1::registries_client::RegistriesClient;
use clap::Args;
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::client::{self, Connect};

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The registry: a host[:port] or URL [default: docker.io].
    pub server: Option<String>,
    /// Username (asked for on a terminal when not given).
    #[arg(long, short)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine in ps; prefer --password-stdin).
    #[arg(long, short, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (all of it, without the final newline).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The registry: a host[:port] or URL [default: docker.io].
    pub server: Option<String>,
}

async fn registries(
    connect: &Connect,
) -> anyhow::Result<RegistriesClient<tonic::transport::Channel>> {
    // A login talks to the registry (maybe a token server too): allow more than --timeout.
    let call = connect.timeout.max(std::time::Duration::from_secs(60));
    Ok(RegistriesClient::new(
        client::channel_with(&connect.endpoint, connect.timeout, Some(call)).await?,
    ))
}

fn call_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!(
            "the runtime does not offer logins (berth.registries.v1.Registries): is it Berth?"
        )
    } else {
        status.into()
    }
}

/// One line from the terminal on stdin, echoed or not.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = if echo {
        None
    } else {
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)
            .context("turning the terminal's echo off")?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
        // The newline typed was not echoed either.
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The password from stdin for --password-stdin: everything, less the final line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the password from stdin")?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

pub async fn login(connect: &Connect, args: &LoginArgs) -> anyhow::Result<()> {
    let terminal = std::io::stdin().is_terminal();
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = match &args.username {
        Some(u) => u.clone(),
        None if args.password_stdin => bail!("--password-stdin needs --username"),
        None if terminal => prompt("Username: ", true)?,
        None => bail!("cannot ask for a username: stdin is not a terminal (use --username)"),
    };
    if username.is_empty() {
        bail!("a username is required");
    }
    let password = match &args.password {
        Some(p) => p.clone(),
        None if args.password_stdin => password_from_stdin()?,
        None if terminal => prompt("Password: ", false)?,
        None => bail!("cannot ask for a password: stdin is not a terminal (use --password-stdin)"),
    };
    let done = registries(connect)
        .await?
        .login(api::LoginRequest {
            server: args.server.clone().unwrap_or_default(),
            username,
            password,
        })
        .await
        .map_err(call_error)?
        .into_inner();
    eprintln!("Logged in to {}", done.server);
    println!("Login Succeeded");
    Ok(())
}

pub async fn logout(connect: &Connect, args: &LogoutArgs) -> anyhow::Result<()> {
    let done = registries(connect)
        .await?
        .logout(api::LogoutRequest {
            server: args.server.clone().unwrap_or_default(),
        })
        .await
        .map_err(call_error)?
        .into_inner();
    if done.removed {
        println!("Removing login credentials for {}", done.server);
    } else {
        println!("Not logged in to {}", done.server);
    }
    Ok(())
}
