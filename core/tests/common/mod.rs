//! Shared helpers for the core's integration tests: a service over the memory store.

#![allow(dead_code)]

use serde_json::Value;
use wattwise_core::service::{MemoryStore, Request, Service, ServiceConfig};

pub(crate) use wattwise_core::test_support::env::TestEnv;

/// A service over a fresh memory store, with a test clock.
pub(crate) struct Harness {
    pub(crate) service: Service<MemoryStore>,
    pub(crate) env: TestEnv,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(ServiceConfig::default())
    }

    pub(crate) fn with_config(config: ServiceConfig) -> Self {
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
    pub(crate) fn call(&mut self, method: &str, path_and_query: &str, body: &str) -> (u16, Value) {
        let (status, raw) = self.call_raw(method, path_and_query, body, None);
        (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    pub(crate) fn call_raw(
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

    pub(crate) fn state(&mut self, job_id: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/jobs/{job_id}"), "");
        assert_eq!(status, 200, "{body}");
        body
    }
}
