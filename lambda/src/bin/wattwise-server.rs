//! The local wattwise server: the same service as the Lambda function, over an
//! embedded SQLite file, with the what-if page served from a directory.
//!
//! `wattwise-server --listen 127.0.0.1:8080 --db wattwise.db [--web web/dist]`;
//! `WATTWISE_TOKEN` set means every API route but /healthz needs that bearer token
//! (the page's static files are public). SIGTERM or SIGINT drains it: no new
//! connections, the requests in flight finish (at most `--drain-timeout`), exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use wattwise_core::service::{Service, ServiceConfig};
use wattwise_lambda::server::{router, serve, App, Limits};
use wattwise_lambda::sqlite::SqliteStore;
use wattwise_lambda::{config_from_env, init_tracing};

/// Job documents read at a time while a page of the job list is made.
const LIST_BATCH: usize = 16;

/// wattwise's endpoint on one machine (SQLite store).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The SQLite database file (created if missing).
    #[arg(long, default_value = "wattwise.db")]
    db: PathBuf,
    /// A directory of static files served at / for paths that are not API routes.
    #[arg(long)]
    web: Option<PathBuf>,
    /// Open connections at most (more wait in the listen backlog).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a request's head may take to arrive (also the wait for the next
    /// request on a kept-alive connection).
    #[arg(long, default_value_t = Limits::default().header_read.as_secs())]
    header_timeout: u64,
    /// Seconds a connection may stay without a byte either way.
    #[arg(long, default_value_t = Limits::default().idle.as_secs())]
    idle_timeout: u64,
    /// Seconds a request's body may take to arrive (408 after).
    #[arg(long, default_value_t = Limits::default().body_read.as_secs())]
    body_timeout: u64,
    /// Heavy reads (trials exports, job lists) at once at most; more get 503 with
    /// Retry-After (default: the number of CPUs, 2 to 16).
    #[arg(long, default_value_t = Limits::default().max_heavy_reads)]
    max_heavy_reads: usize,
    /// Seconds the requests in flight are waited for on SIGTERM or SIGINT.
    #[arg(long, default_value_t = Limits::default().drain.as_secs())]
    drain_timeout: u64,
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), whichever comes first.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}

/// Raises the soft limit on open files to the hard one; returns the limit in force.
fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the calls read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing(false);
    let args = Args::parse();
    // The local server reads the job list a few documents at a time (bounded memory).
    let config = ServiceConfig {
        list_batch: LIST_BATCH,
        ..config_from_env()
    };
    let store =
        SqliteStore::open(&args.db).map_err(|e| format!("--db {}: {e}", args.db.display()))?;
    if let Some(web) = &args.web {
        if !web.is_dir() {
            return Err(format!("--web {}: not a directory", web.display()).into());
        }
    }
    let max_body = config.max_body_bytes;
    let auth = config.token.is_some();
    let app = Arc::new(
        App::new(Service::new(store, config), max_body, args.web.clone())
            .with_body_timeout(Duration::from_secs(args.body_timeout))
            .with_max_heavy_reads(args.max_heavy_reads),
    );
    // Leave room for the database's files and the process's own.
    let files = raise_file_limit();
    let max_connections = args
        .max_connections
        .min(files.saturating_sub(64).max(1) as usize);
    let limits = Limits {
        max_connections,
        header_read: Duration::from_secs(args.header_timeout.max(1)),
        idle: Duration::from_secs(args.idle_timeout.max(1)),
        body_read: Duration::from_secs(args.body_timeout.max(1)),
        max_heavy_reads: args.max_heavy_reads.max(1),
        drain: Duration::from_secs(args.drain_timeout),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        db = %args.db.display(),
        web = ?args.web,
        auth,
        max_connections,
        "wattwise-server listening"
    );
    serve(listener, router(app), limits, stop_signal()).await;
    Ok(())
}
