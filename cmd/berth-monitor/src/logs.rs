//! The CRI log format kubelet reads: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`, one
//! writev per line on an O_APPEND file so a reader never sees a torn line.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sys;

/// Lines longer than this are split into `P` pieces of this size (kubelet's and containerd's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// A container's log file, or none (output is drained and dropped).
pub struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
    /// When a write last failed: output is dropped without trying for a while (a full disk fails
    /// every write, slowly), and the failure is reported once, not per line.
    failed_at: Option<Instant>,
    /// Bytes written to the log so far (all files, across reopens), for berthd's
    /// `berth_container_log_bytes_total`.
    written: u64,
}

/// After a failed write, lines are dropped without a write for this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Log {
    /// Opens (creating) the log; kubelet creates the directory, so a missing one is an error.
    pub fn open(path: Option<PathBuf>) -> io::Result<Log> {
        let file = match &path {
            Some(p) => Some(open_log(p)?),
            None => None,
        };
        Ok(Log {
            path,
            file,
            failed_at: None,
            written: 0,
        })
    }

    /// kubelet renamed the file: continue in a new one at the same path. On failure the old file
    /// stays in use (kubelet undoes its rename when reopening fails).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            self.file = Some(open_log(path)?);
            self.failed_at = None;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one CRI line whose content is `a` followed by `b`.
    pub fn write_line(&mut self, ts: &Timestamp, stream: &str, partial: bool, a: &[u8], b: &[u8]) {
        let Some(file) = &self.file else {
            return;
        };
        if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return;
        }
        let mut header = [0u8; 48];
        let mut len = 0;
        for piece in [
            &ts.0[..],
            b" ",
            stream.as_bytes(),
            if partial { b" P " } else { b" F " },
        ] {
            header[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        }
        match sys::write_all_vectored(file.as_fd(), &[&header[..len], a, b, b"\n"]) {
            Ok(()) => {
                self.failed_at = None;
                self.written += (len + a.len() + b.len() + 1) as u64;
            }
            Err((written, err)) => {
                // Drop the output rather than stall the container (disk full, quota ...), but
                // never leave a torn line behind for kubelet: cut off the part that got written.
                if written > 0
                    && let Ok(meta) = file.metadata()
                {
                    let _ = file.set_len(meta.len().saturating_sub(written as u64));
                }
                if self.failed_at.is_none() {
                    crate::note(format_args!(
                        "writing log {}: {err}; dropping output",
                        self.path
                            .as_deref()
                            .unwrap_or(std::path::Path::new(""))
                            .display()
                    ));
                }
                self.failed_at = Some(Instant::now());
            }
        }
    }
}

fn open_log(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening log {}: {e}", path.display())))
}

/// An RFC3339 UTC timestamp with nanoseconds, e.g. `2026-12-01T10:17:44.123456789Z`.
pub struct Timestamp(pub [u8; 30]);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_unix_ns(berth_clock::now_ns())
    }

    pub fn from_unix_ns(ns: i64) -> Timestamp {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        put(&mut out[0..4], year);
        put(&mut out[5..7], month);
        put(&mut out[8..10], day);
        put(&mut out[11..13], rem / 3600);
        put(&mut out[14..16], rem % 3600 / 60);
        put(&mut out[17..19], rem % 60);
        put(&mut out[20..29], nanos);
        Timestamp(out)
    }
}

/// Writes `v` as zero-padded decimal filling `dst`.
// A digit (rem_euclid(10) is 0..=9) fits a u8.
#[allow(clippy::cast_possible_truncation)]
fn put(dst: &mut [u8], mut v: i64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v.rem_euclid(10)) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Receives each finished line (or piece): `(partial, a, b)`, the content being `a` then `b`.
pub type Emit<'a> = dyn FnMut(bool, &[u8], &[u8]) + 'a;

/// Splits a byte stream into CRI lines, holding back an unterminated tail until its newline (or
/// until it exceeds [`MAX_LINE`]).
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; `emit(partial, a, b)` gets each finished line (or piece) as two slices.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut Emit<'_>) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) if nl <= room => {
                    emit(false, &self.pending, &data[..nl]);
                    self.clear();
                    data = &data[nl + 1..];
                }
                // More than MAX_LINE bytes without a newline: a piece of exactly MAX_LINE. A line of
                // exactly MAX_LINE bytes waits for its newline, so it stays one F line.
                _ if data.len() > room => {
                    emit(true, &self.pending, &data[..room]);
                    self.clear();
                    data = &data[room..];
                }
                _ => {
                    self.pending.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    /// EOF: an unterminated last line is written as a full line.
    pub fn finish(&mut self, emit: &mut Emit<'_>) {
        if !self.pending.is_empty() {
            emit(false, &self.pending, &[]);
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.pending.clear();
        // A long line's buffer is not kept around: idle memory matters more than reallocation.
        if self.pending.capacity() > 4096 {
            self.pending = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], eof: bool) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        let mut emit = |p: bool, a: &[u8], b: &[u8]| out.push((p, [a, b].concat()));
        for c in chunks {
            s.feed(c, &mut emit);
        }
        if eof {
            s.finish(&mut emit);
        }
        out
    }

    #[test]
    fn lines_and_pieces() {
        assert_eq!(
            split(&[b"a\nb", b"c\n", b"\n"], false),
            vec![
                (false, b"a".to_vec()),
                (false, b"bc".to_vec()),
                (false, vec![])
            ]
        );
        let long = [vec![b'x'; 40_000], b"\n".to_vec()].concat();
        // Fed whole and fed in uneven chunks, the pieces are the same.
        for chunk in [40_001, 1000, 7] {
            let chunks: Vec<&[u8]> = long.chunks(chunk).collect();
            let sizes: Vec<(bool, usize)> = split(&chunks, false)
                .into_iter()
                .map(|(p, l)| (p, l.len()))
                .collect();
            assert_eq!(
                sizes,
                vec![(true, 16384), (true, 16384), (false, 7232)],
                "chunk {chunk}"
            );
        }
        let exact = [vec![b'y'; MAX_LINE], b"\n".to_vec()].concat();
        assert_eq!(
            split(&[&exact[..100], &exact[100..]], false),
            vec![(false, vec![b'y'; MAX_LINE])]
        );
        assert_eq!(split(&[b"tail"], true), vec![(false, b"tail".to_vec())]);
        assert_eq!(split(&[b"tail"], false), vec![]);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            &Timestamp::from_unix_ns(0).0,
            b"1970-01-01T00:00:00.000000000Z"
        );
        // 2026-12-01T10:17:44.123456789Z
        let ns = 1_796_120_264_123_456_789;
        assert_eq!(
            &Timestamp::from_unix_ns(ns).0,
            b"2026-12-01T10:17:44.123456789Z"
        );
        // A leap day.
        assert_eq!(
            &Timestamp::from_unix_ns(951_782_400_000_000_001).0,
            b"2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn log_lines_are_cri_formatted() {
        let dir = std::env::temp_dir().join(format!("berth-monitor-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.log");
        let mut log = Log::open(Some(path.clone())).unwrap();
        let ts = Timestamp::from_unix_ns(0);
        log.write_line(&ts, "stdout", false, b"hel", b"lo");
        log.write_line(&ts, "stderr", true, b"", b"piece");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000000Z stdout F hello\n1970-01-01T00:00:00.000000000Z stderr P piece\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Log::open(Some(dir.join("missing/c.log"))).is_err());
    }
}
