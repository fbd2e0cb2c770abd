//! The event protocol between the training script and the agent.
//!
//! The script appends one line per event to the file named by `WATTWISE_EVENTS`:
//! `step_begin`, `step_end`, or `epoch_end <metric>`. The agent tails the file,
//! woken by inotify as soon as a line is written (with a timeout so that it also
//! notices the command exiting and signals).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// One event from the training script.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A training step begins.
    StepBegin,
    /// A training step ends.
    StepEnd,
    /// An epoch ended with this validation metric.
    EpochEnd(f64),
}

/// Why a line is not an event.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("event line {line:?}: {rule}")]
pub struct BadEvent {
    /// The line (truncated to 80 bytes).
    pub line: String,
    /// What is expected.
    pub rule: &'static str,
}

/// Parses one line of the protocol (surrounding whitespace ignored).
pub fn parse_line(line: &str) -> Result<Event, BadEvent> {
    let bad = |rule| BadEvent {
        line: line.chars().take(80).collect(),
        rule,
    };
    let mut words = line.split_whitespace();
    let event = match words.next() {
        Some("step_begin") => Event::StepBegin,
        Some("step_end") => Event::StepEnd,
        Some("epoch_end") => {
            let metric: f64 = words
                .next()
                .ok_or_else(|| bad("epoch_end needs the metric: `epoch_end <number>`"))?
                .parse()
                .map_err(|_| bad("the metric of epoch_end must be a number"))?;
            if !metric.is_finite() {
                return Err(bad("the metric of epoch_end must be finite"));
            }
            Event::EpochEnd(metric)
        }
        _ => return Err(bad("expected step_begin, step_end or epoch_end <metric>")),
    };
    if words.next().is_some() {
        return Err(bad("unexpected text after the event"));
    }
    Ok(event)
}

/// Longest line kept; the rest of a longer one is skipped, and the line is a bad
/// event.
const MAX_LINE: usize = 4096;

/// Splits bytes into complete lines, keeping a partial last line for later.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: Vec<u8>,
    /// Whether the partial line is longer than [`MAX_LINE`].
    overlong: bool,
}

impl LineBuffer {
    /// Adds bytes; returns the complete lines (a line longer than 4 KiB as
    /// its beginning with a note that no event parses).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = String::from_utf8_lossy(&self.partial).into_owned();
                if self.overlong {
                    line.push_str(&format!(" [cut: longer than {MAX_LINE} bytes]"));
                }
                lines.push(line);
                self.partial.clear();
                self.overlong = false;
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            } else {
                self.overlong = true;
            }
        }
        lines
    }
}

/// Bytes read from the file per call at most: a call returns at most this many
/// lines, so the agent's memory stays bounded however fast the script writes.
const BATCH: usize = 64 * 1024;

/// Follows a file as it grows, one bounded batch of lines per call.
pub struct Tail {
    file: File,
    inotify: Option<OwnedFd>,
    lines: LineBuffer,
    buf: Vec<u8>,
    /// Whether the last read reached the end of the file.
    caught_up: bool,
}

impl Tail {
    /// Creates (or truncates) `path` and starts following it.
    pub fn create(path: &Path) -> std::io::Result<Tail> {
        std::fs::write(path, b"")?;
        let file = File::open(path)?;
        Ok(Tail {
            file,
            inotify: watch(path),
            lines: LineBuffer::default(),
            buf: vec![0; BATCH],
            caught_up: true,
        })
    }

    /// Whether every byte written so far has been read (the last call reached the
    /// end of the file); when not, the next call returns more lines at once.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Returns the next complete lines written (from one read of at most 64 KiB),
    /// waiting up to `timeout` for the first one unless more is pending; returns
    /// early on a signal or when `also` (e.g. the command's exit descriptor)
    /// becomes readable.
    pub fn next_lines(
        &mut self,
        timeout: Duration,
        also: Option<RawFd>,
    ) -> std::io::Result<Vec<String>> {
        let lines = self.read_available()?;
        if !lines.is_empty() || timeout.is_zero() || !self.caught_up {
            return Ok(lines);
        }
        let mut fds: Vec<RawFd> = also.into_iter().collect();
        match &self.inotify {
            Some(fd) => {
                fds.push(fd.as_raw_fd());
                crate::run::child::wait_readable(&fds, timeout);
                // Drain the notifications; their content does not matter.
                let mut scratch = [0u8; 4096];
                // SAFETY: reading into a local buffer from a non-blocking fd.
                unsafe {
                    while libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) > 0
                    {
                    }
                }
            }
            None => crate::run::child::wait_readable(&fds, timeout.min(Duration::from_millis(10))),
        }
        self.read_available()
    }

    /// One read: the complete lines it finishes (a short read is the end of the
    /// file, as regular files read).
    fn read_available(&mut self) -> std::io::Result<Vec<String>> {
        let n = loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.caught_up = n < self.buf.len();
        Ok(self.lines.push(&self.buf[..n]))
    }
}

/// An inotify descriptor watching `path` for writes (`None` when inotify is
/// unavailable: the tail then polls every 10 ms).
fn watch(path: &Path) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls; the fd is owned right away.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let owned = OwnedFd::from_raw_fd(fd);
        if libc::inotify_add_watch(fd, cpath.as_ptr(), libc::IN_MODIFY) < 0 {
            return None;
        }
        Some(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_the_protocol() {
        assert_eq!(parse_line("step_begin"), Ok(Event::StepBegin));
        assert_eq!(parse_line("  step_end \r"), Ok(Event::StepEnd));
        assert_eq!(parse_line("epoch_end 0.75"), Ok(Event::EpochEnd(0.75)));
        assert_eq!(parse_line("epoch_end -3e2"), Ok(Event::EpochEnd(-300.0)));
        for bad in [
            "",
            "step",
            "epoch_end",
            "epoch_end x",
            "epoch_end nan",
            "epoch_end inf",
            "step_begin now",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(500);
        assert_eq!(parse_line(&long).unwrap_err().line.len(), 80);
    }

    #[test]
    fn line_buffer_keeps_partial_lines() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"step_be"), Vec::<String>::new());
        assert_eq!(
            b.push(b"gin\nstep_end\nepo"),
            vec!["step_begin", "step_end"]
        );
        assert_eq!(b.push(b"ch_end 1\n"), vec!["epoch_end 1"]);
        // A line beyond the cap is a bad event, even when it begins as a good one.
        let mut huge = b"step_begin".to_vec();
        huge.resize(MAX_LINE * 2, b' ');
        b.push(&huge);
        let cut = b.push(b"\nstep_end\n");
        assert!(cut[0].len() < MAX_LINE + 40, "{}", cut[0].len());
        assert!(parse_line(&cut[0]).is_err());
        assert_eq!(cut[1], "step_end");
    }

    #[test]
    fn tail_wakes_on_append() {
        let path = std::env::temp_dir().join(format!("wattwise-tail-{}", std::process::id()));
        let mut tail = Tail::create(&path).unwrap();
        assert!(tail
            .next_lines(Duration::from_millis(10), None)
            .unwrap()
            .is_empty());
        let p2 = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut f = std::fs::OpenOptions::new().append(true).open(p2).unwrap();
            f.write_all(b"step_begin\nepoch_end 2\n").unwrap();
        });
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        while got.len() < 2 && t.elapsed() < Duration::from_secs(5) {
            got.extend(tail.next_lines(Duration::from_secs(5), None).unwrap());
        }
        writer.join().unwrap();
        assert_eq!(got, vec!["step_begin", "epoch_end 2"]);
        assert!(t.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn tail_returns_a_big_backlog_in_bounded_batches_without_waiting() {
        let path = std::env::temp_dir().join(format!("wattwise-tail-big-{}", std::process::id()));
        let mut tail = Tail::create(&path).unwrap();
        // 1 MiB of 2-byte lines: 16 batches of at most 32768 lines each.
        let total = 512 * 1024;
        std::fs::write(&path, b"x\n".repeat(total)).unwrap();
        let t = std::time::Instant::now();
        let (mut got, mut calls) = (0, 0);
        loop {
            let lines = tail.next_lines(Duration::from_secs(5), None).unwrap();
            assert!(lines.len() <= BATCH / 2, "{}", lines.len());
            got += lines.len();
            calls += 1;
            if tail.caught_up() {
                break;
            }
        }
        assert_eq!(got, total);
        assert!(calls >= total * 2 / BATCH, "{calls}");
        // Never waited for a wake-up while lines were pending.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let _ = std::fs::remove_file(path);
    }
}
