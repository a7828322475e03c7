//! The CRI log format, as runtimes write container logs and kubelet reads them.
//!
//! Each line of the file is `<RFC 3339 timestamp> <stdout|stderr> <P|F>[:tags] <content>`. `P`
//! (partial) lines are pieces of one output line the runtime split (long lines, or output without a
//! newline yet); the `F` line that follows completes it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a CRI log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its newline). `None`: not a CRI log line.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(fields.next()?).ok()?;
    if !timestamp.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match fields.next()?.split(|b| *b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry {
        timestamp,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// One output line, put back together: the timestamp of its first piece, and its content with the
/// newline (none for output the container left unfinished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub timestamp: String,
    pub stream: Stream,
    pub content: Vec<u8>,
}

/// Joins `P` pieces with the `F` line that ends them, per stream.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    /// Takes one raw log line; returns the output line it completes, if any. A line that is not in
    /// the CRI format is passed through as stdout.
    pub fn push(&mut self, raw: &[u8]) -> Option<Line> {
        let Some(entry) = parse(raw) else {
            let mut content = raw.to_vec();
            content.push(b'\n');
            return Some(Line {
                timestamp: String::new(),
                stream: Stream::Stdout,
                content,
            });
        };
        let slot = &mut self.pending[entry.stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            timestamp: entry.timestamp.to_string(),
            stream: entry.stream,
            content: Vec::new(),
        });
        line.content.extend_from_slice(entry.content);
        if entry.partial {
            return None;
        }
        line.content.push(b'\n');
        slot.take()
    }

    /// The unfinished lines, oldest first (the container is gone: nothing will finish them).
    pub fn flush(&mut self) -> Vec<Line> {
        let mut lines: Vec<Line> = self.pending.iter_mut().filter_map(Option::take).collect();
        lines.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        lines
    }
}

/// A log file read as it grows. kubelet rotates logs by renaming the file and asking the runtime
/// to reopen it (ReopenContainerLog): when the path names another file, the old one is read to
/// its end and the new one from its start. A file truncated in place is read again from the start.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    open: Option<(File, (u64, u64))>,
    position: u64,
    buffer: Vec<u8>,
}

fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

impl LogFile {
    pub fn new(path: impl Into<PathBuf>) -> LogFile {
        LogFile {
            path: path.into(),
            open: None,
            position: 0,
            buffer: Vec::new(),
        }
    }

    /// The complete lines appended since the last call, without their newlines.
    pub fn read_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        // Looked at before reading, so what went to the old file before a rotation is read first.
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => Some(identity(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if self.open.is_none() && !self.reopen()? {
            return Ok(lines);
        }
        self.read_available(&mut lines)?;
        let rotated = match (&self.open, current) {
            (Some((_, open)), Some(current)) => *open != current,
            _ => false,
        };
        if rotated {
            lines.extend(self.rest());
            self.open = None;
            if self.reopen()? {
                self.read_available(&mut lines)?;
            }
        }
        Ok(lines)
    }

    /// What follows the last newline: a line the writer has not finished (or never will).
    pub fn rest(&mut self) -> Option<Vec<u8>> {
        (!self.buffer.is_empty()).then(|| std::mem::take(&mut self.buffer))
    }

    fn reopen(&mut self) -> std::io::Result<bool> {
        match File::open(&self.path) {
            Ok(file) => {
                let id = identity(&file.metadata()?);
                self.open = Some((file, id));
                self.position = 0;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read_available(&mut self, lines: &mut Vec<Vec<u8>>) -> std::io::Result<()> {
        let Some((file, _)) = &mut self.open else {
            return Ok(());
        };
        if file.metadata()?.len() < self.position {
            file.seek(SeekFrom::Start(0))?;
            self.position = 0;
            self.buffer.clear();
        }
        let start = self.buffer.len();
        let read = file.read_to_end(&mut self.buffer)?;
        self.position += read as u64;
        let mut begin = 0;
        for (i, b) in self.buffer.iter().enumerate().skip(start) {
            if *b == b'\n' {
                lines.push(self.buffer[begin..i].to_vec());
                begin = i + 1;
            }
        }
        self.buffer.drain(..begin);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;

    const T1: &str = "2024-05-01T10:00:00.000000001Z";
    const T2: &str = "2024-05-01T10:00:00.000000002Z";

    fn lines(joiner: &mut Joiner, raw: &[&str]) -> Vec<(Stream, String, String)> {
        raw.iter()
            .filter_map(|r| joiner.push(r.as_bytes()))
            .map(|l| (l.stream, l.timestamp, String::from_utf8(l.content).unwrap()))
            .collect()
    }

    #[test]
    fn parses_cri_lines() {
        let e = parse(format!("{T1} stdout F hello world").as_bytes())
            .map(|e| {
                (
                    e.timestamp.to_string(),
                    e.stream,
                    e.partial,
                    e.content.to_vec(),
                )
            })
            .unwrap();
        assert_eq!(
            e,
            (
                T1.to_string(),
                Stream::Stdout,
                false,
                b"hello world".to_vec()
            )
        );
        let raw = format!("{T1} stderr P:x part ");
        let e = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            (e.stream, e.partial, e.content),
            (Stream::Stderr, true, &b"part "[..])
        );
        // An empty line, with or without the separator.
        assert_eq!(
            parse(format!("{T1} stdout F ").as_bytes()).unwrap().content,
            b""
        );
        assert_eq!(
            parse(format!("{T1} stdout F").as_bytes()).unwrap().content,
            b""
        );
        for bad in [
            "",
            "hello",
            "x stdout F a",
            &format!("{T1} stdin F a"),
            &format!("{T1} stdout X a"),
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn joins_partial_lines_per_stream() {
        let mut j = Joiner::default();
        let out = lines(
            &mut j,
            &[
                &format!("{T1} stdout P hel"),
                &format!("{T1} stderr F oops"),
                &format!("{T2} stdout P lo "),
                &format!("{T2} stdout F world"),
                &format!("{T2} stdout F "),
                "not a cri line",
            ],
        );
        assert_eq!(
            out,
            [
                (Stream::Stderr, T1.into(), "oops\n".into()),
                (Stream::Stdout, T1.into(), "hello world\n".into()),
                (Stream::Stdout, T2.into(), "\n".into()),
                (Stream::Stdout, String::new(), "not a cri line\n".into()),
            ]
        );
        assert!(lines(&mut j, &[&format!("{T2} stderr P prompt> ")]).is_empty());
        let rest = j.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].content, b"prompt> ");
        assert!(j.flush().is_empty());
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn strings(lines: Vec<Vec<u8>>) -> Vec<String> {
        lines
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn log_files_are_followed_across_writes_rotation_and_truncation() {
        let dir = dir("follow");
        let path = dir.join("c.log");
        let mut log = LogFile::new(&path);
        assert!(log.read_lines().unwrap().is_empty(), "no file yet");
        append(&path, "a\nb");
        assert_eq!(strings(log.read_lines().unwrap()), ["a"]);
        append(&path, "c\n");
        assert_eq!(strings(log.read_lines().unwrap()), ["bc"]);
        // kubelet's rotation: rename, more output to the old file, then a new file.
        std::fs::rename(&path, dir.join("c.log.20240501")).unwrap();
        append(&dir.join("c.log.20240501"), "d\n");
        assert_eq!(strings(log.read_lines().unwrap()), ["d"]);
        append(&dir.join("c.log.20240501"), "e\n");
        append(&path, "f\n");
        assert_eq!(strings(log.read_lines().unwrap()), ["e", "f"]);
        // Truncated in place (copytruncate).
        append(&path, "0123456789\n");
        assert_eq!(strings(log.read_lines().unwrap()), ["0123456789"]);
        std::fs::write(&path, "").unwrap();
        append(&path, "g\nh");
        assert_eq!(strings(log.read_lines().unwrap()), ["g"]);
        assert_eq!(log.rest(), Some(b"h".to_vec()));
        assert_eq!(log.rest(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
