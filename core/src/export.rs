//! The trials export (`GET /jobs/{job_id}/trials`), produced in chunks.
//!
//! A job's trials are the few its document keeps and the archived ones, which
//! grow without bound (one record per finished run). The export reads the archive
//! a page at a time ([`Store::archived_trials_from`], [`EXPORT_PAGE`] trials) and
//! writes each page as one chunk, merged in trial order with the document's
//! trials (the document's copy of a trial wins), so the memory an export holds is
//! one page and the document, whatever the job's age. A store that cannot page
//! its archive is read whole, once, and still written in chunks.

use std::collections::BTreeMap;

use crate::api::ApiError;
use crate::field_error::FieldError;
use crate::job::JobState;
use crate::store::Store;
use crate::trial::Trial;

/// Archived trials read, and written as one chunk, at a time.
pub const EXPORT_PAGE: usize = 1_000;

/// The export's format: the `format` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of trials, each with its `job_id` (the default).
    Json,
    /// CSV with [`Trial::CSV_HEADER`].
    Csv,
}

impl Format {
    /// Reads the `format` parameter: `json` (or absent) or `csv`.
    pub fn parse(format: Option<&str>) -> Result<Format, ApiError> {
        match format {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(FieldError::new(
                "format",
                format!("must be json or csv (got {other:?})"),
            )
            .into()),
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Where an export is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Nothing written yet.
    Start,
    /// The archive is being read from this trial number on.
    Archive { from: u64 },
    /// The archive is read; the document's remaining trials and the end are left.
    Rest,
    /// Everything written.
    Done,
}

/// One job's trials export, written chunk by chunk with [`TrialsExport::next_chunk`].
#[derive(Debug)]
pub struct TrialsExport {
    job_id: String,
    format: Format,
    /// The document's trials not written yet, by number.
    doc: BTreeMap<u64, Trial>,
    /// The whole archive, sorted, for a store that cannot page it.
    whole: Option<std::vec::IntoIter<Trial>>,
    stage: Stage,
    rows: u64,
}

impl TrialsExport {
    /// The export of `job_id`, whose stored document is `state`.
    pub fn new(job_id: &str, state: &JobState, format: Format) -> Self {
        TrialsExport {
            job_id: job_id.to_string(),
            format,
            doc: state
                .trials()
                .into_iter()
                .map(|t| (t.trial_number, t.clone()))
                .collect(),
            whole: None,
            stage: Stage::Start,
            rows: 0,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The next chunk of the body (the first holds the JSON `[` or the CSV header,
    /// the last the JSON `]`); `None` once everything is written. An error is the
    /// store's, as the service answers it (503).
    pub async fn next_chunk<S: Store>(&mut self, store: &S) -> Result<Option<Vec<u8>>, ApiError> {
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        let mut out = Vec::new();
        match self.stage {
            Stage::Done => return Ok(None),
            Stage::Start => {
                match self.format {
                    Format::Json => out.push(b'['),
                    Format::Csv => {
                        out.extend_from_slice(Trial::CSV_HEADER.as_bytes());
                        out.push(b'\n');
                    }
                }
                self.stage = Stage::Archive { from: 0 };
            }
            Stage::Archive { from } => {
                let page = match &mut self.whole {
                    Some(all) => all.by_ref().take(EXPORT_PAGE).collect(),
                    None => match store
                        .archived_trials_from(&self.job_id, from, EXPORT_PAGE)
                        .await
                        .map_err(store_err)?
                    {
                        Some(page) => page,
                        None => {
                            let mut all = store
                                .archived_trials(&self.job_id)
                                .await
                                .map_err(store_err)?;
                            all.sort_by_key(|t| t.trial_number);
                            all.dedup_by_key(|t| t.trial_number);
                            let mut all = all.into_iter();
                            let page = all.by_ref().take(EXPORT_PAGE).collect();
                            self.whole = Some(all);
                            page
                        }
                    },
                };
                let last = page.last().map(|t: &Trial| t.trial_number);
                let more = page.len() >= EXPORT_PAGE && last.is_some_and(|n| n < u64::MAX);
                // This chunk covers the trial numbers up to the page's last (all the
                // rest when the archive is done): the document's trials among them
                // go in too, replacing an archived copy.
                let mut rows: BTreeMap<u64, Trial> =
                    page.into_iter().map(|t| (t.trial_number, t)).collect();
                match (more, last) {
                    (true, Some(n)) => {
                        let later = self.doc.split_off(&(n + 1));
                        rows.append(&mut std::mem::replace(&mut self.doc, later));
                        self.stage = Stage::Archive { from: n + 1 };
                    }
                    _ => {
                        rows.append(&mut self.doc);
                        self.stage = Stage::Rest;
                    }
                }
                self.write_rows(&mut out, rows.values());
            }
            Stage::Rest => {
                let rest = std::mem::take(&mut self.doc);
                self.write_rows(&mut out, rest.values());
                if self.format == Format::Json {
                    out.push(b']');
                }
                self.stage = Stage::Done;
            }
        }
        Ok(Some(out))
    }

    fn write_rows<'t>(&mut self, out: &mut Vec<u8>, rows: impl Iterator<Item = &'t Trial>) {
        for t in rows {
            match self.format {
                Format::Json => {
                    if self.rows > 0 {
                        out.push(b',');
                    }
                    let mut v = serde_json::to_value(t).unwrap_or_default();
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("job_id".into(), self.job_id.clone().into());
                    }
                    // Writing a JSON value into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut *out, &v);
                }
                Format::Csv => {
                    out.extend_from_slice(t.csv_row(&self.job_id).as_bytes());
                    out.push(b'\n');
                }
            }
            self.rows += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Write};
    use crate::store_contract::{sample_state, sample_trial};

    /// A store that cannot page its archive (the trait's default).
    struct Unpaged(MemoryStore);

    impl Store for Unpaged {
        type Error = crate::store::MemoryStoreError;
        async fn load(&self, job_id: &str) -> Result<Option<crate::store::Stored>, Self::Error> {
            self.0.load(job_id).await
        }
        async fn save(
            &self,
            job_id: &str,
            write: Write<'_>,
        ) -> Result<crate::store::Saved, Self::Error> {
            self.0.save(job_id, write).await
        }
        async fn delete(&self, job_id: &str, v: u64) -> Result<crate::store::Saved, Self::Error> {
            self.0.delete(job_id, v).await
        }
        async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, Self::Error> {
            // In reverse, with a repeat: the export sorts and dedups.
            let mut all = self.0.archived_trials(job_id).await?;
            all.reverse();
            all.push(all[0].clone());
            Ok(all)
        }
        async fn load_workload(
            &self,
            workload: &str,
        ) -> Result<Option<crate::store::StoredWorkload>, Self::Error> {
            self.0.load_workload(workload).await
        }
        async fn save_workload(
            &self,
            workload: &str,
            state: &crate::policy::shared::WorkloadState,
            expected: Option<u64>,
        ) -> Result<crate::store::Saved, Self::Error> {
            self.0.save_workload(workload, state, expected).await
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// A job whose document holds trials 1 to 3 and whose archive holds 2 to 2,600
    /// (2 and 3 in both: the document's copies win), as the old whole export wrote it.
    fn job(store: &impl Store) -> (JobState, Vec<Trial>) {
        let state = sample_state("exp", 1).unwrap();
        let archive: Vec<Trial> = (2..=2_600).map(sample_trial).collect();
        block_on(store.save("exp", Write::new(&state, None, &[]))).ok();
        block_on(store.save("exp", Write::new(&state, Some(1), &archive))).ok();
        let mut merged: BTreeMap<u64, Trial> =
            archive.into_iter().map(|t| (t.trial_number, t)).collect();
        for t in state.trials() {
            merged.insert(t.trial_number, t.clone());
        }
        (state, merged.into_values().collect())
    }

    fn export(store: &impl Store, state: &JobState, format: Format) -> (Vec<u8>, usize) {
        let mut export = TrialsExport::new("exp", state, format);
        let (mut body, mut chunks) = (Vec::new(), 0);
        while let Some(chunk) = block_on(export.next_chunk(store)).unwrap() {
            assert!(
                chunk.len() < 400 * EXPORT_PAGE,
                "a chunk of {} bytes",
                chunk.len()
            );
            body.extend_from_slice(&chunk);
            chunks += 1;
        }
        (body, chunks)
    }

    fn whole_json(trials: &[Trial]) -> Vec<u8> {
        let rows: Vec<serde_json::Value> = trials
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap();
                v.as_object_mut()
                    .unwrap()
                    .insert("job_id".into(), "exp".into());
                v
            })
            .collect();
        serde_json::to_vec(&rows).unwrap()
    }

    fn whole_csv(trials: &[Trial]) -> Vec<u8> {
        let mut csv = format!("{}\n", Trial::CSV_HEADER);
        for t in trials {
            csv.push_str(&t.csv_row("exp"));
            csv.push('\n');
        }
        csv.into_bytes()
    }

    #[test]
    fn pages_merge_with_the_document_in_trial_order() {
        let store = MemoryStore::default();
        let (state, want) = job(&store);
        assert_eq!(want.len(), 2_600);
        let (json, chunks) = export(&store, &state, Format::Json);
        assert_eq!(json, whole_json(&want));
        // The header, three pages (the last one short), the end.
        assert_eq!(chunks, 5);
        assert_eq!(export(&store, &state, Format::Csv).0, whole_csv(&want));
    }

    #[test]
    fn a_store_that_cannot_page_is_read_once_and_written_in_chunks() {
        let store = Unpaged(MemoryStore::default());
        let (state, want) = job(&store);
        let (json, chunks) = export(&store, &state, Format::Json);
        assert_eq!(json, whole_json(&want));
        assert_eq!(chunks, 5);
        assert_eq!(export(&store, &state, Format::Csv).0, whole_csv(&want));
    }

    #[test]
    fn an_empty_archive_and_a_full_last_page() {
        let store = MemoryStore::default();
        let state = sample_state("exp", 1).unwrap();
        block_on(store.save("exp", Write::new(&state, None, &[]))).unwrap();
        let doc: Vec<Trial> = state.trials().into_iter().cloned().collect();
        let (json, _) = export(&store, &state, Format::Json);
        assert_eq!(json, whole_json(&doc));
        // Exactly one page of archive past the document's trials.
        let archive: Vec<Trial> = (4..4 + EXPORT_PAGE as u64).map(sample_trial).collect();
        block_on(store.save("exp", Write::new(&state, Some(1), &archive))).unwrap();
        let mut want = doc;
        want.extend(archive);
        assert_eq!(export(&store, &state, Format::Json).0, whole_json(&want));
        assert_eq!(export(&store, &state, Format::Csv).0, whole_csv(&want));
        assert!(Format::parse(Some("xml"))
            .unwrap_err()
            .to_string()
            .starts_with("format:"));
    }
}
