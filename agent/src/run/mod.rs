//! One recurrence of a training job under wattwise: the command's process group,
//! its events, the power limit driver, the session's decisions, the job file and
//! the link to a run across hosts.

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
