//! Which job a request is about, read the way the core reads it.
//!
//! The Durable Object mode sends a request that names one job to that job's object,
//! which runs the service there. The job id has to be read here exactly as the
//! core's service will read it (the same path segment, the same percent-decoding of
//! `job_id` in the query, the `job_id` field of a JSON body), or one job could
//! reach two objects. The object checks it too: its store refuses any other job.
//! `None` means the request names no job the Worker can find this way (a health
//! check, a registration with a generated id, a malformed request); the Worker then
//! answers it itself.

/// The job a request is about, if it names one.
pub fn routed_job(method: &str, path: &str, query: &str, body: &[u8]) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let id = match (segments.as_slice(), method) {
        (["jobs"], "DELETE") | (["jobs", "batch_size"], "GET") => query_job_id(query)?,
        (["jobs"], "POST") | (["report"], "POST") | (["trials"], "PATCH") => body_job_id(body)?,
        (["jobs", "batch_size"], _) => return None,
        (["jobs", id], "GET")
        | (["jobs", id, "trials"], "GET")
        | (["jobs", id, "profiles"], "GET" | "POST") => id.to_string(),
        _ => return None,
    };
    (!id.is_empty()).then_some(id)
}

/// `%XX` and `+` decoded; `None` for a bad escape or bytes that are not UTF-8 (the
/// core answers 400 to those itself).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The first `job_id` in the query, decoded; `None` if any pair before it does not decode.
fn query_job_id(query: &str) -> Option<String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k)? == "job_id" {
            return percent_decode(v);
        }
    }
    None
}

/// The `job_id` string field of a JSON object body.
fn body_job_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .as_object()?
        .get("job_id")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_job_where_each_route_has_it() {
        assert_eq!(routed_job("GET", "/jobs/j1", "", b""), Some("j1".into()));
        assert_eq!(
            routed_job("GET", "/jobs/j1/trials", "format=csv", b""),
            Some("j1".into())
        );
        assert_eq!(
            routed_job("POST", "/jobs/j1/profiles", "", b"{}"),
            Some("j1".into())
        );
        assert_eq!(
            routed_job("GET", "/jobs/batch_size", "x=1&job_id=a%2Db+c", b""),
            Some("a-b c".into())
        );
        assert_eq!(
            routed_job("DELETE", "/jobs", "job_id=j2", b""),
            Some("j2".into())
        );
        let body = br#"{"job_id": "j3", "batch_size": 8}"#;
        assert_eq!(routed_job("POST", "/report", "", body), Some("j3".into()));
        assert_eq!(routed_job("PATCH", "/trials", "", body), Some("j3".into()));
        assert_eq!(routed_job("POST", "/jobs", "", body), Some("j3".into()));
    }

    #[test]
    fn names_no_job_when_the_core_would_not_reach_a_store() {
        assert_eq!(routed_job("GET", "/healthz", "", b""), None);
        assert_eq!(routed_job("GET", "/openapi.json", "", b""), None);
        // A generated id: the Worker registers it itself.
        assert_eq!(
            routed_job("POST", "/jobs", "", br#"{"job_id_prefix": "p"}"#),
            None
        );
        assert_eq!(
            routed_job("POST", "/jobs", "", br#"{"job_id": null}"#),
            None
        );
        assert_eq!(routed_job("POST", "/report", "", b"[\"j\"]"), None);
        assert_eq!(routed_job("POST", "/report", "", b"{bad"), None);
        assert_eq!(
            routed_job("GET", "/jobs/batch_size", "job_id=%zz", b""),
            None
        );
        assert_eq!(routed_job("GET", "/jobs/batch_size", "job_id=", b""), None);
        assert_eq!(routed_job("GET", "/jobs/batch_size", "", b""), None);
        assert_eq!(
            routed_job("POST", "/jobs/batch_size", "job_id=j", b""),
            None
        );
        assert_eq!(routed_job("PUT", "/jobs/j1", "", b""), None);
        assert_eq!(routed_job("HEAD", "/jobs/j1", "", b""), None);
        assert_eq!(routed_job("GET", "/jobs/j1/other", "", b""), None);
    }
}
