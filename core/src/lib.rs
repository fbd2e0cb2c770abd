//! wattwise-core: every decision wattwise makes, with no I/O.
//!
//! The crate never reads a clock, a file, the network or an OS random source.
//! Hosts pass the current time (`now_ms`, Unix milliseconds) and entropy in, and
//! store the [`job::JobState`] documents that come out.
//!
//! Layout, from data to decisions to the call surface:
//! - [`cost`]: the Zeus cost of a run.
//! - [`job`]: job parameters, their validation, and the job document.
//! - [`trial`]: trials, their type, status and result.
//! - [`explore`]: pruning exploration over batch sizes.
//! - [`bandit`]: Gaussian Thompson sampling over the surviving batch sizes.
//! - [`optimizer`]: register / predict / report / end over a job document.
//! - [`policy`]: which batch size policy a job runs (Zeus's, or wattwise's).
//! - [`multihost`]: runs across hosts: joining, combining, one power limit, host timeouts.
//! - [`power`]: the power limit optimizer state machine.
//! - [`api`]: Zeus's routes as request and response types, and pure call functions.
//! - [`service`]: the HTTP service every host runs, over a store trait.
//! - [`sim`]: traces, the synthetic workload, the simulator and its baselines.

pub mod api;
pub mod bandit;
pub mod cost;
pub mod explore;
pub mod job;
pub mod multihost;
pub mod openapi;
pub mod optimizer;
pub mod policy;
pub mod power;
pub mod rng;
pub mod service;
pub mod sim;
pub mod trial;
