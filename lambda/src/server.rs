//! The local HTTP server: the core's service over the SQLite store, on axum.
//!
//! Every request goes to [`Service::handle`] except, when the page is served
//! ([`Web`]: a directory, or files compiled into the binary), `GET`/`HEAD` requests
//! for paths that are not API routes, which are its static files (`/` is
//! `index.html`). Bodies are read with a
//! cap one byte over the limit, so a body over 64 KiB gets the service's 413 and a
//! larger one is never held whole in memory.
//!
//! [`serve`] runs the accept loop itself (rather than `axum::serve`) to bound
//! what clients can hold: a cap on open connections (at the cap, a new client
//! sheds the connection that has waited longest for a request head), a header-read
//! timeout (a request's head, or the next one on a kept-alive connection, must
//! arrive in time), an idle timeout (no byte either way), and a body-read timeout.
//! When its shutdown future completes it stops accepting, lets the requests in
//! flight finish (at most [`Limits::drain`]) and returns.
//!
//! Heavy reads (the trials export and the job list, [`service::Request::heavy_read`])
//! run on tokio's blocking threads, never on its workers, at most
//! [`Limits::max_heavy_reads`] at once: beyond that they are answered 503 with
//! `Retry-After` at once. An export is written chunk by chunk as the core makes
//! it from the archive's pages, so its memory stays bounded whatever the job's
//! age; when the last heavy read ends, freed memory goes back to the OS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use tower::ServiceExt;
use wattwise_core::api::ApiError;
use wattwise_core::route::is_api_path;
use wattwise_core::service::{self, Answer, BodyReader, ReadBody, Service, Store};

use crate::exchange::Head;
use crate::sqlite::{SqliteStore, WRITE_WAIT};
use crate::SystemEnv;

/// One lock per job with a request in flight that may write it: requests that
/// write one job take turns in this process instead of racing to a version
/// conflict (another process's writes still conflict, and are retried). Reads
/// take no lock, and no lock spans two jobs.
#[derive(Default)]
pub struct JobLocks {
    held: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held job lock; dropping it lets the next request of that job go.
pub struct JobTurn<'a> {
    locks: &'a JobLocks,
    job_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl JobLocks {
    /// Waits at most `wait` for the job's turn.
    pub async fn turn(&self, job_id: &str, wait: Duration) -> Option<JobTurn<'_>> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.entry(job_id.to_string()).or_default().clone()
        };
        let mut turn = JobTurn {
            locks: self,
            job_id: job_id.to_string(),
            guard: None,
        };
        turn.guard = Some(tokio::time::timeout(wait, lock.lock_owned()).await.ok()?);
        Some(turn)
    }

    /// How many jobs have a lock entry now.
    pub fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Whether no job has a lock entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for JobTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        // The map's own reference is the last one: nobody holds or waits for it.
        if held
            .get(&self.job_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            held.remove(&self.job_id);
        }
    }
}

/// Where the what-if page's static files come from.
#[derive(Clone, Debug)]
pub enum Web {
    /// A directory on disk (`--web DIR`).
    Dir(PathBuf),
    /// Files compiled into the binary: each path relative to the page's root
    /// (`index.html`, `assets/x.js`) with its content.
    Embedded(&'static [(&'static str, &'static [u8])]),
}

/// The `Content-Type` of an embedded file, from its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The embedded file a `GET`/`HEAD` path names (`/` and `dir/` name their
/// `index.html`), answered; `None` when there is no such file.
fn embedded_file(
    files: &[(&'static str, &'static [u8])],
    method: &str,
    path: &str,
) -> Option<Response<Body>> {
    let mut name = path.trim_start_matches('/').to_string();
    if name.is_empty() || name.ends_with('/') {
        name.push_str("index.html");
    }
    let (name, content) = files.iter().find(|(n, _)| *n == name)?;
    let body = if method == "HEAD" {
        Body::empty()
    } else {
        Body::from(Bytes::from_static(content))
    };
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.len()));
    Some(resp)
}

/// The server's shared state.
pub struct App<S> {
    service: Service<S>,
    max_body_bytes: usize,
    web: Option<Web>,
    body_timeout: Duration,
    jobs: JobLocks,
    heavy: Arc<tokio::sync::Semaphore>,
    max_heavy: usize,
}

impl<S: Store> App<S> {
    /// An app over a service; `web` is where the page comes from, if served. A
    /// body must arrive within [`Limits::default`]'s `body_read`, and at most its
    /// `max_heavy_reads` heavy reads run at once.
    pub fn new(service: Service<S>, max_body_bytes: usize, web: Option<Web>) -> Self {
        let limits = Limits::default();
        App {
            service,
            max_body_bytes,
            web,
            body_timeout: limits.body_read,
            jobs: JobLocks::default(),
            heavy: Arc::new(tokio::sync::Semaphore::new(limits.max_heavy_reads)),
            max_heavy: limits.max_heavy_reads,
        }
    }

    /// The same app with another body-read timeout.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The same app with another cap on heavy reads at once (at least 1).
    pub fn with_max_heavy_reads(mut self, max: usize) -> Self {
        self.max_heavy = max.max(1);
        self.heavy = Arc::new(tokio::sync::Semaphore::new(self.max_heavy));
        self
    }
}

/// What one client may hold of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// A request's head must arrive within this, on a new or kept-alive connection.
    pub header_read: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle: Duration,
    /// A request's body must arrive within this (408 otherwise).
    pub body_read: Duration,
    /// Heavy reads (trials exports, job lists) running at once at most; more are
    /// answered 503 with `Retry-After`.
    pub max_heavy_reads: usize,
    /// On shutdown, the longest the requests in flight are waited for.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body_read: Duration::from_secs(10),
            max_heavy_reads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 16),
            drain: Duration::from_secs(10),
        }
    }
}

/// Seconds a client refused for load is told to wait (`Retry-After`).
const RETRY_AFTER_S: u64 = 1;

fn json_error(e: &ApiError) -> Response<Body> {
    let mut resp = Response::new(Body::from(e.body()));
    *resp.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads a body, declared or streamed, through the core's [`BodyReader`]
/// (which decides 413 and keeps at most `max` bytes).
async fn read_body(req: Request<Body>, max: usize) -> ReadBody {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    let mut reader = match BodyReader::start(declared, max) {
        Ok(reader) => reader,
        Err(answer) => return answer,
    };
    let mut body = req.into_body();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let Ok(frame) = frame else {
            return ReadBody::Unreadable;
        };
        if let Ok(data) = frame.into_data() {
            if let Err(answer) = reader.push(&data) {
                return answer;
            }
        }
    }
    reader.finish()
}

/// Answers one request.
pub async fn handle<S>(app: Arc<App<S>>, req: Request<Body>) -> Response<Body>
where
    S: Store + Send + Sync + 'static,
{
    let head = Head::of(&req);
    let (method, path) = (head.method.as_str(), head.path.as_str());
    let body: ReadBody = match &app.web {
        Some(Web::Embedded(files))
            if (method == "GET" || method == "HEAD") && !is_api_path(path) =>
        {
            match embedded_file(files, method, path) {
                Some(resp) => return resp,
                // No such file: the service answers (a JSON 404 naming the route).
                None => ReadBody::Bytes(Vec::new()),
            }
        }
        Some(Web::Dir(dir)) if (method == "GET" || method == "HEAD") && !is_api_path(path) => {
            let serve =
                tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true);
            match serve.oneshot(req).await {
                // No such file: the service answers (a JSON 404 naming the route).
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => ReadBody::Bytes(Vec::new()),
                Ok(resp) => return resp.map(Body::new),
                Err(e) => return json_error(&ApiError::Unavailable(format!("web: {e}"))),
            }
        }
        _ => match tokio::time::timeout(app.body_timeout, read_body(req, app.max_body_bytes)).await
        {
            Ok(body) => body,
            Err(_) => {
                let mut resp = json_error(&ApiError::BadRequest(format!(
                    "body: not received within {} s",
                    app.body_timeout.as_secs()
                )));
                *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
                return resp;
            }
        },
    };
    let request = head.request(body.as_body());
    if request.heavy_read() {
        return heavy_read(app, head, body).await;
    }
    // A request that may write its job waits for that job's turn, a bounded time
    // (half the store's own bound, so a write answers within 1.5 x WRITE_WAIT).
    let job_id = request.written_job();
    let _turn = match &job_id {
        Some(job_id) => match app.jobs.turn(job_id, WRITE_WAIT / 2).await {
            Some(turn) => Some(turn),
            None => {
                return json_error(&ApiError::Unavailable(format!(
                    "job {job_id:?} is busy: other requests held it over {} ms; retry the request",
                    (WRITE_WAIT / 2).as_millis()
                )))
            }
        },
        None => None,
    };
    let out = app.service.handle(request, &mut SystemEnv).await;
    head.respond(out, Body::from)
}

/// What the blocking task answering a heavy read sends back: a whole answer, or
/// an export's content type and then its chunks.
enum Piece {
    Whole(service::Response),
    Export(&'static str),
    Chunk(Vec<u8>),
    Failed(String),
}

/// Answers a heavy read on a blocking thread, if one of the heavy-read slots is
/// free (else 503 with `Retry-After`); an export's body is streamed as the core
/// writes its chunks.
async fn heavy_read<S>(app: Arc<App<S>>, head: Head, body: ReadBody) -> Response<Body>
where
    S: Store + Send + Sync + 'static,
{
    let Ok(permit) = app.heavy.clone().try_acquire_owned() else {
        let mut resp = json_error(&ApiError::Unavailable(format!(
            "the server is busy with {} heavy reads (trials exports, job lists); retry in {RETRY_AFTER_S} s",
            app.max_heavy
        )));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        return resp;
    };
    // Two pieces in flight at most: a slow client holds back the export, not memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(2);
    let runtime = tokio::runtime::Handle::current();
    let task_app = app.clone();
    let task_head = head.clone();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(async {
            let app = &task_app;
            let request = task_head.request(body.as_body());
            let mut export = match app.service.answer(request, &mut SystemEnv).await {
                Answer::Whole(out) => {
                    let _ = tx.send(Piece::Whole(out)).await;
                    return;
                }
                Answer::Export(export) => export,
            };
            if tx.send(Piece::Export(export.content_type())).await.is_err() {
                return;
            }
            loop {
                let piece = match app.service.next_chunk(&mut export).await {
                    Ok(Some(chunk)) if chunk.is_empty() => continue,
                    Ok(Some(chunk)) => Piece::Chunk(chunk),
                    Ok(None) => return,
                    Err(e) => Piece::Failed(e.to_string()),
                };
                let failed = matches!(piece, Piece::Failed(_));
                if tx.send(piece).await.is_err() || failed {
                    return;
                }
            }
        });
        drop(permit);
        if task_app.heavy.available_permits() == task_app.max_heavy {
            release_free_memory();
        }
    });
    match rx.recv().await {
        Some(Piece::Whole(out)) => head.respond(out, Body::from),
        Some(Piece::Export(content_type)) => {
            let chunks = futures_util::stream::poll_fn(move |cx| {
                rx.poll_recv(cx).map(|piece| match piece? {
                    Piece::Chunk(chunk) => Some(Ok(Bytes::from(chunk))),
                    // The client sees the body cut short (no final chunk), never a partial export as whole.
                    Piece::Failed(why) => {
                        tracing::warn!(path = %head.path, error = %why, "export failed midway");
                        Some(Err(std::io::Error::other(why)))
                    }
                    Piece::Whole(_) | Piece::Export(_) => None,
                })
            });
            let mut resp = Response::new(Body::from_stream(chunks));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        _ => json_error(&ApiError::Unavailable(
            "the read stopped before answering; retry the request".into(),
        )),
    }
}

/// Gives the allocator's free memory back to the OS (glibc keeps freed memory
/// in its per-thread arenas otherwise, so the server's size would stay at its
/// peak after a burst of heavy reads).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The axum router of the SQLite-backed server: every path and method goes to [`handle`].
pub fn router(app: Arc<App<SqliteStore>>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request<Body>| {
        let app = app.clone();
        async move { handle(app, req).await }
    })
}

/// A connection that notes when a byte last went either way (ms since `epoch`).
struct Watched {
    stream: tokio::net::TcpStream,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        out
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let out = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        out
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// When a byte last went either way (ms since the epoch of [`serve`]).
    last: Arc<AtomicU64>,
    /// Requests in flight: from its head read to its response's body dropped.
    busy: Arc<AtomicUsize>,
    /// Told to close (it is shed for a new client).
    shed: Arc<tokio::sync::Notify>,
}

/// The open connections, by number.
#[derive(Default)]
struct Conns {
    open: std::sync::Mutex<HashMap<u64, Conn>>,
}

impl Conns {
    /// Closes the connection that has waited longest for a request head (none in
    /// flight, the oldest last byte); false when every connection is busy.
    fn shed_oldest_waiting(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last.load(Ordering::Relaxed));
        match oldest {
            Some(c) => {
                c.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(busy: &Arc<AtomicUsize>) -> InFlight {
        busy.fetch_add(1, Ordering::Relaxed);
        InFlight(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then
/// drains: stops accepting, lets each request in flight finish and closes each
/// connection after it, waiting at most `limits.drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let conns = Arc::new(Conns::default());
    let (drain, draining) = tokio::sync::watch::channel(false);
    let epoch = Instant::now();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // At the cap, the new client takes the place of the connection that has
        // waited longest for a request head (a silent or trickling socket, or an
        // idle kept-alive one), rather than waiting out its header timeout.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                conns.shed_oldest_waiting();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let last = Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64));
        let busy = Arc::new(AtomicUsize::new(0));
        let shed = Arc::new(tokio::sync::Notify::new());
        let id = next_id;
        next_id += 1;
        conns.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Conn {
                last: last.clone(),
                busy: busy.clone(),
                shed: shed.clone(),
            },
        );
        let io = Watched {
            stream,
            epoch,
            last: last.clone(),
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let in_flight = InFlight::enter(&busy);
            let call = router.clone().oneshot(req);
            async move {
                let resp = call.await?;
                // The request stays in flight until its body is written (or dropped).
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let conns = conns.clone();
        let mut draining = draining.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _registered = Registered(&conns, id);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            let tick = (limits.idle / 4).max(Duration::from_millis(50));
            let mut closing: Option<Instant> = None;
            let mut drained = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = shed.notified() => return,
                    r = draining.changed(), if !drained => {
                        drained = true;
                        if r.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    _ = tokio::time::sleep(tick) => {
                        let idle_ms = (epoch.elapsed().as_millis() as u64)
                            .saturating_sub(last.load(Ordering::Relaxed));
                        match closing {
                            None if idle_ms >= limits.idle.as_millis() as u64 => {
                                conn.as_mut().graceful_shutdown();
                                closing = Some(Instant::now());
                            }
                            Some(at) if at.elapsed() >= limits.idle => return,
                            _ => {}
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("draining: no new connections; waiting for the requests in flight");
    let _ = drain.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain, slots.acquire_many(all))
        .await
        .is_ok();
    if drained {
        tracing::info!("drained: every connection closed");
    } else {
        tracing::warn!(
            seconds = limits.drain.as_secs(),
            "drain timed out: closing the connections still open"
        );
    }
}

/// Removes a connection from [`Conns`] when its task ends.
struct Registered<'a>(&'a Conns, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn job_locks_take_turns_and_forget_idle_jobs() {
        let locks = JobLocks::default();
        let a = locks.turn("a", Duration::from_millis(10)).await.unwrap();
        assert!(locks.turn("a", Duration::from_millis(20)).await.is_none());
        let b = locks.turn("b", Duration::from_millis(10)).await;
        assert!(b.is_some(), "another job is never blocked");
        drop(a);
        drop(b);
        assert!(locks.is_empty());
        assert!(locks.turn("a", Duration::from_millis(10)).await.is_some());
    }

    #[test]
    fn embedded_files_are_served_with_their_type_and_root_is_index() {
        static FILES: &[(&str, &[u8])] = &[("index.html", b"<html>"), ("assets/a.wasm", b"\0asm")];
        let root = embedded_file(FILES, "GET", "/").unwrap();
        assert_eq!(
            root.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let wasm = embedded_file(FILES, "HEAD", "/assets/a.wasm").unwrap();
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(wasm.headers()[header::CONTENT_LENGTH], "4");
        assert!(embedded_file(FILES, "GET", "/assets/missing.js").is_none());
        assert!(embedded_file(FILES, "GET", "/assets/").is_none());
    }

    #[test]
    fn sheds_the_connection_waiting_longest_for_a_head_never_a_busy_one() {
        let conns = Conns::default();
        let add = |id, last, busy| {
            let c = Conn {
                last: Arc::new(AtomicU64::new(last)),
                busy: Arc::new(AtomicUsize::new(busy)),
                shed: Arc::new(tokio::sync::Notify::new()),
            };
            let shed = c.shed.clone();
            conns.open.lock().unwrap().insert(id, c);
            shed
        };
        let busy_oldest = add(0, 1, 1);
        let idle_old = add(1, 5, 0);
        let idle_new = add(2, 9, 0);
        let told = |n: &Arc<tokio::sync::Notify>| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(10), n.notified())
                    .await
                    .is_ok()
            })
        };
        assert!(conns.shed_oldest_waiting());
        assert!(told(&idle_old));
        assert!(!told(&busy_oldest) && !told(&idle_new));
        conns.open.lock().unwrap().retain(|id, _| *id == 0);
        assert!(
            !conns.shed_oldest_waiting(),
            "only a busy connection is left"
        );
    }

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
