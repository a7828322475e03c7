//! berth's exit status, as docker's: the container's own code when it ran, else 125 for an error
//! of berth or the runtime, 126 when the container's command could not be invoked and 127 when it
//! was not found. Scripts written for `docker run`/`docker exec` keep working.

use std::process::ExitCode;

/// berth or the runtime failed (a bad flag, an unreachable socket, a refused call).
pub const BERTH: u8 = 125;
/// The command exists but could not be run (permissions, not executable, a directory).
pub const CANNOT_INVOKE: u8 = 126;
/// The command does not exist in the container.
pub const NOT_FOUND: u8 = 127;

/// The status for an error. The runtime reports a command that failed to start only in words
/// (runc's and crun's, passed on by berthd or another CRI runtime), so the words decide, as
/// docker decides from runc's.
pub fn for_error(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(code_for_error(error))
}

fn code_for_error(error: &anyhow::Error) -> u8 {
    match classify(&crate::client::render(error)) {
        Some(Failure::NotFound) => NOT_FOUND,
        Some(Failure::CannotInvoke) => CANNOT_INVOKE,
        None => BERTH,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    CannotInvoke,
}

/// Whether a runtime's message says a container's command could not be started, and why.
pub fn classify(message: &str) -> Option<Failure> {
    let m = message.to_ascii_lowercase();
    // Only messages about starting a process: "no such file" alone may be about a mount source.
    let about_exec = m.contains("exec")
        || m.contains("starting container process")
        || m.contains("$path")
        || m.contains("command");
    if !about_exec {
        return None;
    }
    if m.contains("executable file not found")
        || m.contains("not found in $path")
        || m.contains("no such file or directory")
        || m.contains("command not found")
    {
        Some(Failure::NotFound)
    } else if m.contains("permission denied")
        || m.contains("exec format error")
        || m.contains("is a directory")
        || m.contains("not a directory")
        || m.contains("cannot execute")
    {
        Some(Failure::CannotInvoke)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_messages_map_to_docker_codes() {
        let runc = "starting container nope: OCI runtime create failed: runc create failed: \
                    unable to start container process: exec: \"nope\": executable file not found \
                    in $PATH: unknown";
        assert_eq!(classify(runc), Some(Failure::NotFound));
        let crun = "executable file `nope` not found in $PATH: No such file or directory";
        assert_eq!(classify(crun), Some(Failure::NotFound));
        let perm = "unable to start container process: exec: \"/etc/passwd\": permission denied";
        assert_eq!(classify(perm), Some(Failure::CannotInvoke));
        let dir = "exec /tmp: is a directory";
        assert_eq!(classify(dir), Some(Failure::CannotInvoke));
        assert_eq!(classify("mount source /x: no such file or directory"), None);
        assert_eq!(
            classify("connecting to unix:///x: No such file or directory"),
            None
        );
        assert_eq!(classify("container \"abc\" not found"), None);
        let e = anyhow::Error::from(tonic::Status::unknown(runc)).context("running");
        assert_eq!(code_for_error(&e), NOT_FOUND);
        assert_eq!(code_for_error(&anyhow::anyhow!("plain")), BERTH);
    }
}
