//! The local wattwise server: the same service as the Lambda function, over an
//! embedded SQLite file, with the what-if page served from a directory.
//!
//! `wattwise-server --listen 127.0.0.1:8080 --db wattwise.db [--web web/dist]`;
//! `WATTWISE_TOKEN` set means every route but /healthz needs that bearer token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use wattwise_core::service::Service;
use wattwise_lambda::server::{router, App};
use wattwise_lambda::sqlite::SqliteStore;
use wattwise_lambda::{config_from_env, init_tracing};

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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing(false);
    let args = Args::parse();
    let config = config_from_env();
    let store =
        SqliteStore::open(&args.db).map_err(|e| format!("--db {}: {e}", args.db.display()))?;
    if let Some(web) = &args.web {
        if !web.is_dir() {
            return Err(format!("--web {}: not a directory", web.display()).into());
        }
    }
    let max_body = config.max_body_bytes;
    let auth = config.token.is_some();
    let app = Arc::new(App::new(
        Service::new(store, config),
        max_body,
        args.web.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        db = %args.db.display(),
        web = ?args.web,
        auth,
        "wattwise-server listening"
    );
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
