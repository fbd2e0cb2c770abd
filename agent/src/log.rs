//! The agent's log: one line per event worth a reader's attention, on stderr,
//! each marked `[wattwise]` so it stands apart from the training command's output.

/// Writes one line of the agent's log to stderr.
pub fn log(msg: impl AsRef<str>) {
    eprintln!("[wattwise] {}", msg.as_ref());
}
