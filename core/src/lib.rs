//! wattwise-core: every decision wattwise makes, with no I/O.
//!
//! The crate never reads a clock, a file, the network or an OS random source.
//! Hosts pass the current time (`now_ms`, Unix milliseconds) and entropy in, and
//! store the [`job::JobState`] documents that come out.
//!
//! Layout, in layers: a module imports only modules of the layers above it (or
//! earlier in its own layer), never one that imports it back
//! (`.ci/check-module-dag.py` checks this on every test run).
//! 1. Leaves: [`field_error`] (the one "field: rule" error), [`cost`] (the Zeus cost
//!    of a run), [`retry`] (one back-off policy), [`rng`], [`trial`] (trials, their type, status and result),
//!    [`policy`] (which batch size policy a job runs), [`spec`] (job parameters and
//!    their validation), [`wire`] (the routes' request and response types).
//! 2. Algorithms: [`bandit`] (Gaussian Thompson sampling), [`explore`] (pruning
//!    exploration), [`policy::wattwise`] (wattwise's batch size policy), [`power`]
//!    (the power limit optimizer state machine).
//! 3. The document and its transitions: [`runs`] (runs across hosts, as the
//!    document keeps them), [`job`] (the job document), [`optimizer`] (register /
//!    predict / report / end over it).
//! 4. Calls: [`api`] (one pure function per route, and the errors' HTTP statuses),
//!    [`multihost`] (runs across hosts: joining, combining, one power limit, host
//!    timeouts), [`listing`] (the job list's summaries and pages).
//! 5. Hosting: [`route`] (the route table), [`openapi`] (its document), [`export`]
//!    (the trials export, written in chunks from the archive's pages), [`service`]
//!    (the store contract and the HTTP service every host runs), [`store_contract`]
//!    (the suite every store runs; feature `store-contract`).
//! 6. [`sim`]: traces, the synthetic workload, the simulator and its baselines.

pub mod api;
pub mod bandit;
pub mod cost;
pub mod explore;
pub mod export;
pub mod field_error;
pub mod job;
pub mod listing;
pub mod multihost;
pub mod openapi;
pub mod optimizer;
pub mod policy;
pub mod power;
pub mod retry;
pub mod rng;
pub mod route;
pub mod runs;
pub mod service;
pub mod sim;
pub mod spec;
pub mod store;
#[cfg(any(test, feature = "store-contract"))]
pub mod store_contract;
pub mod trial;
pub mod wire;
