//! Running the OCI runtime (`run --detach`, `exec --detach`) and reading its error message back.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_monitor_api::proto::{CreateContainer, Exec};

/// The per-container files the runtime writes in the monitor directory.
pub struct RuntimeFiles {
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub console: PathBuf,
}

impl RuntimeFiles {
    pub fn new(dir: &Path, id: &str) -> RuntimeFiles {
        RuntimeFiles {
            pid_file: dir.join(format!("{id}.pid")),
            log: dir.join(format!("{id}.runtime.log")),
            // Unix socket paths are limited to 108 bytes: a short name keeps deep state dirs
            // usable. IDs are random, so 12 characters are unique within one pod.
            console: dir.join(format!("{}.tty", &id[..id.len().min(12)])),
        }
    }

    pub fn remove(&self) {
        for path in [&self.pid_file, &self.log, &self.console] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The runtime's stdio: for a non-tty container these become the container's own (runc passes
/// them through in detached mode).
pub struct Stdio3 {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// `<runtime> <args...> --log F --log-format json`: every subcommand's errors end up in its log.
fn runtime_command(runtime_path: &str, runtime_args: &[String], log: &Path) -> Command {
    let mut cmd = Command::new(runtime_path);
    cmd.args(runtime_args)
        .arg("--log")
        .arg(log)
        .arg("--log-format")
        .arg("json");
    cmd
}

fn spawned(cmd: &mut Command, runtime_path: &str) -> io::Result<i32> {
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting runtime {runtime_path}: {e}")))?;
    // Reaped through waitpid(-1) in the event loop, never through Child.
    Ok(child.id() as i32)
}

/// Starts `<runtime> <args...> --log F --log-format json run --detach --bundle B --pid-file P
/// [--console-socket S] <id>`; returns its pid. The child's copies of the descriptors are closed in
/// the monitor as the Command is dropped, so EOF on the pipes means the container side closed.
pub fn spawn(req: &CreateContainer, files: &RuntimeFiles, stdio: Stdio3) -> io::Result<i32> {
    let mut cmd = runtime_command(&req.runtime_path, &req.runtime_args, &files.log);
    cmd.arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(&req.bundle)
        .arg("--pid-file")
        .arg(&files.pid_file);
    if req.tty {
        cmd.arg("--console-socket").arg(&files.console);
    }
    cmd.arg(&req.container_id)
        .stdin(stdio.stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    spawned(&mut cmd, &req.runtime_path)
}

/// The files of one exec in the monitor directory. Named by a per-monitor counter with a leading
/// dot, which no container ID has, so they never collide with a container's files; short, for the
/// console socket's 108-byte path limit.
pub struct ExecFiles {
    pub process: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub console: PathBuf,
}

impl ExecFiles {
    pub fn new(dir: &Path, n: u64) -> ExecFiles {
        ExecFiles {
            process: dir.join(format!(".exec{n}.json")),
            pid_file: dir.join(format!(".exec{n}.pid")),
            log: dir.join(format!(".exec{n}.log")),
            console: dir.join(format!(".exec{n}.tty")),
        }
    }

    pub fn remove(&self) {
        for path in [&self.process, &self.pid_file, &self.log, &self.console] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts `<runtime> <args...> --log F --log-format json exec --detach --pid-file P --process J
/// [--console-socket S] <id>` with the exec's stdio (a detached runtime hands its own stdio to the
/// process when there is no terminal); returns its pid.
pub fn spawn_exec(req: &Exec, files: &ExecFiles, stdio: [Stdio; 3]) -> io::Result<i32> {
    let mut cmd = runtime_command(&req.runtime_path, &req.runtime_args, &files.log);
    cmd.arg("exec")
        .arg("--detach")
        .arg("--pid-file")
        .arg(&files.pid_file)
        .arg("--process")
        .arg(&files.process);
    if req.tty {
        cmd.arg("--console-socket").arg(&files.console);
    }
    let [stdin, stdout, stderr] = stdio;
    // A process group of its own, which the exec process inherits: killing the exec kills what
    // it left running in the background too (see RunningExec::kill).
    cmd.process_group(0);
    cmd.arg(&req.container_id)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    spawned(&mut cmd, &req.runtime_path)
}

/// The runtime's own error text for a failed run: the last error-level `msg` of its JSON log,
/// else its raw stderr, else the raw log, else `fallback`. The log file is removed.
pub fn error_message(log: &Path, stderr: &[u8], fallback: String) -> String {
    let raw_log = std::fs::read(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    let text = String::from_utf8_lossy(&raw_log);
    if let Some(msg) = text.lines().rev().find_map(|line| {
        (json_string_field(line, "level")? == "error")
            .then(|| json_string_field(line, "msg"))
            .flatten()
    }) {
        return msg.trim().to_string();
    }
    for raw in [stderr, &raw_log[..]] {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if !text.is_empty() {
            // The end holds the error; keep messages bounded.
            let start = text.len().saturating_sub(2048);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            return text[start..].to_string();
        }
    }
    fallback
}

/// The string value of `key` in a one-line flat JSON object (logrus' JSON lines); `None` if the line
/// is not such an object or the key is missing or not a string.
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let mut p = Parser {
        s: line.trim().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.peek()? == b'}' {
            return None;
        }
        let k = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        if p.peek()? == b'"' {
            let v = p.string()?;
            if k == key {
                return Some(v);
            }
        } else {
            p.skip_value()?;
        }
        p.skip_ws();
        match p.next()? {
            b',' => continue,
            _ => return None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.next()? {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = self.s.get(self.i..self.i + 4)?;
                        self.i += 4;
                        let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                        // Surrogate pairs are rare in runtime errors: replace them.
                        let c = char::from_u32(code).unwrap_or('\u{fffd}');
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    other => out.push(other),
                },
                b => out.push(b),
            }
        }
    }
    /// Skips a non-string value: a number, literal, or nested object/array (strings inside skipped).
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return Some(()),
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => return Some(()),
                _ => {}
            }
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let line = r#"{"level":"error","msg":"runc run failed: exec: \"/x\": stat /x: no such file","n":[1,{"a":"}"}],"time":"t"}"#;
        assert_eq!(json_string_field(line, "level").as_deref(), Some("error"));
        assert_eq!(
            json_string_field(line, "msg").as_deref(),
            Some(r#"runc run failed: exec: "/x": stat /x: no such file"#)
        );
        assert_eq!(json_string_field(line, "time").as_deref(), Some("t"));
        assert_eq!(json_string_field(line, "missing"), None);
        assert_eq!(json_string_field("not json", "msg"), None);
        assert_eq!(
            json_string_field(r#"{"msg":"\u00e9\n"}"#, "msg").as_deref(),
            Some("é\n")
        );
        assert_eq!(json_string_field(r#"{"msg":"unterminated"#, "msg"), None);
    }

    #[test]
    fn error_message_prefers_the_last_error_line() {
        let dir = std::env::temp_dir().join(format!("berth-monitor-rtlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("c.runtime.log");
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\" second \"}\n",
        )
        .unwrap();
        assert_eq!(error_message(&log, b"stderr text", "fb".into()), "second");
        assert!(!log.exists());
        assert_eq!(
            error_message(&log, b"  stderr text\n", "fb".into()),
            "stderr text"
        );
        std::fs::write(&log, "plain failure\n").unwrap();
        assert_eq!(error_message(&log, b"", "fb".into()), "plain failure");
        assert_eq!(error_message(&log, b"", "fb".into()), "fb");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
