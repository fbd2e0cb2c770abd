//! A command under wattwise: its process group, the wait loop and the
//! measurement of `measure`, and one recurrence of a training job (`run`): its
//! events, the job file, the power limit driver, the session's decisions and the
//! session itself, the link to a run across hosts and the reporter's spools.

pub mod child;
pub mod decisions;
pub mod driver;
pub mod events;
pub mod job_file;
pub mod measurement;
pub mod multihost;
pub mod session;
pub mod spools;
pub mod watch;
