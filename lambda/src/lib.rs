//! wattwise endpoint hosts: the Lambda function and the local server.
//!
//! Both are thin: they turn their HTTP request into a
//! [`wattwise_core::service::Request`], call [`wattwise_core::service::Service::handle`]
//! with their store and a [`SystemEnv`] (system clock, OS entropy, tokio timer), and
//! turn the [`wattwise_core::service::Response`] back. Every decision is the core's.
//!
//! - [`sqlite`]: the local server's store (an embedded SQLite file).
//! - `dynamo`: the Lambda function's store (a DynamoDB table); feature `lambda`.
//! - [`exchange`]: the request head and the logged response both hosts share.
//! - [`server`]: the local HTTP server (axum on tokio), optionally serving the web page.
//! - [`local`]: the local server as a command (`wattwise-server`, `wattwise serve`).
//! - `function`: the Lambda handler over `lambda_http`; feature `lambda` (default).

// A `pub` item is API: what no one outside can reach is `pub(crate)` (CI runs
// clippy with `-D warnings`, so this is enforced).
#![warn(unreachable_pub)]

#[cfg(feature = "lambda")]
pub mod dynamo;
pub mod exchange;
#[cfg(feature = "lambda")]
pub mod function;
pub mod local;
pub mod server;
pub mod sqlite;

use wattwise_core::service::{HostEnv, ServiceConfig};

/// The host environment of the native hosts: system clock, OS entropy, tokio sleep.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnv;

impl HostEnv for SystemEnv {
    fn now_ms(&mut self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn entropy(&mut self) -> u64 {
        let mut buf = [0u8; 8];
        if getrandom::getrandom(&mut buf).is_err() {
            // The OS source failing is not expected; fall back to the clock's nanoseconds
            // mixed with the address of a stack value rather than panicking.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let addr = &buf as *const _ as u64;
            return nanos ^ addr.rotate_left(32);
        }
        u64::from_le_bytes(buf)
    }

    async fn backoff(&mut self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// The service settings from the environment: `WATTWISE_TOKEN` (bearer token; unset
/// or empty means no auth), 64 KiB body limit, the core's default retry bound.
pub fn config_from_env() -> ServiceConfig {
    let token = std::env::var("WATTWISE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    ServiceConfig {
        token,
        ..ServiceConfig::default()
    }
}

/// Installs the `tracing` subscriber: the `WATTWISE_LOG` filter, else `RUST_LOG`
/// (default `info`; `debug` logs every request with its time), compact lines (JSON
/// when `json` is set, for CloudWatch).
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WATTWISE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if json {
        builder.json().without_time().try_init()
    } else {
        builder.try_init()
    };
}
