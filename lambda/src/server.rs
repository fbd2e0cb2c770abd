//! The local HTTP server: the core's service over the SQLite store, on axum.
//!
//! Every request goes to [`Service::handle`] except, when a web directory is set,
//! `GET`/`HEAD` requests for paths that are not API routes, which are served as
//! static files from that directory (`/` is `index.html`). Bodies are read with a
//! cap one byte over the limit, so a body over 64 KiB gets the service's 413 and a
//! larger one is never held whole in memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use tower::ServiceExt;
use wattwise_core::api::ApiError;
use wattwise_core::service::{self, Service, Store};

use crate::sqlite::SqliteStore;
use crate::SystemEnv;

/// The first path segments that belong to the API (everything else may be the page).
const API_ROOTS: [&str; 5] = ["jobs", "report", "trials", "healthz", "openapi.json"];

/// Whether `path` is an API route rather than a page asset.
pub fn is_api_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    API_ROOTS.contains(&first)
}

/// The server's shared state.
pub struct App<S> {
    service: Service<S>,
    max_body_bytes: usize,
    web: Option<PathBuf>,
}

impl<S: Store> App<S> {
    /// An app over a service; `web` is the page's directory, if any.
    pub fn new(service: Service<S>, max_body_bytes: usize, web: Option<PathBuf>) -> Self {
        App {
            service,
            max_body_bytes,
            web,
        }
    }
}

fn json_error(e: &ApiError) -> Response<Body> {
    let mut resp = Response::new(Body::from(e.body()));
    *resp.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads a body, declared or streamed, with a cap one byte over `max`: anything
/// longer comes back as `max + 1` bytes, which the service refuses with 413.
async fn read_body(req: Request<Body>, max: usize) -> Bytes {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Bytes::from(vec![0u8; max + 1]);
    }
    axum::body::to_bytes(req.into_body(), max + 1)
        .await
        .unwrap_or_else(|_| Bytes::from(vec![0u8; max + 1]))
}

/// Answers one request.
pub async fn handle<S>(app: Arc<App<S>>, req: Request<Body>) -> Response<Body>
where
    S: Store + Send + Sync + 'static,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Bytes = match &app.web {
        Some(dir) if (method == "GET" || method == "HEAD") && !is_api_path(&path) => {
            let serve =
                tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true);
            match serve.oneshot(req).await {
                // No such file: the service answers (a JSON 404 naming the route).
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => Bytes::new(),
                Ok(resp) => return resp.map(Body::new),
                Err(e) => return json_error(&ApiError::Unavailable(format!("web: {e}"))),
            }
        }
        _ => read_body(req, app.max_body_bytes).await,
    };
    let request = service::Request {
        method: method.as_str(),
        path: &path,
        query: &query,
        authorization: authorization.as_deref(),
        body: &body,
    };
    let out = app.service.handle(request, &mut SystemEnv).await;
    let micros = started.elapsed().as_micros() as u64;
    if out.status >= 500 {
        tracing::warn!(method = %method, path = %path, status = out.status, micros, "request failed");
    } else {
        tracing::debug!(method = %method, path = %path, status = out.status, micros, "request");
    }
    let mut resp = Response::new(Body::from(out.body));
    *resp.status_mut() =
        StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(out.content_type),
    );
    resp
}

/// The axum router of the SQLite-backed server: every path and method goes to [`handle`].
pub fn router(app: Arc<App<SqliteStore>>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request<Body>| {
        let app = app.clone();
        async move { handle(app, req).await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert!(is_api_path("/jobs"));
        assert!(is_api_path("/jobs/x/trials"));
        assert!(is_api_path("/healthz"));
        assert!(is_api_path("/openapi.json"));
        assert!(!is_api_path("/"));
        assert!(!is_api_path("/index.html"));
        assert!(!is_api_path("/assets/app.js"));
        assert!(!is_api_path("/jobsx"));
    }
}
