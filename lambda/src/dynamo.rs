//! The Lambda function's store: one DynamoDB table.
//!
//! Key schema (both keys strings):
//! - partition key `job_id`;
//! - sort key `item`: `"job"` for the job document, `"trial#<20-digit trial number>"`
//!   for each archived trial record (zero-padded so they sort in trial order).
//!
//! A workload's shared document (what the jobs naming it taught each other) is one
//! more item: partition key `workload/<name>` (no job id holds a `/`), sort key
//! [`WORKLOAD_ITEM`], written like a job's document (a conditional PutItem on its
//! `version`) and never in the job list's index.
//!
//! The document item holds `version` (number) and `doc` (the JSON job document);
//! a trial item holds `record` (the JSON trial). A create is a PutItem on
//! `attribute_not_exists(job_id)`, a replace a PutItem on `version = :expected`;
//! when trials leave the document, the document and up to 99 trial items go in one
//! `TransactWriteItems` (more trials are written first, then the transaction).
//! Reads are strongly consistent. Endpoint, region and credentials come from the
//! standard AWS environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use wattwise_core::job::JobState;
use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::retry::{retry_async, Backoff};
use wattwise_core::service::{Saved, Store, Stored, StoredWorkload, Write};
use wattwise_core::store::{ListCursor, Listed};
use wattwise_core::trial::Trial;

/// A single-item request (`put_item`, `delete_item`) with the table and the
/// condition of `$built`, the same item built for a transaction (`Put`, `Delete`),
/// so each write's condition is written once.
macro_rules! conditional {
    ($request:expr, $table:expr, $built:expr) => {
        $request
            .table_name($table)
            .set_condition_expression($built.condition_expression().map(str::to_string))
            .set_expression_attribute_names($built.expression_attribute_names().cloned())
            .set_expression_attribute_values($built.expression_attribute_values().cloned())
    };
}

/// The partition key's name.
pub const PARTITION_KEY: &str = "job_id";
/// The sort key's name.
pub const SORT_KEY: &str = "item";
/// The sort key value of a job document.
pub const DOC_ITEM: &str = "job";
/// The sort key value of a workload's document.
pub const WORKLOAD_ITEM: &str = "workload";

/// The partition key value of a workload's document.
pub fn workload_key(workload: &str) -> String {
    format!("workload/{workload}")
}

/// The sort key prefix of an archived trial.
pub const TRIAL_PREFIX: &str = "trial#";

/// The job list's global secondary index: partition key [`LIST_PK`] (the same
/// value, [`LIST_PK_VALUE`], on every document item and absent from trial items, so
/// the index holds documents only) and sort key [`LIST_SK`]
/// (`<20-digit created_ms>#<job_id>`), projecting the whole item, so a page of the
/// list is one Query of `limit` items whatever the number of jobs or trials.
pub const LIST_INDEX: &str = "jobs_by_created";
/// The list index's partition key.
pub const LIST_PK: &str = "list";
/// Its value on every document item.
pub const LIST_PK_VALUE: &str = "jobs";
/// The list index's sort key.
pub const LIST_SK: &str = "created";

/// The list index's sort key of a job: creation time, zero-padded so it sorts, then the id.
pub fn list_sort_key(created_ms: i64, job_id: &str) -> String {
    format!("{:020}#{job_id}", created_ms.max(0))
}

/// Items per `TransactWriteItems` (DynamoDB's limit is 100; one is the document).
const TRANSACT_TRIALS: usize = 99;
/// Items per `BatchWriteItem`.
const BATCH_WRITE: usize = 25;
/// Sends of one batch before its items left unprocessed are an error.
const BATCH_TRIES: u32 = 16;

/// What can go wrong in the DynamoDB store.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    /// A DynamoDB call failed.
    #[error("dynamodb {operation}: {message}")]
    Call {
        /// The operation.
        operation: &'static str,
        /// The service's or the transport's message.
        message: String,
    },
    /// A stored item did not have the expected shape.
    #[error("stored item of job {job_id:?} is not valid: {why}")]
    Corrupt {
        /// The job (a workload's document: `workload/<name>`).
        job_id: String,
        /// What was wrong.
        why: String,
    },
    /// A document could not be written as JSON.
    #[error("cannot encode job document: {0}")]
    Encode(serde_json::Error),
}

fn call_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
    e: &SdkError<E>,
) -> DynamoError {
    let message = match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("")
            )
        }
        other => format!("{other}"),
    };
    DynamoError::Call { operation, message }
}

/// The DynamoDB store over one table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn trial_key(trial_number: u64) -> String {
    format!("{TRIAL_PREFIX}{trial_number:020}")
}

impl DynamoStore {
    /// A store over `table` with a ready client.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// A store over `table` with a client configured from the standard AWS
    /// environment (HTTPS through rustls with ring).
    pub async fn from_env(table: impl Into<String>) -> Self {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        DynamoStore::new(Client::new(&config), table)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table (pay per request) with wattwise's key schema; for tests
    /// and first deployments. Succeeds if it exists already.
    pub async fn create_table(&self) -> Result<(), DynamoError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeyType, ScalarAttributeType,
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = key_element;
        let out = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PARTITION_KEY))
            .attribute_definitions(attr(SORT_KEY))
            .key_schema(key(PARTITION_KEY, KeyType::Hash))
            .key_schema(key(SORT_KEY, KeyType::Range))
            .attribute_definitions(attr(LIST_PK))
            .attribute_definitions(attr(LIST_SK))
            .global_secondary_indexes(list_index())
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(call_error("CreateTable", &e)),
        }
    }

    fn doc_key(&self, job_id: &str) -> [(String, AttributeValue); 2] {
        [
            (PARTITION_KEY.into(), AttributeValue::S(job_id.into())),
            (SORT_KEY.into(), AttributeValue::S(DOC_ITEM.into())),
        ]
    }

    fn trial_put(&self, job_id: &str, t: &Trial) -> Result<Put, DynamoError> {
        let record = serde_json::to_string(t).map_err(DynamoError::Encode)?;
        Put::builder()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(job_id.into()))
            .item(SORT_KEY, AttributeValue::S(trial_key(t.trial_number)))
            .item("record", AttributeValue::S(record))
            .build()
            .map_err(|e| unbuildable(job_id, e))
    }

    /// The document's conditional Put.
    fn doc_put(
        &self,
        job_id: &str,
        state: &JobState,
        expected_version: Option<u64>,
    ) -> Result<Put, DynamoError> {
        let doc = serde_json::to_string(state).map_err(DynamoError::Encode)?;
        let new_version = expected_version.unwrap_or(0).saturating_add(1);
        let mut put = Put::builder()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(job_id.into()))
            .item(SORT_KEY, AttributeValue::S(DOC_ITEM.into()))
            .item("version", AttributeValue::N(new_version.to_string()))
            .item("doc", AttributeValue::S(doc))
            .item(LIST_PK, AttributeValue::S(LIST_PK_VALUE.into()))
            .item(
                LIST_SK,
                AttributeValue::S(list_sort_key(state.created_ms(), job_id)),
            );
        put = match expected_version {
            None => put.condition_expression("attribute_not_exists(#pk)"),
            Some(v) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        if expected_version.is_none() {
            put = put.expression_attribute_names("#pk", PARTITION_KEY);
        }
        put.build().map_err(|e| unbuildable(job_id, e))
    }

    /// Writes trial items outside a transaction, 25 at a time, retrying unprocessed ones.
    async fn batch_put_trials(&self, job_id: &str, trials: &[Trial]) -> Result<(), DynamoError> {
        let requests = trials
            .iter()
            .map(|t| {
                let put = self.trial_put(job_id, t)?;
                let req = aws_sdk_dynamodb::types::PutRequest::builder()
                    .set_item(Some(put.item().clone()))
                    .build()
                    .map_err(|e| unbuildable(job_id, e))?;
                Ok(WriteRequest::builder().put_request(req).build())
            })
            .collect::<Result<Vec<_>, DynamoError>>()?;
        self.batch_write_all(requests).await
    }

    /// A strongly consistent read of the job's document item.
    fn get_doc(
        &self,
        job_id: &str,
    ) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.doc_key(job_id).into_iter().collect()))
            .consistent_read(true)
    }

    /// Deletes every archived trial record of `job_id`.
    async fn purge_trials(&self, job_id: &str) -> Result<(), DynamoError> {
        let requests = self
            .trial_keys(job_id)
            .await?
            .into_iter()
            .map(|k| {
                let req = aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .key(PARTITION_KEY, AttributeValue::S(job_id.into()))
                    .key(SORT_KEY, AttributeValue::S(k))
                    .build()
                    .map_err(|e| unbuildable(job_id, e))?;
                Ok(WriteRequest::builder().delete_request(req).build())
            })
            .collect::<Result<Vec<_>, DynamoError>>()?;
        self.batch_write_all(requests).await
    }

    /// Sends `requests` in batches of 25.
    async fn batch_write_all(&self, requests: Vec<WriteRequest>) -> Result<(), DynamoError> {
        for chunk in requests.chunks(BATCH_WRITE) {
            self.batch_write(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), DynamoError> {
        if requests.is_empty() {
            return Ok(());
        }
        // An error of `None`: items left unprocessed, sent again after a wait.
        let pending = std::sync::Mutex::new(requests);
        let pending = &pending;
        retry_async(
            Backoff::STORE,
            &mut crate::SystemEnv,
            || async move {
                let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .map_err(|e| Some(call_error("BatchWriteItem", &e)))?;
                let unprocessed = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if unprocessed.is_empty() {
                    return Ok(());
                }
                *pending.lock().unwrap_or_else(|e| e.into_inner()) = unprocessed;
                Err(None)
            },
            |unprocessed: &Option<DynamoError>, retry| unprocessed.is_none() && retry < BATCH_TRIES,
        )
        .await
        .map_err(|e| {
            e.unwrap_or(DynamoError::Call {
                operation: "BatchWriteItem",
                message: "items stayed unprocessed".into(),
            })
        })
    }

    /// Every archived-trial item of a job, page by page (strongly consistent), with
    /// only the sort key when `keys_only`.
    async fn trial_items(
        &self,
        job_id: &str,
        keys_only: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, DynamoError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :job AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":job", AttributeValue::S(job_id.into()))
                .expression_attribute_values(":prefix", AttributeValue::S(TRIAL_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if keys_only {
                query = query.projection_expression("#sk");
            }
            let out = query.send().await.map_err(|e| call_error("Query", &e))?;
            start = out.last_evaluated_key;
            items.extend(out.items.unwrap_or_default());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    async fn trial_keys(&self, job_id: &str) -> Result<Vec<String>, DynamoError> {
        Ok(self
            .trial_items(job_id, true)
            .await?
            .into_iter()
            .filter_map(|mut item| match item.remove(SORT_KEY) {
                Some(AttributeValue::S(k)) => Some(k),
                _ => None,
            })
            .collect())
    }
}

/// A key schema element (both fields set, so building cannot fail).
fn key_element(
    name: &str,
    kind: aws_sdk_dynamodb::types::KeyType,
) -> aws_sdk_dynamodb::types::KeySchemaElement {
    aws_sdk_dynamodb::types::KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

/// The list index's definition (see [`LIST_INDEX`]).
fn list_index() -> aws_sdk_dynamodb::types::GlobalSecondaryIndex {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, KeyType, Projection, ProjectionType};
    let key = key_element;
    GlobalSecondaryIndex::builder()
        .index_name(LIST_INDEX)
        .key_schema(key(LIST_PK, KeyType::Hash))
        .key_schema(key(LIST_SK, KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .expect("name, keys and projection are set")
}

/// A document item read back: its version and document.
fn stored_of_item(item: &HashMap<String, AttributeValue>) -> Result<Stored, DynamoError> {
    let job_id = match item.get(PARTITION_KEY) {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => String::new(),
    };
    let (version, state) = versioned_doc(item, &job_id)?;
    Ok(Stored { state, version })
}

/// The `version` and the JSON `doc` of a versioned item (a job's or a
/// workload's document) whose partition key is `key`.
fn versioned_doc<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    key: &str,
) -> Result<(u64, T), DynamoError> {
    let corrupt = |why: String| DynamoError::Corrupt {
        job_id: key.to_string(),
        why,
    };
    let version = match item.get("version") {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|e| corrupt(format!("version: {e}")))?,
        _ => return Err(corrupt("version: missing or not a number".into())),
    };
    let doc = match item.get("doc") {
        Some(AttributeValue::S(doc)) => {
            serde_json::from_str(doc).map_err(|e| corrupt(format!("doc: {e}")))?
        }
        _ => return Err(corrupt("doc: missing or not a string".into())),
    };
    Ok((version, doc))
}

fn is_conditional_failure<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(
        e.code(),
        Some("ConditionalCheckFailedException") | Some("TransactionConflictException")
    )
}

/// A request the SDK's builder refused (a missing required field): the job's
/// item cannot be written as built.
fn unbuildable(job_id: &str, e: impl std::fmt::Display) -> DynamoError {
    DynamoError::Corrupt {
        job_id: job_id.into(),
        why: e.to_string(),
    }
}

impl Store for DynamoStore {
    type Error = DynamoError;

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, DynamoError> {
        let out = self
            .get_doc(job_id)
            .send()
            .await
            .map_err(|e| call_error("GetItem", &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let (version, state) = versioned_doc(&item, job_id)?;
        Ok(Some(Stored { state, version }))
    }

    async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, DynamoError> {
        // Trial records can outlive their job when a delete's purge fails midway; a
        // job created again must not see them (the store contract), so a create
        // first clears what a missing document left behind.
        if write.expected_version.is_none() && self.version(job_id).await?.is_none() {
            self.purge_trials(job_id).await?;
        }
        let doc = self.doc_put(job_id, write.state, write.expected_version)?;
        if write.archive.is_empty() {
            let put = self.client.put_item().set_item(Some(doc.item().clone()));
            let out = conditional!(put, &self.table, doc).send().await;
            return match out {
                Ok(_) => Ok(Saved::Ok),
                Err(e) if is_conditional_failure(&e) => Ok(Saved::Conflict),
                Err(e) => Err(call_error("PutItem", &e)),
            };
        }
        // Trials beyond one transaction go first: idempotent by key, harmless on conflict.
        let archive = write.archive;
        let (early, together) = archive.split_at(archive.len().saturating_sub(TRANSACT_TRIALS));
        self.batch_put_trials(job_id, early).await?;
        let mut items = vec![TransactWriteItem::builder().put(doc).build()];
        for t in together {
            items.push(
                TransactWriteItem::builder()
                    .put(self.trial_put(job_id, t)?)
                    .build(),
            );
        }
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Saved::Ok),
            Err(e) => {
                let conflict = e.code() == Some("TransactionCanceledException")
                    && e.as_service_error()
                        .map(|s| match s {
                            TransactWriteItemsError::TransactionCanceledException(c) => {
                                c.cancellation_reasons().iter().any(|r| {
                                    matches!(
                                        r.code(),
                                        Some("ConditionalCheckFailed")
                                            | Some("TransactionConflict")
                                    )
                                })
                            }
                            _ => false,
                        })
                        .unwrap_or(false);
                if conflict || is_conditional_failure(&e) {
                    Ok(Saved::Conflict)
                } else {
                    Err(call_error("TransactWriteItems", &e))
                }
            }
        }
    }

    async fn load_workload(&self, workload: &str) -> Result<Option<StoredWorkload>, DynamoError> {
        let key = workload_key(workload);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.clone()))
            .key(SORT_KEY, AttributeValue::S(WORKLOAD_ITEM.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| call_error("GetItem", &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let (version, state) = versioned_doc(&item, &key)?;
        Ok(Some(StoredWorkload { state, version }))
    }

    async fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> Result<Saved, DynamoError> {
        let doc = serde_json::to_string(state).map_err(DynamoError::Encode)?;
        let new_version = expected_version.unwrap_or(0).saturating_add(1);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(workload_key(workload)))
            .item(SORT_KEY, AttributeValue::S(WORKLOAD_ITEM.into()))
            .item("version", AttributeValue::N(new_version.to_string()))
            .item("doc", AttributeValue::S(doc));
        let put = match expected_version {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PARTITION_KEY),
            Some(v) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(Saved::Ok),
            Err(e) if is_conditional_failure(&e) => Ok(Saved::Conflict),
            Err(e) => Err(call_error("PutItem", &e)),
        }
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, DynamoError> {
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(self.doc_key(job_id).into_iter().collect()))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .build()
            .map_err(|e| unbuildable(job_id, e))?;
        let delete = self.client.delete_item().set_key(Some(del.key().clone()));
        let out = conditional!(delete, &self.table, del).send().await;
        match out {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => return Ok(Saved::Conflict),
            Err(e) => return Err(call_error("DeleteItem", &e)),
        }
        // The document is gone (the commit point); now its trial records.
        self.purge_trials(job_id).await?;
        Ok(Saved::Ok)
    }

    /// One Query of the list index (eventually consistent, as every index read).
    async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, DynamoError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LIST_INDEX)
            .expression_attribute_names("#l", LIST_PK)
            .expression_attribute_values(":jobs", AttributeValue::S(LIST_PK_VALUE.into()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX));
        query = match after {
            None => query.key_condition_expression("#l = :jobs"),
            Some(c) => query
                .key_condition_expression("#l = :jobs AND #c < :after")
                .expression_attribute_names("#c", LIST_SK)
                .expression_attribute_values(
                    ":after",
                    AttributeValue::S(list_sort_key(c.created_ms, &c.job_id)),
                ),
        };
        let out = query.send().await.map_err(|e| call_error("Query", &e))?;
        let page = out
            .items
            .unwrap_or_default()
            .iter()
            .map(stored_of_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Listed::from_one_more(page, limit)))
    }

    async fn version(&self, job_id: &str) -> Result<Option<u64>, DynamoError> {
        let out = self
            .get_doc(job_id)
            .projection_expression("#v")
            .expression_attribute_names("#v", "version")
            .send()
            .await
            .map_err(|e| call_error("GetItem", &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        match item.get("version") {
            Some(AttributeValue::N(n)) => {
                n.parse::<u64>()
                    .map(Some)
                    .map_err(|e| DynamoError::Corrupt {
                        job_id: job_id.into(),
                        why: format!("version: {e}"),
                    })
            }
            _ => Err(DynamoError::Corrupt {
                job_id: job_id.into(),
                why: "version: missing or not a number".into(),
            }),
        }
    }

    async fn archived_trial(
        &self,
        job_id: &str,
        trial_number: u64,
    ) -> Result<Option<Trial>, DynamoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(job_id.into()))
            .key(SORT_KEY, AttributeValue::S(trial_key(trial_number)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| call_error("GetItem", &e))?;
        let corrupt = |why: String| DynamoError::Corrupt {
            job_id: job_id.into(),
            why,
        };
        match out.item.as_ref().map(|item| item.get("record")) {
            None => Ok(None),
            Some(Some(AttributeValue::S(r))) => serde_json::from_str(r)
                .map(Some)
                .map_err(|e| corrupt(format!("record: {e}"))),
            Some(_) => Err(corrupt("record: missing or not a string".into())),
        }
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, DynamoError> {
        let corrupt = |why: String| DynamoError::Corrupt {
            job_id: job_id.into(),
            why,
        };
        self.trial_items(job_id, false)
            .await?
            .iter()
            .map(|item| match item.get("record") {
                Some(AttributeValue::S(r)) => {
                    serde_json::from_str(r).map_err(|e| corrupt(format!("record: {e}")))
                }
                _ => Err(corrupt("record: missing or not a string".into())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_keys_sort_in_trial_order() {
        let mut keys: Vec<String> = [10u64, 2, 1000, 1].iter().map(|n| trial_key(*n)).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![trial_key(1), trial_key(2), trial_key(10), trial_key(1000)]
        );
        assert!(trial_key(u64::MAX).starts_with(TRIAL_PREFIX));
        assert_eq!(trial_key(u64::MAX).len(), TRIAL_PREFIX.len() + 20);
    }
}
