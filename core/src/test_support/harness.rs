//! A service over a fresh memory store with a test clock, called as a client
//! calls it (the core's service and scenario tests).

use crate::service::{MemoryStore, Request, Service, ServiceConfig};
use serde_json::Value;

use super::env::TestEnv;

/// A service over a fresh memory store, with a test clock.
pub struct Harness {
    /// The service under test.
    pub service: Service<MemoryStore>,
    /// Its host environment.
    pub env: TestEnv,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A harness with the default settings.
    pub fn new() -> Self {
        Self::with_config(ServiceConfig::default())
    }

    /// A harness with these settings.
    pub fn with_config(config: ServiceConfig) -> Self {
        Harness {
            service: Service::new(MemoryStore::default(), config),
            env: TestEnv {
                now: 1_700_000_000_000,
                tick_ms: 1000,
                seed: 42,
            },
        }
    }

    /// Sends a request; returns the status and the body parsed as JSON (Null if not JSON).
    pub fn call(&mut self, method: &str, path_and_query: &str, body: &str) -> (u16, Value) {
        let (status, raw) = self.call_raw(method, path_and_query, body, None);
        (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    /// Sends a request with an `Authorization` header; returns the status and the
    /// raw body.
    pub fn call_raw(
        &mut self,
        method: &str,
        path_and_query: &str,
        body: &str,
        auth: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let req = Request {
            authorization: auth,
            ..Request::new(method, path_and_query, body.as_bytes())
        };
        let resp = pollster::block_on(self.service.handle(req, &mut self.env));
        (resp.status, resp.body)
    }

    /// The job's document (`GET /jobs/{job_id}`), which must answer 200.
    pub fn state(&mut self, job_id: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/jobs/{job_id}"), "");
        assert_eq!(status, 200, "{body}");
        body
    }
}
