//! `wattwise_agent`: the native wattwise agent as a library, under the `wattwise`
//! binary's subcommands.
//!
//! The parts, from the GPUs up:
//! - [`nvml`]: the GPUs through NVML: the [`nvml::gpu::Gpus`] trait and its real
//!   backend, which GPUs a job uses ([`nvml::selection`]), who owns them
//!   ([`nvml::ownership`], [`nvml::limits`]), their energy
//!   ([`nvml::energy_meter`], whose [`nvml::energy_meter::Stopwatch`] measures
//!   any span of time) and what `wattwise gpus` shows ([`nvml::inventory`]).
//! - [`run`]: a command under wattwise: its process group ([`run::child`]), the
//!   one wait loop ([`run::watch`]), its measurement ([`run::measurement`]), and
//!   one recurrence of a training job: its events ([`run::events`]), the job
//!   file ([`run::job_file`]), the power limit driver ([`run::driver`]), the
//!   session's decisions ([`run::decisions`]) and the session that carries them
//!   out ([`run::session`]), the link to a run across hosts ([`run::multihost`])
//!   and the reporter's spools ([`run::spools`]).
//! - [`client`]: the endpoint's HTTP client and the reporter.
//! - [`exporter`]: Prometheus metrics of the GPUs and of the run in progress.
//! - [`log`]: the agent's log on stderr.
//! - [`sim_text`]: the simulator's reports as `wattwise simulate` prints them.
//! - [`commands`]: one module per subcommand of the `wattwise` binary, each
//!   parsing its flags and calling the parts above.

pub mod client;
pub mod commands;
pub mod exporter;
pub mod log;
pub mod nvml;
pub mod run;
pub mod sim_text;
