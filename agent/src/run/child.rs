//! The wrapped command: started in its own process group, stopped by group
//! (SIGTERM, then SIGKILL after a grace period), and the agent's own SIGINT /
//! SIGTERM turned into a flag the main loop polls. The wait loop
//! ([`crate::run::watch`]) sees a command as a [`Process`]: a [`Group`] here, a
//! scripted fake in unit tests.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The last termination signal the agent received (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to [`signalled`] instead of killing the agent,
/// so that it can stop the command and restore the power limits first.
pub fn catch_termination_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The termination signal received, if any.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A descriptor that becomes readable when `child` exits (Linux pidfd; `None` on
/// kernels without it, where callers fall back to their timeout).
fn exit_fd(child: &Child) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags; the fd is owned right away.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor we own.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until one of `fds` is readable or `timeout` passes (or a signal comes).
pub fn wait_readable(fds: &[std::os::fd::RawFd], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    if pfds.is_empty() {
        std::thread::sleep(timeout);
        return;
    }
    // SAFETY: a valid array of pollfds.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

/// CPU time this process (all its threads) has used so far, seconds.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The most memory this process has held resident so far (`VmHWM`), KiB.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A command the agent waits for: whether it ended, a descriptor readable at
/// its end, and how to stop it.
pub trait Process {
    /// Its status if it ended (and is reaped), without blocking.
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>>;
    /// Stops it (SIGTERM, then SIGKILL after `grace`); its status.
    fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus>;
    /// A descriptor that becomes readable when it ends, where there is one.
    fn exit_fd(&self) -> Option<RawFd>;
}

/// A command started in its own process group (see [`Group::spawn`]), with the
/// descriptor of its end.
#[derive(Debug)]
pub struct Group {
    child: Child,
    exit_fd: Option<OwnedFd>,
}

impl Group {
    /// Starts `argv` in a new process group with extra environment variables.
    pub fn spawn(argv: &[String], env: &[(String, String)]) -> std::io::Result<Group> {
        let child = spawn(argv, env)?;
        let exit_fd = exit_fd(&child);
        Ok(Group { child, exit_fd })
    }

    /// The process group's id (its leader's pid).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Process for Group {
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        stop_group(&mut self.child, grace)
    }

    fn exit_fd(&self) -> Option<RawFd> {
        self.exit_fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Waits until `process` ends or `timeout` passes (or a signal comes); without
/// a descriptor of its end, for 50 ms at most.
pub fn wait_for(process: &dyn Process, timeout: Duration) {
    match process.exit_fd() {
        Some(fd) => wait_readable(&[fd], timeout),
        None => std::thread::sleep(timeout.min(Duration::from_millis(50))),
    }
}

/// Starts `argv` in a new process group with extra environment variables.
fn spawn(argv: &[String], env: &[(String, String)]) -> std::io::Result<Child> {
    let (program, args) = argv.split_first().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no command given after --",
        )
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args).process_group(0);
    // The agent may hold CAP_SYS_ADMIN as an ambient capability (systemd unit);
    // the training command must not inherit it.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
}

fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; a negative pid targets the group.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

/// Whether any live (not zombie) process of group `pgid` still exists. Zombies
/// count as gone: their parent may be a PID 1 that never reaps them.
pub fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks existence.
    if unsafe { libc::kill(-(pgid as i32), 0) } != 0 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|v| v.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

/// Stops process group `pgid`: SIGTERM, then SIGKILL once `grace` passed with a
/// process of it still alive. `reaped` says whether the group's leader is gone
/// (polled meanwhile, so that the agent, its parent, reaps it).
fn stop(
    pgid: u32,
    grace: Duration,
    mut reaped: impl FnMut() -> std::io::Result<bool>,
) -> std::io::Result<()> {
    kill_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if reaped()? && !group_alive(pgid) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            kill_group(pgid, libc::SIGKILL);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the command's whole process group: SIGTERM, then SIGKILL after `grace`.
/// Returns the command's exit status.
fn stop_group(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    let mut status = None;
    stop(child.id(), grace, || {
        if status.is_none() {
            status = child.try_wait()?;
        }
        Ok(status.is_some())
    })?;
    match status {
        Some(s) => Ok(s),
        None => child.wait(),
    }
}

/// Stops process group `pgid` as [`Group`]'s [`Process::stop`] does, knowing only its id (the
/// panic path, where the [`Child`] is out of reach).
pub fn stop_group_id(pgid: u32, grace: Duration) {
    // Only the group is polled: the leader's status is not needed.
    let _ = stop(pgid, grace, || Ok(true));
}

/// The exit code the agent ends with for the command's status (a signal `s`
/// gives `128 + s`, as shells do).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// A scripted command for unit tests: no process behind it.
#[cfg(test)]
pub mod fake {
    use super::*;

    /// A command that ends with `code` once asked `polls` times, and appends a
    /// line of `lines` to `events` (when set) each time it is asked before that.
    #[derive(Debug, Default)]
    pub struct FakeProcess {
        /// Times to be asked before it ends.
        pub polls: u32,
        /// Its exit code.
        pub code: i32,
        /// Lines it writes, one per poll, to `events`.
        pub lines: std::collections::VecDeque<String>,
        /// The events file it writes to.
        pub events: Option<std::path::PathBuf>,
        asked: u32,
        stopped: bool,
    }

    impl FakeProcess {
        /// A command that exits with `code` at the `polls`th question.
        pub fn exits_after(polls: u32, code: i32) -> FakeProcess {
            FakeProcess {
                polls,
                code,
                ..FakeProcess::default()
            }
        }

        /// A command that writes `lines` to `events`, one per question, and
        /// exits with `code` at the question that writes the last.
        pub fn writing(events: &std::path::Path, lines: &[String], code: i32) -> FakeProcess {
            FakeProcess {
                code,
                lines: lines.iter().cloned().collect(),
                events: Some(events.to_path_buf()),
                ..FakeProcess::default()
            }
        }

        /// Whether it was stopped.
        pub fn stopped(&self) -> bool {
            self.stopped
        }
    }

    impl Process for FakeProcess {
        fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
            self.asked += 1;
            if let (Some(path), Some(line)) = (&self.events, self.lines.pop_front()) {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
                writeln!(f, "{line}")?;
            }
            Ok(
                (self.asked >= self.polls && self.lines.is_empty() || self.stopped)
                    .then(|| ExitStatus::from_raw(self.code << 8)),
            )
        }

        fn stop(&mut self, _grace: Duration) -> std::io::Result<ExitStatus> {
            self.stopped = true;
            Ok(ExitStatus::from_raw((128 + libc::SIGTERM) << 8))
        }

        fn exit_fd(&self) -> Option<RawFd> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_sets_env_and_reports_the_status() {
        let mut c = spawn(
            &["sh".into(), "-c".into(), "exit $CODE".into()],
            &[("CODE".into(), "7".into())],
        )
        .unwrap();
        assert_eq!(exit_code(c.wait().unwrap()), 7);
        assert!(spawn(&[], &[]).is_err());
    }

    #[test]
    fn stop_group_kills_children_that_ignore_sigterm() {
        // The shell's child ignores SIGTERM; the group is killed after the grace.
        let ready = std::env::temp_dir().join(format!("wattwise-trap-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let mut c = spawn(
            &[
                "sh".into(),
                "-c".into(),
                format!("trap '' TERM; sleep 30 & touch '{}'; wait", ready.display()),
            ],
            &[],
        )
        .unwrap();
        // Wait until the trap is set (the shell says so with the file).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(ready.exists(), "the shell never set its trap");
        let pgid = c.id();
        let t = Instant::now();
        let status = stop_group(&mut c, Duration::from_millis(300)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(exit_code(status), 128 + libc::SIGKILL);
        // The group's last member (the orphaned sleep) is reaped by init: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!group_alive(pgid));
        let _ = std::fs::remove_file(&ready);
    }
}
