//! The Lambda handler: a `lambda_http` event in, the core's service over DynamoDB, a response out.
//!
//! Function URLs, API Gateway (REST and HTTP APIs) and ALB events all arrive as
//! one `lambda_http::Request`; the handler reads its method, path, raw query,
//! `Authorization` header and body, and answers what [`Service::handle`] answers.

use std::time::Instant;

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use wattwise_core::service::{self, Service, Store};

use crate::SystemEnv;

/// Turns a `lambda_http` body into bytes (text bodies as UTF-8; binary ones are
/// already decoded from base64 by `lambda_http`).
fn body_bytes(body: &Body) -> &[u8] {
    match body {
        Body::Empty => &[],
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        // A kind of body this crate does not know: treated as no body (the service
        // then answers what a missing body deserves).
        _ => &[],
    }
}

/// Answers one Lambda HTTP event.
pub async fn handle<S: Store>(service: &Service<S>, req: Request) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let request = service::Request {
        method: &method,
        path: &path,
        query: &query,
        authorization: authorization.as_deref(),
        body: body_bytes(req.body()),
    };
    let out = service.handle(request, &mut SystemEnv).await;
    let micros = started.elapsed().as_micros() as u64;
    if out.status >= 500 {
        tracing::warn!(method = %method, path = %path, status = out.status, micros, "request failed");
    } else {
        tracing::debug!(method = %method, path = %path, status = out.status, micros, "request");
    }
    let body = match String::from_utf8(out.body) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(out.content_type),
    );
    resp
}
