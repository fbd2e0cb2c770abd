//! The Lambda handler: a `lambda_http` event in, the core's service over DynamoDB, a response out.
//!
//! Function URLs, API Gateway (REST and HTTP APIs) and ALB events all arrive as
//! one `lambda_http::Request`; the handler reads its method, path, raw query,
//! `Authorization` header and body, and answers what [`Service::handle`] answers.

use crate::exchange::Head;
use lambda_http::{Body, Request, Response};
use wattwise_core::service::{self, Service, Store};

use crate::SystemEnv;

/// Turns a `lambda_http` body into the service's view of it (text bodies as UTF-8; binary ones are
/// already decoded from base64 by `lambda_http`).
fn body_of(body: &Body) -> service::Body<'_> {
    match body {
        Body::Empty => service::Body::Bytes(&[]),
        Body::Text(s) => service::Body::Bytes(s.as_bytes()),
        Body::Binary(b) => service::Body::Bytes(b),
        // A kind of body this crate does not know.
        _ => service::Body::Unreadable,
    }
}

/// Answers one Lambda HTTP event.
pub async fn handle<S: Store>(service: &Service<S>, req: Request) -> Response<Body> {
    let head = Head::of(&req);
    let out = service
        .handle(head.request(body_of(req.body())), &mut SystemEnv)
        .await;
    head.respond(out, |bytes| match String::from_utf8(bytes) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::header;
    use serde_json::{json, Value};
    use wattwise_core::service::{MemoryStore, ServiceConfig};

    /// A Lambda function URL event (payload format 2.0).
    fn url_event(method: &str, path: &str, query: &str, body: Option<&str>, b64: bool) -> String {
        let mut e = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "authorization": "Bearer tok"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abc", "requestId": "req-1", "routeKey": "$default", "stage": "$default",
                "time": "22/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}
            },
            "isBase64Encoded": b64
        });
        if let Some(b) = body {
            e["body"] = json!(b);
        }
        e.to_string()
    }

    /// An application load balancer event.
    fn alb_event(
        method: &str,
        path: &str,
        query: Value,
        body: Option<&str>,
        auth: Option<&str>,
    ) -> String {
        let mut headers = json!({"host": "lb.example", "content-type": "application/json"});
        if let Some(a) = auth {
            headers["authorization"] = json!(a);
        }
        json!({
            "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/w/1"}},
            "httpMethod": method, "path": path, "queryStringParameters": query, "headers": headers,
            "body": body.unwrap_or(""), "isBase64Encoded": false
        })
        .to_string()
    }

    async fn call(service: &Service<MemoryStore>, event: &str) -> (u16, Value) {
        let req = lambda_http::request::from_str(event).expect("event parses");
        let resp = handle(service, req).await;
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body: Value = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("expected a text body, got {other:?}"),
        };
        (status, body)
    }

    fn service(token: Option<&str>) -> Service<MemoryStore> {
        Service::new(
            MemoryStore::default(),
            ServiceConfig {
                token: token.map(str::to_string),
                ..ServiceConfig::default()
            },
        )
    }

    const SPEC: &str = r#"{"job_id": "t-1", "job_id_prefix": "t", "batch_sizes": [8, 16], "default_batch_size": 16,
        "max_power": 300, "number_of_gpus": 1, "gpu_model": "A100"}"#;

    #[tokio::test]
    async fn function_url_and_alb_events_reach_the_service() {
        let s = service(Some("tok"));
        let (status, body) = call(&s, &url_event("POST", "/jobs", "", Some(SPEC), false)).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["job_id"], "t-1");
        // ALB, query string parameters as a map.
        let (status, trial) = call(
            &s,
            &alb_event(
                "GET",
                "/jobs/batch_size",
                json!({"job_id": "t-1"}),
                None,
                Some("Bearer tok"),
            ),
        )
        .await;
        assert_eq!(status, 200, "{trial}");
        assert_eq!(
            trial,
            json!({"job_id": "t-1", "batch_size": 16, "trial_number": 1})
        );
        // A base64 body (function URLs encode bodies they deem binary).
        let report = json!({"job_id": "t-1", "batch_size": 16, "trial_number": 1, "time": 1.0,
                            "energy": 2.0, "metric": 0.9, "current_epoch": 1})
        .to_string();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(report);
        let (status, body) = call(&s, &url_event("POST", "/report", "", Some(&b64), true)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["stop_train"], true);
        // The query string of a function URL event.
        let (status, body) = call(
            &s,
            &url_event("GET", "/jobs/batch_size", "job_id=t-1", None, false),
        )
        .await;
        assert_eq!((status, body["trial_number"].as_u64()), (200, Some(2)));
    }

    #[tokio::test]
    async fn the_token_is_checked_and_errors_are_json() {
        let s = service(Some("tok"));
        let (status, body) = call(&s, &alb_event("GET", "/jobs/t-1", json!({}), None, None)).await;
        assert_eq!(status, 401);
        assert!(body["message"].as_str().unwrap().contains("token"));
        let (status, _) = call(&s, &alb_event("GET", "/healthz", json!({}), None, None)).await;
        assert_eq!(status, 200);
        let (status, body) = call(&s, &url_event("POST", "/jobs", "", Some("{oops"), false)).await;
        assert_eq!(status, 422);
        assert!(body["message"].as_str().unwrap().starts_with("body:"));
        let big = "x".repeat(70 * 1024);
        let (status, _) = call(&s, &url_event("POST", "/report", "", Some(&big), false)).await;
        assert_eq!(status, 413);
    }
}
