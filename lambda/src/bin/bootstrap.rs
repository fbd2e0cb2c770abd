//! The AWS Lambda function: wattwise's service over a DynamoDB table.
//!
//! Environment: `WATTWISE_TABLE` (the table, required), `WATTWISE_TOKEN` (optional
//! bearer token), and the standard AWS variables (`AWS_REGION`, `AWS_ENDPOINT_URL`,
//! credentials), which the Lambda runtime sets.

// A `pub` item is API: what no one outside can reach is `pub(crate)` (CI runs
// clippy with `-D warnings`, so this is enforced).
#![warn(unreachable_pub)]

use std::sync::Arc;

use wattwise_core::service::Service;
use wattwise_lambda::dynamo::DynamoStore;
use wattwise_lambda::{config_from_env, function, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing(true);
    let init = std::time::Instant::now();
    let table = match std::env::var("WATTWISE_TABLE") {
        Ok(t) if !t.is_empty() => t,
        _ => return Err("WATTWISE_TABLE: the DynamoDB table name is required".into()),
    };
    let config = config_from_env();
    tracing::info!(
        target: "wattwise_lambda",
        table = %table,
        auth = config.token.is_some(),
        "wattwise function starting"
    );
    let store = DynamoStore::from_env(table).await;
    let service = Arc::new(Service::new(store, config));
    tracing::info!(
        target: "wattwise_lambda",
        init_micros = init.elapsed().as_micros() as u64,
        "wattwise function ready"
    );
    lambda_http::run(lambda_http::service_fn(move |req| {
        let service = service.clone();
        async move { Ok::<_, std::convert::Infallible>(function::handle(&service, req).await) }
    }))
    .await
}
