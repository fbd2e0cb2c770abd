//! Power limit safety shared by the commands: where the agent keeps its state, and
//! the restoring of limits a killed run left (per GPU, see [`crate::nvml::ownership`]).

use std::path::{Path, PathBuf};

use crate::log::log;
use crate::nvml::gpu::Gpus;
use crate::nvml::ownership::{recover_dead, OwnershipError};

/// Environment variable naming the agent's state directory.
pub const STATE_DIR_ENV: &str = "WATTWISE_STATE_DIR";

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

/// For commands that only read the GPUs (`gpus`, `measure`): restores the limits
/// of runs that were killed before they could, and leaves live runs' GPUs alone.
pub fn recover_unless_busy(gpus: &mut dyn Gpus, dir: &Path) -> Result<(), OwnershipError> {
    let restored = recover_dead(gpus, dir)?;
    if !restored.is_empty() {
        log(format!(
            "restored the power limits a killed run left: {restored:?} (gpu, mW)"
        ));
    }
    Ok(())
}
