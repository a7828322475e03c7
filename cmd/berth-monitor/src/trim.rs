//! Keeping resident memory small while idle. One monitor runs per pod, mostly asleep in poll(2),
//! yet the pages of its executable's code that it touched stay resident. Those are clean,
//! file-backed and never written, so MADV_DONTNEED on the executable's r-xp mapping drops them
//! safely: they refault from the page cache when the code runs again. Writable and relro mappings
//! are never touched (dropping them would lose data). glibc's free heap pages go back too.

use std::time::{Duration, Instant};

/// At most one trim per interval: a chatty container must not refault the code on every line.
const INTERVAL: Duration = Duration::from_secs(1);

pub struct Trim {
    text: Option<(usize, usize)>,
    last: Instant,
    dirty: bool,
}

impl Trim {
    pub fn new() -> Trim {
        Trim {
            text: text_mapping(),
            last: Instant::now(),
            dirty: true,
        }
    }

    /// Something ran since the last trim.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Trims if due; otherwise how long until it is (`None`: nothing to trim).
    pub fn tick(&mut self) -> Option<Duration> {
        if !self.dirty {
            return None;
        }
        let since = self.last.elapsed();
        if since < INTERVAL {
            return Some(INTERVAL - since);
        }
        self.trim_now();
        None
    }

    pub fn trim_now(&mut self) {
        self.dirty = false;
        self.last = Instant::now();
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        if let Some((start, len)) = self.text {
            // SAFETY: the range is our executable's private, read-only, executable mapping:
            // its pages are never dirty, so dropping them only costs a refault from the file.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
}

/// The r-xp mapping of our own executable, from /proc/self/maps.
fn text_mapping() -> Option<(usize, usize)> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| parse_text_line(line, exe))
}

fn parse_text_line(line: &str, exe: &str) -> Option<(usize, usize)> {
    // start-end perms offset dev inode path
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3)?.trim_start();
    if perms != "r-xp" || path != exe {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then(|| (start, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_the_executables_text() {
        let exe = "/usr/bin/berth-monitor";
        let maps = [
            "00400000-00401000 r--p 00000000 fd:01 42                                 /usr/bin/berth-monitor",
            "00401000-004a2000 r-xp 00001000 fd:01 42                                 /usr/bin/berth-monitor",
            "004a2000-004d0000 rw-p 000a2000 fd:01 42                                 /usr/bin/berth-monitor",
            "7f0000000000-7f0000021000 r-xp 00000000 fd:01 7                          /usr/lib/libc.so.6",
        ];
        let found: Vec<_> = maps
            .iter()
            .filter_map(|l| parse_text_line(l, exe))
            .collect();
        assert_eq!(found, vec![(0x401000, 0xa1000)]);
        // The test binary itself has one.
        assert!(text_mapping().is_some());
    }
}
