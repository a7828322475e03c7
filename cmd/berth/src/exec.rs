//! `berth exec`, `berth attach` and `berth update`: running commands in containers,
//! attaching to them, and their resources.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use berth_cri_api::v1 as cri;
use clap::Args;
use tonic::Code;

use crate::client::Connect;
use crate::containers::{self, Runtime};
use crate::flags::{self, Cpus};
use crate::stream::{self, End, Outcome, Streams};

/// An UNIMPLEMENTED answer, with the issue that tracks the feature.
fn unimplemented(status: tonic::Status, issue: &str) -> anyhow::Error {
    if status.code() == Code::Unimplemented {
        anyhow::anyhow!("{} (issue {issue})", status.message())
    } else {
        status.into()
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Send stdin to the command (streaming Exec; without -i/-t the command runs with ExecSync).
    #[arg(long, short)]
    pub interactive: bool,
    /// Give the command a terminal; with -i and a terminal here, this one goes raw while it runs.
    #[arg(long, short)]
    pub tty: bool,
    /// The container (ID, unique ID prefix or name), then the command and its arguments.
    /// Everything after the container belongs to the command, flags too.
    #[arg(
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_names = ["CONTAINER", "CMD"]
    )]
    pub container_and_command: Vec<String>,
}

/// Runs the command, with ExecSync or (-i/-t) a streaming Exec session; exits with its exit code.
pub async fn exec(connect: &Connect, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let [container, command @ ..] = &args.container_and_command[..] else {
        bail!("berth exec needs a container and a command");
    };
    if args.interactive || args.tty {
        return exec_streaming(connect, container, command, args).await;
    }
    // The command runs as long as it runs.
    let mut runtime = connect.runtime_for(None).await?;
    let id = containers::find(&mut runtime, container, false).await?.id;
    let response = runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: command.to_vec(),
            timeout: 0,
        })
        .await
        .map_err(|s| unimplemented(s, "#6"))?
        .into_inner();
    std::io::stdout().write_all(&response.stdout)?;
    std::io::stderr().write_all(&response.stderr)?;
    Ok(stream::exit_code(response.exit_code))
}

/// `exec -i`/`-t`: Exec for a URL on the streaming server, then a session there.
async fn exec_streaming(
    connect: &Connect,
    container: &str,
    command: &[String],
    args: &ExecArgs,
) -> anyhow::Result<ExitCode> {
    let mut runtime = connect.runtime().await?;
    let id = containers::find(&mut runtime, container, false).await?.id;
    let url = runtime
        .exec(cri::ExecRequest {
            container_id: id,
            cmd: command.to_vec(),
            tty: args.tty,
            stdin: args.interactive,
            stdout: true,
            // A terminal has one output: stderr comes out on it.
            stderr: !args.tty,
            // No API server audit event is behind a CLI session.
            audit_request_id: String::new(),
        })
        .await
        .map_err(|s| unimplemented(s, "#6"))?
        .into_inner()
        .url;
    let streams = Streams {
        stdin: args.interactive,
        tty: args.tty,
        detach: false,
    };
    match stream::session(&url, streams, connect.timeout).await? {
        End::Status(Outcome::Exited(code)) => Ok(stream::exit_code(code)),
        End::Status(Outcome::Failed(message)) => bail!("{message}"),
        End::Closed | End::Detached => {
            bail!("the streaming server ended the session without the command's exit status")
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// Don't send stdin, even if the container has one.
    #[arg(long)]
    pub no_stdin: bool,
    /// The container: ID, unique ID prefix or name.
    pub container: String,
}

/// Whether a container has a terminal and an open stdin, as far as its verbose status tells:
/// containerd's info has the container's config, berthd's the OCI spec (whose `terminal` is the
/// tty; the spec does not record stdin). `None`: not told.
fn terminal_and_stdin(response: &cri::ContainerStatusResponse) -> (Option<bool>, Option<bool>) {
    let Some(info) = response
        .info
        .get("info")
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
    else {
        return (None, None);
    };
    let flag = |pointer: &str| info.pointer(pointer).and_then(serde_json::Value::as_bool);
    let tty = flag("/config/tty").or_else(|| flag("/runtimeSpec/process/terminal"));
    (tty, flag("/config/stdin"))
}

/// `berth attach`: the container's output here, and stdin there, until it exits or berth detaches
/// (end of stdin, or Ctrl-P Ctrl-Q on a terminal).
pub async fn attach(connect: &Connect, args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let mut runtime = connect.runtime().await?;
    let response = containers::find_response(&mut runtime, &args.container, true).await?;
    let Some(status) = response.status.as_ref() else {
        bail!("container {:?} not found", args.container);
    };
    if status.state != cri::ContainerState::ContainerRunning as i32 {
        bail!(
            "container {} is {}, not running: nothing to attach to",
            args.container,
            containers::state_name(status.state).to_lowercase()
        );
    }
    let id = status.id.clone();
    let (tty, stdin) = terminal_and_stdin(&response);
    let tty = tty.unwrap_or(false);
    // Unknown: ask; a runtime gives stdin only to a container that has one.
    let stdin = !args.no_stdin && stdin.unwrap_or(true);
    let url = runtime
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
            // No API server audit event is behind a CLI session.
            audit_request_id: String::new(),
        })
        .await
        .map_err(|s| unimplemented(s, "#6"))?
        .into_inner()
        .url;
    let streams = Streams {
        stdin,
        tty,
        detach: true,
    };
    match stream::session(&url, streams, connect.timeout).await? {
        End::Status(Outcome::Exited(code)) if code != 0 => Ok(stream::exit_code(code)),
        End::Status(Outcome::Failed(message)) => bail!("{message}"),
        End::Detached => Ok(ExitCode::SUCCESS),
        // The attach ended with the container's output (or the server said no more): like
        // docker, exit with its exit code.
        End::Status(Outcome::Exited(_)) | End::Closed => Ok(stream::exit_code(
            exit_code_once_exited(&mut runtime, &id).await,
        )),
    }
}

/// The container's exit code once the runtime has recorded its exit, which may come a moment after
/// its output ended; 0 if it still runs after that moment (the attach ended some other way).
async fn exit_code_once_exited(runtime: &mut Runtime, id: &str) -> i32 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let status = containers::status(runtime, id, false)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.status);
        match status {
            Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => {
                return s.exit_code;
            }
            Some(s) if s.state == cri::ContainerState::ContainerRunning as i32 => {}
            _ => return 0,
        }
        if tokio::time::Instant::now() >= deadline {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// New memory limit: bytes, or 512k, 16m, 1g.
    #[arg(long, short = 'm', value_name = "SIZE", value_parser = flags::memory)]
    pub memory: Option<i64>,
    /// New CPU limit in CPUs, e.g. 0.5.
    #[arg(long, value_name = "CPUS", value_parser = flags::cpus)]
    pub cpus: Option<Cpus>,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// The container's current resources with the flags' changes: UpdateContainerResources replaces
/// them whole, so what the flags don't name stays as it was.
fn updated(
    current: Option<cri::LinuxContainerResources>,
    args: &UpdateArgs,
) -> cri::LinuxContainerResources {
    let mut resources = current.unwrap_or_default();
    if let Some(bytes) = args.memory {
        resources.memory_limit_in_bytes = bytes;
    }
    if let Some(cpus) = args.cpus {
        resources.cpu_quota = cpus.quota;
        resources.cpu_period = cpus.period;
    }
    resources
}

pub async fn update(runtime: &mut Runtime, args: &UpdateArgs) -> anyhow::Result<()> {
    if args.memory.is_none() && args.cpus.is_none() {
        bail!("nothing to update: give --memory and/or --cpus");
    }
    let mut failed = 0;
    for arg in &args.ids {
        let result = async {
            let status = containers::find(runtime, arg, false).await?;
            let current = status.resources.and_then(|r| r.linux);
            runtime
                .update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: status.id,
                    linux: Some(updated(current, args)),
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(())
        };
        match result.await {
            Ok(()) => println!("{arg}"),
            Err(e) if args.ids.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("berth: {}", crate::client::render(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers not updated", args.ids.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_what_the_flags_do_not_name() {
        let args = UpdateArgs {
            memory: Some(32 << 20),
            cpus: None,
            ids: vec!["c".into()],
        };
        let current = cri::LinuxContainerResources {
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 16 << 20,
            cpuset_cpus: "0-1".into(),
            ..Default::default()
        };
        let r = updated(Some(current), &args);
        assert_eq!(r.memory_limit_in_bytes, 32 << 20);
        assert_eq!((r.cpu_quota, r.cpuset_cpus.as_str()), (50_000, "0-1"));
    }

    #[test]
    fn unimplemented_names_the_issue() {
        let e = unimplemented(
            tonic::Status::unimplemented("ExecSync is not implemented by berth 0.1 yet"),
            "#6",
        );
        assert_eq!(
            e.to_string(),
            "ExecSync is not implemented by berth 0.1 yet (issue #6)"
        );
    }
}
