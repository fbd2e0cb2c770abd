//! Power limit safety: the limits found at start are written to a small state file
//! before any is changed, restored on every exit path, and restored from the file by
//! the next start when the agent was killed (SIGKILL) before it could.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gpu::{GpuError, Gpus};

/// Environment variable naming the agent's state directory.
pub const STATE_DIR_ENV: &str = "WATTWISE_STATE_DIR";
/// File name of the saved limits inside the state directory.
pub const LIMITS_FILE: &str = "power-limits.json";

/// What can go wrong keeping the limits safe.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The state file could not be read or written.
    #[error("power limit state file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another live agent owns the limits.
    #[error("another wattwise agent (pid {pid}) is managing the GPU power limits (state file {path}); wait for it to end")]
    Busy {
        /// Its pid.
        pid: u32,
        /// The file.
        path: PathBuf,
    },
    /// NVML failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// The state file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedLimits {
    /// The agent that wrote it.
    pub pid: u32,
    /// `(gpu index, limit mW)` found at start.
    pub limits: Vec<(u32, u32)>,
}

/// The state directory: `WATTWISE_STATE_DIR`, else `$XDG_STATE_HOME/wattwise`,
/// else `~/.local/state/wattwise`, else `/tmp/wattwise-<uid>`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("wattwise");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/wattwise");
    }
    // SAFETY: getuid has no preconditions.
    PathBuf::from(format!("/tmp/wattwise-{}", unsafe { libc::getuid() }))
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> LimitError {
    LimitError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Restores the limits a previous agent left in `dir` (it was killed before it
/// could), then removes the file. Returns what was restored.
pub fn recover(gpus: &mut dyn Gpus, dir: &Path) -> Result<Vec<(u32, u32)>, LimitError> {
    let path = dir.join(LIMITS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(&path, e)),
    };
    let saved: SavedLimits = serde_json::from_slice(&bytes).map_err(|e| file_err(&path, e))?;
    if saved.pid != std::process::id() && pid_alive(saved.pid) {
        return Err(LimitError::Busy {
            pid: saved.pid,
            path,
        });
    }
    for &(index, limit) in &saved.limits {
        gpus.set_power_limit(index, limit)?;
    }
    std::fs::remove_file(&path).map_err(|e| file_err(&path, e))?;
    Ok(saved.limits)
}

/// [`recover`] for commands that only read the GPUs (`gpus`, `measure`): a live
/// agent owning the limits is fine for them.
pub fn recover_unless_busy(gpus: &mut dyn Gpus, dir: &Path) -> Result<(), LimitError> {
    match recover(gpus, dir) {
        Ok(_) | Err(LimitError::Busy { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The limits found at start, saved on disk until restored.
#[derive(Debug)]
pub struct LimitGuard {
    path: PathBuf,
    limits: Vec<(u32, u32)>,
    restored: bool,
}

impl LimitGuard {
    /// Reads the current limits of `indices` and writes them to the state file
    /// (atomically) before anything changes them.
    pub fn save(gpus: &dyn Gpus, indices: &[u32], dir: &Path) -> Result<LimitGuard, LimitError> {
        let mut limits = Vec::with_capacity(indices.len());
        for &i in indices {
            limits.push((i, gpus.power_limit(i)?));
        }
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let path = dir.join(LIMITS_FILE);
        let saved = SavedLimits {
            pid: std::process::id(),
            limits: limits.clone(),
        };
        let tmp = dir.join(format!("{LIMITS_FILE}.{}", std::process::id()));
        let body = serde_json::to_vec(&saved).map_err(|e| file_err(&tmp, e))?;
        std::fs::write(&tmp, body).map_err(|e| file_err(&tmp, e))?;
        if let Ok(f) = std::fs::File::open(&tmp) {
            let _ = f.sync_all();
        }
        std::fs::rename(&tmp, &path).map_err(|e| file_err(&path, e))?;
        Ok(LimitGuard {
            path,
            limits,
            restored: false,
        })
    }

    /// The limits found at start.
    pub fn original(&self) -> &[(u32, u32)] {
        &self.limits
    }

    /// Sets every GPU back to its limit found at start and removes the state file.
    /// Tries every GPU even when one fails; the file stays when any failed, so the
    /// next start tries again.
    pub fn restore(&mut self, gpus: &mut dyn Gpus) -> Result<(), LimitError> {
        if self.restored {
            return Ok(());
        }
        let mut first_err = None;
        for &(index, limit) in &self.limits {
            let current = gpus.power_limit(index);
            if current.as_ref().ok() == Some(&limit) {
                continue;
            }
            if let Err(e) = gpus.set_power_limit(index, limit) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }
        self.restored = true;
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(file_err(&self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::fake::FakeGpus;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wattwise-limits-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn guard_saves_then_restores_and_removes_the_file() {
        let dir = tmpdir("guard");
        let mut g = FakeGpus::new(2);
        g.gpus[1].limit_mw = 250_000;
        let mut guard = LimitGuard::save(&g, &[0, 1], &dir).unwrap();
        assert!(dir.join(LIMITS_FILE).exists());
        g.set_power_limit(0, 150_000).unwrap();
        g.set_power_limit(1, 150_000).unwrap();
        guard.restore(&mut g).unwrap();
        assert_eq!(g.gpus[0].limit_mw, 300_000);
        assert_eq!(g.gpus[1].limit_mw, 250_000);
        assert!(!dir.join(LIMITS_FILE).exists());
        // Idempotent.
        let sets = g.sets.len();
        guard.restore(&mut g).unwrap();
        assert_eq!(g.sets.len(), sets);
    }

    #[test]
    fn recover_restores_what_a_killed_agent_left() {
        let dir = tmpdir("recover");
        std::fs::create_dir_all(&dir).unwrap();
        // A dead pid: 0 is never alive for us.
        let saved = SavedLimits {
            pid: 0,
            limits: vec![(0, 280_000)],
        };
        std::fs::write(dir.join(LIMITS_FILE), serde_json::to_vec(&saved).unwrap()).unwrap();
        let mut g = FakeGpus::new(1);
        g.gpus[0].limit_mw = 120_000;
        assert_eq!(recover(&mut g, &dir).unwrap(), vec![(0, 280_000)]);
        assert_eq!(g.gpus[0].limit_mw, 280_000);
        assert!(!dir.join(LIMITS_FILE).exists());
        assert!(recover(&mut g, &dir).unwrap().is_empty());
    }

    #[test]
    fn recover_refuses_while_the_owner_lives() {
        let dir = tmpdir("busy");
        std::fs::create_dir_all(&dir).unwrap();
        // pid 1 is always alive.
        let saved = SavedLimits {
            pid: 1,
            limits: vec![(0, 280_000)],
        };
        std::fs::write(dir.join(LIMITS_FILE), serde_json::to_vec(&saved).unwrap()).unwrap();
        let mut g = FakeGpus::new(1);
        assert!(matches!(
            recover(&mut g, &dir),
            Err(LimitError::Busy { pid: 1, .. })
        ));
        recover_unless_busy(&mut g, &dir).unwrap();
        assert!(g.sets.is_empty());
        assert!(dir.join(LIMITS_FILE).exists());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tmpdir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LIMITS_FILE), b"{nope").unwrap();
        let mut g = FakeGpus::new(1);
        let err = recover(&mut g, &dir).unwrap_err().to_string();
        assert!(err.contains(LIMITS_FILE), "{err}");
    }

    #[test]
    fn a_denied_restore_keeps_the_file() {
        let dir = tmpdir("denied");
        let mut g = FakeGpus::new(1);
        let mut guard = LimitGuard::save(&g, &[0], &dir).unwrap();
        g.gpus[0].limit_mw = 200_000;
        g.deny = true;
        assert!(guard.restore(&mut g).is_err());
        assert!(dir.join(LIMITS_FILE).exists());
    }
}
