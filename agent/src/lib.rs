//! `wattwise_agent`: the native wattwise agent as a library.
//!
//! The parts, from the GPUs up:
//! - [`nvml`]: the GPUs through NVML: the [`nvml::gpu::Gpus`] trait and its real
//!   backend, which GPUs a job uses ([`nvml::selection`]), who owns them
//!   ([`nvml::ownership`], [`nvml::limits`]) and their energy
//!   ([`nvml::energy_meter`]).
//! - [`run`]: one recurrence of a training job: the command's process group
//!   ([`run::child`]), its events ([`run::events`]), the power limit driver
//!   ([`run::driver`]), the session's decisions ([`run::session`]) and the link to
//!   a run across hosts ([`run::multihost`]).
//! - [`client`]: the endpoint's HTTP client and the reporter's spool.
//! - [`log`]: the agent's log on stderr.
//! - [`commands`]: one module per subcommand of the `wattwise` binary, each
//!   parsing its flags and calling the parts above.

pub mod client;
pub mod commands;
pub mod log;
pub mod nvml;
pub mod run;
