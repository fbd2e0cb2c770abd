//! wattwise in WebAssembly: browser bindings and the Cloudflare Worker entry.
//!
//! The two are separate features so that neither artifact carries the other:
//! - `worker`: the Cloudflare Worker (the `worker` module, private: its only surface is
//!   the `fetch` export and the `JobObject` Durable Object class), built with
//!   `wasm/build-worker.sh`;
//! - `browser`: the page's bindings (`browser` module).

#[cfg(any(test, feature = "worker"))]
mod job_lock;
#[cfg(feature = "worker")]
mod worker;

#[cfg(feature = "browser")]
pub mod browser;
