//! The local endpoint as a command: its flags ([`LocalArgs`]) and [`run`], which
//! opens the SQLite store and serves the service (and the page, if given) until
//! SIGTERM or SIGINT. Both `wattwise-server` and the agent's `wattwise serve` are
//! this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wattwise_core::service::{Service, ServiceConfig};

use crate::server::{router, serve, App, Limits, Web};
use crate::sqlite::SqliteStore;
use crate::{config_from_env, init_tracing};

/// Job documents read at a time while a page of the job list is made.
const LIST_BATCH: usize = 16;

/// The local endpoint's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalArgs {
    /// Address to listen on (port 0: any free port, logged).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The SQLite database file (created if missing).
    #[arg(long, default_value = "wattwise.db")]
    pub db: PathBuf,
    /// A directory of static files served at / for paths that are not API routes.
    #[arg(long)]
    pub web: Option<PathBuf>,
    /// Open connections at most (more wait in the listen backlog).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a request's head may take to arrive (also the wait for the next
    /// request on a kept-alive connection).
    #[arg(long, default_value_t = Limits::default().header_read.as_secs())]
    pub header_timeout: u64,
    /// Seconds a connection may stay without a byte either way.
    #[arg(long, default_value_t = Limits::default().idle.as_secs())]
    pub idle_timeout: u64,
    /// Seconds a request's body may take to arrive (408 after).
    #[arg(long, default_value_t = Limits::default().body_read.as_secs())]
    pub body_timeout: u64,
    /// Heavy reads (trials exports, job lists) at once at most; more get 503 with
    /// Retry-After (default: the number of CPUs, 2 to 16).
    #[arg(long, default_value_t = Limits::default().max_heavy_reads)]
    pub max_heavy_reads: usize,
    /// Seconds the requests in flight are waited for on SIGTERM or SIGINT.
    #[arg(long, default_value_t = Limits::default().drain.as_secs())]
    pub drain_timeout: u64,
}

/// Why the local endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A flag's value is unusable (names the flag).
    #[error("{0}")]
    Flag(String),
    /// The tokio runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
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

/// Serves the endpoint until SIGTERM or SIGINT, on a tokio runtime of its own.
/// The page is `--web`'s directory when given, else `embedded` (files compiled
/// into the caller's binary), else not served.
pub fn run(args: LocalArgs, embedded: Option<Web>) -> Result<(), LocalError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LocalError::Runtime)?
        .block_on(run_async(args, embedded))
}

async fn run_async(args: LocalArgs, embedded: Option<Web>) -> Result<(), LocalError> {
    init_tracing(false);
    // The local server reads the job list a few documents at a time (bounded memory).
    let config = ServiceConfig {
        list_batch: LIST_BATCH,
        ..config_from_env()
    };
    let store = SqliteStore::open(&args.db)
        .map_err(|e| LocalError::Flag(format!("--db {}: {e}", args.db.display())))?;
    let web = match &args.web {
        Some(dir) if !dir.is_dir() => {
            return Err(LocalError::Flag(format!(
                "--web {}: not a directory",
                dir.display()
            )))
        }
        Some(dir) => Some(Web::Dir(dir.clone())),
        None => embedded,
    };
    let page = match &web {
        Some(Web::Dir(dir)) => dir.display().to_string(),
        Some(Web::Embedded(files)) => format!("built in ({} files)", files.len()),
        None => "none".to_string(),
    };
    let max_body = config.max_body_bytes;
    let auth = config.token.is_some();
    let app = Arc::new(
        App::new(Service::new(store, config), max_body, web)
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
        .map_err(|e| LocalError::Flag(format!("--listen {}: {e}", args.listen)))?;
    let listen = listener
        .local_addr()
        .map_err(|e| LocalError::Flag(format!("--listen {}: {e}", args.listen)))?;
    tracing::info!(
        %listen,
        db = %args.db.display(),
        page,
        auth,
        max_connections,
        "wattwise endpoint listening"
    );
    serve(listener, router(app), limits, stop_signal()).await;
    Ok(())
}
