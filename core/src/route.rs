//! The route table: every route the service answers, written once.
//!
//! [`ROUTES`] lists each (method, path template) pair with what it does
//! ([`Endpoint`]) and where its request names the job ([`JobIn`]). Everything
//! that needs to know the routes derives from it: the service's dispatch
//! ([`find`]), the job a request is about (`Request::job_id`, which the Worker
//! uses to pick a Durable Object), the hosts' choice between an API route and a
//! page asset ([`is_api_path`]), the paths of the OpenAPI document, and the job
//! ids a path cannot carry ([`crate::spec::RESERVED_JOB_IDS`], checked against it).
//! Paths are matched percent-decoded, each segment decoded once.
//!
//! A row also says whether the route writes its job's document (hosts that
//! serialize one job's writes take a turn for these). The OpenAPI document's
//! `job_id` and `run_id` parameters come from the row, and [`path`] builds a
//! route's path from its template.
//!
//! A new route is one row here and one arm in the service's dispatch and in the
//! OpenAPI document's operations; the compiler points at the arms (the matches
//! over [`Endpoint`] are exhaustive).

use crate::api::ApiError;

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET`/`HEAD /healthz`: liveness and whether the store takes writes.
    Health,
    /// `GET /openapi.json`: the OpenAPI document.
    OpenApi,
    /// `POST /jobs`: register a job (Zeus).
    RegisterJob,
    /// `DELETE /jobs?job_id=`: delete a job and its trials.
    DeleteJob,
    /// `GET /jobs?limit=&cursor=`: the job list, newest first, a page at a time.
    ListJobs,
    /// `GET /jobs/{job_id}/summary`: one job's summary (as in the list).
    JobSummary,
    /// `GET /jobs/batch_size?job_id=`: dispatch the next trial (Zeus).
    NextTrial,
    /// `POST /report`: a run's totals after an epoch (Zeus).
    Report,
    /// `PATCH /trials`: end a trial (Zeus).
    EndTrial,
    /// `GET /jobs/{job_id}`: the job document.
    JobDocument,
    /// `GET /jobs/{job_id}/trials`: every trial, as JSON or CSV.
    Trials,
    /// `GET /jobs/{job_id}/profiles`: the job's power profiles.
    Profiles,
    /// `POST /jobs/{job_id}/profiles`: store a power profile.
    AddProfile,
    /// `POST /jobs/{job_id}/runs`: a host joins a run across hosts.
    JoinRun,
    /// `GET /jobs/{job_id}/runs/{run_id}`: a run across hosts as it stands.
    RunState,
    /// `POST /jobs/{job_id}/runs/{run_id}/heartbeat`: a host is alive.
    RunHeartbeat,
    /// `POST /jobs/{job_id}/runs/{run_id}/profile`: a host's power profile.
    RunProfile,
    /// `POST /jobs/{job_id}/runs/{run_id}/report`: a host's totals after an epoch.
    RunReport,
    /// `POST /jobs/{job_id}/runs/{run_id}/done`: a host's command ended.
    RunDone,
}

/// Where a route's request names its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobIn {
    /// Nowhere: the route is about no single job.
    Nowhere,
    /// The `{job_id}` segment of the path, percent-decoded.
    Path,
    /// The percent-decoded `job_id` query parameter.
    Query,
    /// The `job_id` field of the JSON body (absent when the id is generated).
    Body,
}

/// One row of the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteDef {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template; `{job_id}` matches one non-empty segment.
    pub path: &'static str,
    /// What the route does.
    pub endpoint: Endpoint,
    /// Where the request names its job.
    pub job_in: JobIn,
    /// Whether the route may write its job's document (hosts that serialize the
    /// writes of one job take a turn for these).
    pub writes: bool,
}

/// The table's last column: the route may write its job's document.
const WRITES: bool = true;
/// The table's last column: the route only reads.
const READS: bool = false;

const fn row(
    method: &'static str,
    path: &'static str,
    endpoint: Endpoint,
    job_in: JobIn,
    writes: bool,
) -> RouteDef {
    RouteDef {
        method,
        path,
        endpoint,
        job_in,
        writes,
    }
}

/// Every route, in the order the OpenAPI document lists them.
#[rustfmt::skip]
pub const ROUTES: &[RouteDef] = &[
    row("POST",   "/jobs",                                     Endpoint::RegisterJob,   JobIn::Body,    WRITES),
    row("DELETE", "/jobs",                                     Endpoint::DeleteJob,     JobIn::Query,   WRITES),
    row("GET",    "/jobs",                                     Endpoint::ListJobs,      JobIn::Nowhere, READS),
    row("GET",    "/jobs/batch_size",                          Endpoint::NextTrial,     JobIn::Query,   WRITES),
    row("POST",   "/report",                                   Endpoint::Report,        JobIn::Body,    WRITES),
    row("PATCH",  "/trials",                                   Endpoint::EndTrial,      JobIn::Body,    WRITES),
    row("GET",    "/healthz",                                  Endpoint::Health,        JobIn::Nowhere, READS),
    row("HEAD",   "/healthz",                                  Endpoint::Health,        JobIn::Nowhere, READS),
    row("GET",    "/openapi.json",                             Endpoint::OpenApi,       JobIn::Nowhere, READS),
    row("GET",    "/jobs/{job_id}",                            Endpoint::JobDocument,   JobIn::Path,    READS),
    row("GET",    "/jobs/{job_id}/summary",                    Endpoint::JobSummary,    JobIn::Path,    READS),
    row("GET",    "/jobs/{job_id}/trials",                     Endpoint::Trials,        JobIn::Path,    READS),
    row("GET",    "/jobs/{job_id}/profiles",                   Endpoint::Profiles,      JobIn::Path,    READS),
    row("POST",   "/jobs/{job_id}/profiles",                   Endpoint::AddProfile,    JobIn::Path,    WRITES),
    row("POST",   "/jobs/{job_id}/runs",                       Endpoint::JoinRun,       JobIn::Path,    WRITES),
    row("GET",    "/jobs/{job_id}/runs/{run_id}",              Endpoint::RunState,      JobIn::Path,    READS),
    row("POST",   "/jobs/{job_id}/runs/{run_id}/heartbeat",    Endpoint::RunHeartbeat,  JobIn::Path,    WRITES),
    row("POST",   "/jobs/{job_id}/runs/{run_id}/profile",      Endpoint::RunProfile,    JobIn::Path,    WRITES),
    row("POST",   "/jobs/{job_id}/runs/{run_id}/report",       Endpoint::RunReport,     JobIn::Path,    WRITES),
    row("POST",   "/jobs/{job_id}/runs/{run_id}/done",         Endpoint::RunDone,       JobIn::Path,    WRITES),
];

/// The template segments that match any one path segment: the job, the run.
const JOB_ID: &str = "{job_id}";
const RUN_ID: &str = "{run_id}";

/// A request matched to its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The matched row.
    pub def: &'static RouteDef,
    /// The path's `{job_id}` segment, percent-decoded, for routes that have one.
    pub path_job_id: Option<String>,
    /// The path's `{run_id}` segment, percent-decoded, for routes that have one.
    pub path_run_id: Option<String>,
}

/// A template's match of a path: how many literal segments it matched (more
/// literal wins: `/jobs/batch_size` is not the job `batch_size`) and its
/// `{job_id}` and `{run_id}` segments.
#[derive(Clone, Copy, Default)]
struct Match<'a> {
    literal: usize,
    job_id: Option<&'a str>,
    run_id: Option<&'a str>,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Decodes the `%XX` escapes of a URL component (RFC 3986), and with `plus_is_space`
/// a `+` as a space (a query's form encoding; in a path `+` is itself). `None` for a
/// bad escape or bytes that are not UTF-8. Every component a route reads is
/// decoded here, once: the path's segments by [`find`], the query's parameters
/// by the service.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
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

/// How `template` matches the (decoded) segments of a path, if it does.
fn matches<'a>(template: &str, given: &'a [String]) -> Option<Match<'a>> {
    let mut m = Match::default();
    let mut given = given.iter().map(String::as_str);
    for want in segments(template) {
        let seg = given.next()?;
        match want {
            JOB_ID => m.job_id = Some(seg),
            RUN_ID => m.run_id = Some(seg),
            _ if want == seg => m.literal += 1,
            _ => return None,
        }
    }
    given.next().is_none().then_some(m)
}

/// The characters a path segment keeps as they are (RFC 3986's unreserved set);
/// every other byte is written `%XX`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes `s` as one path segment: [`find`] decodes it back to `s`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client's request to `endpoint`, from its row of the table in one lookup:
/// the method, and the path with its `{job_id}` and `{run_id}` segments filled,
/// in order, from `values` (each percent-encoded), without the query. `None`
/// when the endpoint has no route or `values` does not have one value per
/// variable segment of its template.
pub fn request_line(endpoint: Endpoint, values: &[&str]) -> Option<(&'static str, String)> {
    let def = ROUTES.iter().find(|r| r.endpoint == endpoint)?;
    let mut values = values.iter();
    let mut out = String::new();
    for seg in segments(def.path) {
        out.push('/');
        match seg {
            JOB_ID | RUN_ID => out.push_str(&encode_segment(values.next()?)),
            literal => out.push_str(literal),
        }
    }
    values.next().is_none().then_some((def.method, out))
}

/// The route of `method` on `path` (without the query), its segments
/// percent-decoded first (a client that encodes the `:` of an id as `%3A` reaches
/// the same job as one that does not): 400 for a bad escape, 404 when no template
/// matches the path, 405 when one does but not with this method.
pub fn find(method: &str, path: &str) -> Result<Route, ApiError> {
    let decoded = segments(path)
        .map(|s| percent_decode(s, false))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "path: bad percent-encoding or not UTF-8 in {path:?}"
            ))
        })?;
    let matched: Vec<(&'static RouteDef, Match<'_>)> = ROUTES
        .iter()
        .filter_map(|def| matches(def.path, &decoded).map(|m| (def, m)))
        .collect();
    let best = matched
        .iter()
        .map(|(_, m)| m.literal)
        .max()
        .ok_or_else(|| ApiError::NotFound(format!("no route {method} {path}")))?;
    matched
        .iter()
        .filter(|(_, m)| m.literal == best)
        .find(|(def, _)| def.method == method)
        .map(|&(def, m)| Route {
            def,
            path_job_id: m.job_id.map(str::to_string),
            path_run_id: m.run_id.map(str::to_string),
        })
        .ok_or_else(|| {
            ApiError::MethodNotAllowed(format!("method {method} is not allowed on {path}"))
        })
}

/// Whether `path` belongs to the API rather than to the page: its first segment
/// is the first segment of a route. Hosts that also serve the page send every
/// other `GET` to their static files.
pub fn is_api_path(path: &str) -> bool {
    let first = segments(path).next().unwrap_or("");
    let first = percent_decode(first, false).unwrap_or_else(|| first.to_string());
    ROUTES
        .iter()
        .any(|def| segments(def.path).next() == Some(first.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes README.md's "Routes" table lists, as (method, path template):
    /// `` `POST`/`GET /jobs/{job_id}/profiles` `` is two, `a\|b` in the last segment
    /// is one route each, and a query (`?job_id=`) or an optional part (`[...]`) is
    /// not part of the path.
    fn readme_routes() -> std::collections::BTreeSet<(String, String)> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Routes")
            .nth(1)
            .expect("README.md has a \"### Routes\" section");
        let mut out = std::collections::BTreeSet::new();
        let rows = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'));
        for line in rows {
            let cell = line
                .trim_start_matches('|')
                .split(" | ")
                .next()
                .unwrap()
                .trim();
            if !cell.starts_with('`') {
                continue; // the header and the separator
            }
            let chunks: Vec<&str> = cell
                .split('`')
                .filter(|c| !c.is_empty() && *c != "/")
                .collect();
            let (last, first) = chunks.split_last().expect("a route cell");
            let (method, path) = last
                .split_once(' ')
                .unwrap_or_else(|| panic!("{cell}: METHOD /path"));
            let path = path.split(['?', '[']).next().unwrap().replace("\\|", "|");
            let (base, tail) = path.rsplit_once('/').unwrap();
            for m in first.iter().chain([&method]) {
                for alt in tail.split('|') {
                    out.insert((m.to_string(), format!("{base}/{alt}")));
                }
            }
        }
        out
    }

    /// The routes lambda/README.md's "Routes (...)" paragraph lists: its code
    /// spans, in order, each `METHOD[|METHOD] /path` (a query or an optional part
    /// is not part of the path), or a bare `/last-segment` standing for the
    /// span before it with that last segment.
    fn lambda_readme_routes() -> std::collections::BTreeSet<(String, String)> {
        let readme = include_str!("../../lambda/README.md");
        let paragraph = readme
            .split("\nRoutes (")
            .nth(1)
            .expect("lambda/README.md has a \"Routes (...)\" paragraph")
            .split("\n\n")
            .next()
            .unwrap();
        let mut out = std::collections::BTreeSet::new();
        let mut last: Option<(Vec<String>, String)> = None;
        for span in paragraph.split('`').skip(1).step_by(2) {
            let (methods, path) = match span.split_once(' ') {
                Some((methods, path)) => (
                    methods.split('|').map(str::to_string).collect(),
                    path.split(['?', '[']).next().unwrap().to_string(),
                ),
                None => {
                    let (methods, before) = last
                        .clone()
                        .unwrap_or_else(|| panic!("`{span}`: METHOD /path first"));
                    let (base, _) = before.rsplit_once('/').unwrap();
                    (methods, format!("{base}{span}"))
                }
            };
            assert!(path.starts_with('/'), "`{span}`: METHOD /path");
            for m in &methods {
                out.insert((m.clone(), path.clone()));
            }
            last = Some((methods, path));
        }
        out
    }

    /// Fails naming the routes `doc` lacks and those it lists that are not in `ROUTES`.
    fn assert_lists_the_route_table(
        doc: &str,
        listed: std::collections::BTreeSet<(String, String)>,
    ) {
        let table: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let missing: Vec<_> = table.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&table).collect();
        assert!(missing.is_empty(), "{doc} lacks {missing:?}");
        assert!(
            extra.is_empty(),
            "{doc} lists routes that are not in ROUTES: {extra:?}"
        );
    }

    #[test]
    fn the_readme_route_table_is_the_route_table() {
        assert_lists_the_route_table("README.md's Routes table", readme_routes());
    }

    #[test]
    fn the_lambda_readme_lists_the_route_table() {
        assert_lists_the_route_table(
            "lambda/README.md's Routes paragraph",
            lambda_readme_routes(),
        );
    }

    fn endpoint(method: &str, path: &str) -> Result<Endpoint, u16> {
        find(method, path)
            .map(|r| r.def.endpoint)
            .map_err(|e| e.status())
    }

    #[test]
    fn literal_segments_win_over_the_job_id() {
        assert_eq!(endpoint("GET", "/jobs/batch_size"), Ok(Endpoint::NextTrial));
        assert_eq!(endpoint("POST", "/jobs/batch_size"), Err(405));
        assert_eq!(endpoint("GET", "/jobs/j1"), Ok(Endpoint::JobDocument));
        assert_eq!(
            find("GET", "/jobs/j1/trials")
                .unwrap()
                .path_job_id
                .as_deref(),
            Some("j1")
        );
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(endpoint("GET", "/jobs/j1/other"), Err(404));
        assert_eq!(endpoint("GET", "/nope"), Err(404));
        assert_eq!(endpoint("GET", "/"), Err(404));
        assert_eq!(endpoint("PUT", "/jobs/j1"), Err(405));
        assert_eq!(endpoint("POST", "/healthz"), Err(405));
        assert_eq!(endpoint("HEAD", "/healthz"), Ok(Endpoint::Health));
        // Empty segments are ignored, as the hosts always did.
        assert_eq!(endpoint("POST", "//report/"), Ok(Endpoint::Report));
    }

    #[test]
    fn every_row_is_reachable_and_unique() {
        for def in ROUTES {
            let path = def.path.replace(JOB_ID, "some-job").replace(RUN_ID, "r1");
            let route = find(def.method, &path).unwrap();
            assert_eq!(route.def, def, "{} {}", def.method, def.path);
            assert_eq!(
                route.path_job_id.is_some(),
                def.job_in == JobIn::Path,
                "{} {}",
                def.method,
                def.path
            );
        }
    }

    #[test]
    fn paths_are_built_from_the_table_and_found_again() {
        let line = |endpoint, values: &[&str]| {
            request_line(endpoint, values).map(|(m, p)| format!("{m} {p}"))
        };
        assert_eq!(
            line(Endpoint::NextTrial, &[]).as_deref(),
            Some("GET /jobs/batch_size")
        );
        assert_eq!(
            line(Endpoint::RunReport, &["ag:1", "r 1/x"]).as_deref(),
            Some("POST /jobs/ag%3A1/runs/r%201%2Fx/report")
        );
        // One value per variable segment, no more and no fewer.
        assert_eq!(line(Endpoint::JobDocument, &[]), None);
        assert_eq!(line(Endpoint::JobDocument, &["a", "b"]), None);
        assert_eq!(line(Endpoint::Report, &["a"]), None);
        // Every row's path, built from odd ids, finds the row and the ids again.
        let (job, run) = ("a/b?c#d%e é+f", "r:1 %2F");
        for def in ROUTES {
            let values: Vec<&str> = [(JOB_ID, job), (RUN_ID, run)]
                .into_iter()
                .filter(|(v, _)| def.path.contains(v))
                .map(|(_, id)| id)
                .collect();
            let (method, built) = request_line(def.endpoint, &values).unwrap();
            // `HEAD /healthz` shares its endpoint with `GET`, the first row.
            assert!(method == def.method || def.method == "HEAD", "{built}");
            let found = find(def.method, &built).unwrap();
            assert_eq!(found.def.endpoint, def.endpoint, "{built}");
            assert_eq!(
                found.path_job_id.as_deref(),
                def.path.contains(JOB_ID).then_some(job),
                "{built}"
            );
            assert_eq!(
                found.path_run_id.as_deref(),
                def.path.contains(RUN_ID).then_some(run),
                "{built}"
            );
        }
    }

    #[test]
    fn path_segments_are_percent_decoded_once() {
        let r = find("POST", "/jobs/ag%3Acolon-1/runs/r%3A1/report").unwrap();
        assert_eq!(r.def.endpoint, Endpoint::RunReport);
        assert_eq!(r.path_job_id.as_deref(), Some("ag:colon-1"));
        assert_eq!(r.path_run_id.as_deref(), Some("r:1"));
        // Decoded once: `%253A` is the id `%3A`, and `+` is itself in a path.
        let r = find("GET", "/jobs/a%253A+b").unwrap();
        assert_eq!(r.path_job_id.as_deref(), Some("a%3A+b"));
        // Literal segments compare decoded (RFC 3986: `%5F` is `_`).
        assert_eq!(
            endpoint("GET", "/jobs/batch%5Fsize"),
            Ok(Endpoint::NextTrial)
        );
        assert_eq!(endpoint("GET", "/%6Aobs/j1"), Ok(Endpoint::JobDocument));
        assert!(is_api_path("/%6Aobs/j1"));
        for bad in ["/jobs/a%3", "/jobs/a%zz", "/jobs/%FF"] {
            assert_eq!(endpoint("GET", bad), Err(400), "{bad}");
        }
    }

    /// The ids a route cannot carry: substituted for `{job_id}` (or `{run_id}`)
    /// in a row's path, some other row's literal segment wins. The job spec
    /// refuses exactly these ([`crate::spec::RESERVED_JOB_IDS`]); no run id is.
    #[test]
    fn the_reserved_ids_are_those_the_route_table_shadows() {
        let literals: Vec<&str> = ROUTES
            .iter()
            .flat_map(|d| segments(d.path))
            .filter(|s| !s.starts_with('{'))
            .collect();
        let shadowed = |placeholder: &str| {
            let mut out: Vec<&str> = literals
                .iter()
                .copied()
                .filter(|lit| {
                    ROUTES
                        .iter()
                        .filter(|d| d.path.contains(placeholder))
                        .any(|d| {
                            let path = d
                                .path
                                .replace(JOB_ID, if placeholder == JOB_ID { lit } else { "j" })
                                .replace(RUN_ID, if placeholder == RUN_ID { lit } else { "r" });
                            find(d.method, &path).ok().map(|r| r.def) != Some(d)
                        })
                })
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        assert_eq!(shadowed(JOB_ID), crate::spec::RESERVED_JOB_IDS);
        assert!(shadowed(RUN_ID).is_empty());
    }

    #[test]
    fn api_paths_versus_page_assets() {
        for path in [
            "/jobs",
            "/jobs/x/trials",
            "/healthz",
            "/openapi.json",
            "/report",
        ] {
            assert!(is_api_path(path), "{path}");
        }
        for path in ["/", "/index.html", "/assets/app.js", "/jobsx"] {
            assert!(!is_api_path(path), "{path}");
        }
    }
}
