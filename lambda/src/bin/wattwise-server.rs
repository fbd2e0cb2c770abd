//! The local wattwise server: the same service as the Lambda function, over an
//! embedded SQLite file, with the what-if page served from a directory.
//!
//! `wattwise-server --listen 127.0.0.1:8080 --db wattwise.db [--web web/dist]`;
//! `WATTWISE_TOKEN` set means every API route but /healthz needs that bearer token
//! (the page's static files are public). SIGTERM or SIGINT drains it: no new
//! connections, the requests in flight finish (at most `--drain-timeout`), exit 0.
//! The agent's `wattwise serve` is the same server with the page built in.

// A `pub` item is API: what no one outside can reach is `pub(crate)` (CI runs
// clippy with `-D warnings`, so this is enforced).
#![warn(unreachable_pub)]

use clap::Parser;
use wattwise_lambda::local::{run, LocalArgs};

/// wattwise's endpoint on one machine (SQLite store).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    local: LocalArgs,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse().local, None) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wattwise-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
