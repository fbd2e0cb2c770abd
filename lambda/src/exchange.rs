//! What both native hosts (the local server and the Lambda function) do around
//! the service: read a request's head, and turn the service's answer into an HTTP
//! response, logged with its status and latency.

use std::time::Instant;

use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use wattwise_core::service;

/// The parts of an HTTP request the service reads besides the body, owned.
#[derive(Clone, Debug)]
pub struct Head {
    /// The method, as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    started: Instant,
}

impl Head {
    /// The head of `req`; the request's latency counts from now.
    pub fn of<B>(req: &Request<B>) -> Head {
        Head {
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            started: Instant::now(),
        }
    }

    /// The service's view of the request, with `body`.
    pub fn request<'a>(&'a self, body: service::Body<'a>) -> service::Request<'a> {
        service::Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            authorization: self.authorization.as_deref(),
            body,
        }
    }

    /// The HTTP response of the service's answer `out` (its body made by `body`),
    /// logged: 5xx as warnings, the rest at debug level.
    pub fn respond<B>(
        &self,
        out: service::Response,
        body: impl FnOnce(Vec<u8>) -> B,
    ) -> Response<B> {
        let micros = self.started.elapsed().as_micros() as u64;
        let (method, path) = (&self.method, &self.path);
        if out.status >= 500 {
            tracing::warn!(method = %method, path = %path, status = out.status, micros, "request failed");
        } else {
            tracing::debug!(method = %method, path = %path, status = out.status, micros, "request");
        }
        let mut resp = Response::new(body(out.body));
        *resp.status_mut() =
            StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(out.content_type),
        );
        resp
    }
}
