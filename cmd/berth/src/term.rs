//! The local terminal for `exec -t` and `attach`: raw mode (restored on every way out), its size,
//! and docker's detach keys.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::Context;
use nix::sys::termios::{self, SetArg, Termios};

/// The terminal in raw mode while this lives: keys go to the remote terminal as typed (Ctrl-C
/// included, so it interrupts the remote command, not berth), and the remote terminal's output is
/// shown as it is. Dropping it restores the settings, so an error or a panic (which unwinds through
/// the drop) leaves no unusable shell behind.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal into raw mode.
    pub fn enable() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("putting the terminal into raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // TCSADRAIN: output already written is shown under the raw settings it was written for.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The size (columns, rows) of the terminal on stdin or, failing that, stdout.
pub fn size() -> Option<(u16, u16)> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    [stdin.as_fd(), stdout.as_fd()]
        .into_iter()
        .find_map(size_of)
}

fn size_of(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    if !fd.is_terminal() {
        return None;
    }
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass, on a descriptor we borrow.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Whether stdin is a terminal (then `-t` puts it into raw mode).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

const CTRL_P: u8 = 0x10;
const CTRL_Q: u8 = 0x11;

/// Docker's detach keys, Ctrl-P Ctrl-Q, looked for in what is typed. A Ctrl-P is held back until the
/// next key shows whether it starts the sequence; if not, it is sent on with that key.
#[derive(Debug, Default)]
pub struct DetachKeys {
    pending: bool,
}

impl DetachKeys {
    /// Filters a chunk of input: the bytes to send on, and whether the keys were pressed (what
    /// follows them is dropped: the session ends).
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + 1);
        for &b in input {
            if self.pending {
                self.pending = false;
                if b == CTRL_Q {
                    return (out, true);
                }
                out.push(CTRL_P);
            }
            if b == CTRL_P {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_found_across_chunks_and_other_keys_pass() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.filter(b"ls\r"), (b"ls\r".to_vec(), false));
        // A Ctrl-P alone waits for the next key...
        assert_eq!(keys.filter(&[CTRL_P]), (vec![], false));
        // ...which, if it is not Ctrl-Q, goes with it.
        assert_eq!(keys.filter(b"a"), (vec![CTRL_P, b'a'], false));
        assert_eq!(keys.filter(&[CTRL_P, CTRL_P]), (vec![CTRL_P], false));
        assert_eq!(keys.filter(&[CTRL_Q, b'x']), (vec![], true));
        let mut keys = DetachKeys::default();
        assert_eq!(
            keys.filter(&[b'x', CTRL_P, CTRL_Q, b'y']),
            (vec![b'x'], true)
        );
    }
}
