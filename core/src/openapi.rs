//! The OpenAPI document of the service's routes (served at `/openapi.json`).
//!
//! Written out here rather than derived, so the core keeps no extra dependency and
//! still builds for wasm32; the tests below hold every schema to the serde form of
//! its type (same property names, same required ones), so the two cannot drift.

use serde_json::{json, Value};

use crate::route::{Endpoint, JobIn, RouteDef, ROUTES};

fn error_responses(codes: &[u16]) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for code in codes {
        let why = match code {
            400 => "The operation does not apply to the job's state",
            401 => "Missing or wrong bearer token",
            404 => "Unknown job, trial or route",
            405 => "Method not allowed on this route",
            409 => "The job exists with another configuration",
            413 => "Request body over 64 KiB",
            500 => "The stored job document is inconsistent; delete the job",
            422 => "A field broke a rule; the message names it",
            503 => "The store failed or the job stayed contended; retry",
            _ => "Error",
        };
        map.insert(
            code.to_string(),
            json!({"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    map
}

fn json_body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A schema of one JSON type with what it means.
fn described(json_type: &str, description: &str) -> Value {
    json!({"type": json_type, "description": description})
}

/// The schema of a job's saving against its default (apart: one `json!` of every
/// schema would pass the macro's recursion limit).
fn savings_schema() -> Value {
    json!({
        "type": "object",
        "description": "What a job saved against running every finished run at its default batch size: the default's energy, time and cost per run are the means over the job's recent runs at the default batch size that reached the target, times the finished runs, less the job's totals. Positive is saved.",
        "required": ["basis_runs", "runs", "default_cost", "energy", "time", "cost", "cost_fraction"],
        "properties": {
            "basis_runs": described("integer", "Runs at the default batch size that reached the target, the estimate rests on"),
            "runs": described("integer", "Finished runs the estimate covers"),
            "default_cost": described("number", "The default's estimated Zeus cost over those runs"),
            "energy": described("number", "Joules saved (negative: spent beyond the default)"),
            "time": described("number", "Seconds saved (negative: spent beyond the default)"),
            "cost": described("number", "Zeus cost saved (negative: spent beyond the default)"),
            "cost_fraction": described("number", "cost / default_cost: 0.25 is a quarter of the default's cost saved"),
            "cost_uncertainty": {"type": "number", "minimum": 0, "description": "One standard error (not a bound) of default_cost, and so of cost, in Zeus cost: the basis runs' costs' sample standard deviation over the square root of basis_runs, times runs. Absent with one basis run (uncertainty unknown)"},
            "cost_fraction_uncertainty": {"type": "number", "minimum": 0, "description": "cost_uncertainty / default_cost: one standard error of cost_fraction (|cost_fraction| under two of them is within the noise). Absent when cost_uncertainty is"}
        }
    })
}

/// What a wattwise job that names a workload shares with the workload's other jobs.
fn sharing_schema() -> Value {
    let sizes = json!({"type": "array", "items": {"type": "integer"}});
    json!({
        "type": "object",
        "description": "What a wattwise job that names its workload reused of the workload's other jobs on this endpoint (their epochs to target per batch size; its time and power stay its own), and what it taught them. Absent for a job that shares nothing.",
        "required": ["from", "reused_runs", "reused_batch_sizes", "probed", "dropped", "taught_runs"],
        "properties": {
            "from": {"type": "array", "items": {"type": "string"}, "description": "The jobs whose runs it started from, most recent first"},
            "reused_runs": described("integer", "The other jobs' runs it started from, over every batch size"),
            "reused_batch_sizes": sizes.clone(),
            "probed": {"type": "array", "items": {"type": "integer"}, "description": "Batch sizes probed for one epoch instead of run to the target"},
            "dropped": described("boolean", "Its own runs disagreed with the others': it dropped what they taught and explores on its own"),
            "taught_runs": described("integer", "Its own runs the workload's other jobs learn from")
        }
    })
}

/// JobSummary's `savings`: a Savings, or null.
fn savings_property() -> Value {
    json!({"allOf": [schema_ref("Savings")], "nullable": true, "description": "What the job saved against its default batch size; null until a run at the default batch size that reached the target is among the recent trials"})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn operation(summary: &str, mut responses: serde_json::Map<String, Value>, extra: Value) -> Value {
    for (k, v) in error_responses(&[401, 413, 500, 503]) {
        responses.entry(k).or_insert(v);
    }
    let mut op = json!({"summary": summary, "responses": responses});
    if let (Some(op), Some(extra)) = (op.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            op.insert(k.clone(), v.clone());
        }
    }
    op
}

fn responses(pairs: Vec<(&str, Value)>, errors: &[u16]) -> serde_json::Map<String, Value> {
    let mut map = error_responses(errors);
    for (code, v) in pairs {
        map.insert(code.to_string(), v);
    }
    map
}

/// The parameters a route's row says it has: the job's id where [`JobIn`] puts
/// it (path or query), and the run's id where the template has `{run_id}`.
fn row_parameters(def: &RouteDef) -> Vec<Value> {
    let string = |name: &str, place: &str| json!({"name": name, "in": place, "required": true, "schema": {"type": "string"}});
    let mut out = Vec::new();
    match def.job_in {
        JobIn::Path => out.push(string("job_id", "path")),
        JobIn::Query => out.push(string("job_id", "query")),
        JobIn::Body | JobIn::Nowhere => {}
    }
    if def.path.contains("{run_id}") {
        out.push(string("run_id", "path"));
    }
    out
}

fn schemas() -> Value {
    let number = json!({"type": "number"});
    let integer = json!({"type": "integer"});
    json!({
        "Error": {
            "type": "object", "required": ["message"],
            "properties": {"message": described("string", "Names the field and the rule")}
        },
        "JobSpec": {
            "type": "object",
            "description": "A job as a client registers it (Zeus's JobSpecFromClient); the answer echoes it with job_id set and batch sizes sorted.",
            "required": ["job_id_prefix", "batch_sizes", "default_batch_size", "max_power", "number_of_gpus", "gpu_model"],
            "properties": {
                "job_id": {"type": "string", "nullable": true, "maxLength": 128, "description": "Starts with job_id_prefix; generated when absent; ASCII letters, digits and - _ . :, not `.`, `..` nor `batch_size`"},
                "job_id_prefix": {"type": "string", "maxLength": 128},
                "batch_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 256},
                "default_batch_size": {"type": "integer", "minimum": 1, "description": "One of batch_sizes"},
                "eta_knob": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                "beta_knob": {"type": "number", "nullable": true, "exclusiveMinimum": true, "minimum": 0, "default": 2.0},
                "target_metric": {"type": "number", "default": 0.5},
                "higher_is_better_metric": {"type": "boolean", "default": true},
                "max_epochs": {"type": "integer", "minimum": 1, "default": 100},
                "num_pruning_rounds": {"type": "integer", "minimum": 0, "maximum": 100, "default": 2},
                "window_size": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0},
                "mab_prior_mean": {"type": "number", "default": 0.0},
                "mab_prior_precision": {"type": "number", "minimum": 0, "default": 0.0},
                "mab_num_explorations": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 2},
                "mab_seed": {"type": "integer", "minimum": 0, "nullable": true},
                "max_power": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "description": "Watts, all GPUs together"},
                "number_of_gpus": {"type": "integer", "minimum": 1},
                "gpu_model": {"type": "string", "minLength": 1, "maxLength": 128},
                "policy": {"type": "string", "enum": ["zeus", "wattwise"], "default": "zeus", "description": "The batch size policy: \"zeus\" (Zeus: pruning, then Thompson sampling; what a spec without the field runs, as Zeus's client sends it; omitted from the echo) or \"wattwise\" (wattwise's: local search with cost-aware stopping; the default of a `wattwise run` job file, as it saves against the default where Zeus can cost more)"},
                "workload": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$", "description": "The workload the job trains (a wattwise addition, absent for Zeus's client). The wattwise jobs of one workload on this endpoint share what their runs taught about epochs to target per batch size (with its spread): a job starts from the others' knowledge and its own GPU's power profiles, and drops the knowledge when its own runs disagree. A Zeus job stores and echoes it only."}
            }
        },
        "TrialId": {
            "type": "object", "required": ["job_id", "batch_size", "trial_number"],
            "properties": {"job_id": {"type": "string"}, "batch_size": {"type": "integer", "minimum": 0}, "trial_number": {"type": "integer", "minimum": 0}}
        },
        "TrainingResult": {
            "type": "object",
            "required": ["job_id", "batch_size", "trial_number", "time", "energy", "metric", "current_epoch"],
            "properties": {
                "job_id": {"type": "string"}, "batch_size": {"type": "integer", "minimum": 0},
                "trial_number": {"type": "integer", "minimum": 0},
                "time": {"type": "number", "minimum": 0, "description": "Seconds of training so far"},
                "energy": {"type": "number", "minimum": 0, "description": "Joules so far"},
                "metric": number, "current_epoch": {"type": "integer", "minimum": 0},
                "energy_uncertainty_j": {"type": "number", "minimum": 0, "maximum": 1e18, "description": "Half-width of the bound on energy, joules: the true energy lies within energy ± energy_uncertainty_j (a wattwise addition; absent from Zeus's client). The trial keeps its last report's bound"}
            }
        },
        "ReportResponse": {
            "type": "object", "required": ["stop_train", "converged", "message"],
            "properties": {"stop_train": {"type": "boolean"}, "converged": {"type": "boolean"}, "message": {"type": "string"}}
        },
        "PowerMeasurement": {
            "type": "object", "required": ["power_limit", "average_power", "throughput"],
            "properties": {
                "power_limit": {"type": "integer", "minimum": 1, "description": "Watts"},
                "average_power": {"type": "number", "minimum": 0, "description": "Watts"},
                "throughput": {"type": "number", "minimum": 0, "description": "Samples per second"},
                "energy_uncertainty_j": {"type": "number", "minimum": 0, "description": "Half-width of the bound on one step's energy per GPU, joules (the step's energy per GPU is average_power * batch_size / throughput); absent when no bound was measured"}
            }
        },
        "PowerProfile": {
            "type": "object", "required": ["batch_size", "phase", "gpu_model", "measurements"],
            "properties": {
                "batch_size": described("integer", "One of the job's batch sizes"),
                "phase": {"type": "string", "enum": ["train", "eval"]},
                "gpu_model": {"type": "string", "minLength": 1, "maxLength": 128},
                "measurements": {"type": "array", "minItems": 1, "maxItems": 64, "items": schema_ref("PowerMeasurement")},
                "uncertain": {"type": "array", "items": described("integer", "Watts"), "description": "The note that the profile windows were too short to tell the chosen limit from others: the chosen limit first, then the measured limits whose step energies lie within their bounds of it; absent when every limit was told apart"}
            }
        },
        "Trial": {
            "type": "object",
            "description": "One row of the trials export (the seed's Trial table).",
            "required": ["job_id", "trial_number", "batch_size", "type", "start_ms", "status"],
            "properties": {
                "job_id": {"type": "string"}, "trial_number": integer, "batch_size": integer,
                "type": {"type": "string", "enum": ["Exploration", "Concurrent", "MAB"]},
                "start_ms": described("integer", "Unix milliseconds"),
                "status": {"type": "string", "enum": ["Dispatched", "Succeeded", "Failed"]},
                "end_ms": described("integer", "Succeeded and Failed only"),
                "time": described("number", "Succeeded only"),
                "energy": described("number", "Succeeded only"),
                "energy_uncertainty_j": described("number", "Succeeded only, when the run's last report gave the bound on its energy: half-width, joules"),
                "converged": described("boolean", "Succeeded only")
            }
        },
        "JobState": {
            "type": "object",
            "description": "The whole job document: parameters, stage, per-batch-size statistics, open and recent trials, RNG state, profiles.",
            "required": ["job_id", "params", "stage", "next_trial_number", "min_cost_batch_size"],
            "properties": {
                "job_id": {"type": "string"},
                "params": {"type": "object"},
                "stage": {"type": "string", "enum": ["Pruning", "MAB"]},
                "next_trial_number": integer,
                "min_cost": {"type": "number", "nullable": true},
                "min_cost_batch_size": integer,
                "open_trials": {"type": "array", "items": {"type": "object"}},
                "recent_trials": {"type": "array", "items": {"type": "object"}},
                "profiles": {"type": "array", "items": schema_ref("PowerProfile")},
                "runs": {"type": "array", "items": {"type": "object"}, "description": "Runs across hosts (absent when the job never had one); GET /jobs/{job_id}/runs/{run_id} shows one"}
            },
            "additionalProperties": true
        },
        "JoinRun": {
            "type": "object",
            "description": "A host joins a run across hosts; the first to arrive opens it and dispatches its trial (a wattwise addition).",
            "required": ["run_id", "hosts", "host_rank"],
            "properties": {
                "run_id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "The same on every host of the run: ASCII letters, digits and - _ . :"},
                "hosts": {"type": "integer", "minimum": 1, "maximum": 256},
                "host_rank": {"type": "integer", "minimum": 0, "description": "0 to hosts - 1"},
                "host_name": {"type": "string", "nullable": true, "maxLength": 32, "description": "Named in messages"},
                "host_timeout_s": {"type": "number", "minimum": 1, "maximum": 86400, "default": 60, "description": "A host silent this long fails the run (the opener's value counts)"},
                "selector": described("object", "How the run's power limit is chosen: {\"kind\": \"energy\" | \"time\" | \"zeus_cost\" (eta, max_power) | \"max_slowdown\" (factor)}; default zeus_cost with eta 0.5 (the opener's counts)")
            }
        },
        "HostCall": {
            "type": "object", "required": ["host_rank"],
            "properties": {"host_rank": {"type": "integer", "minimum": 0}}
        },
        "HostMeasurement": {
            "type": "object", "required": ["power_limit", "energy", "time", "steps"],
            "properties": {
                "power_limit": {"type": "integer", "minimum": 1, "description": "Watts"},
                "energy": {"type": "number", "minimum": 0, "description": "Joules of the host's GPUs over the window"},
                "time": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "description": "Seconds"},
                "steps": {"type": "integer", "minimum": 1},
                "energy_uncertainty_j": {"type": "number", "minimum": 0, "maximum": 1e18, "description": "Half-width of the bound on energy, joules; absent when the host measured none (the run's combined limit then has no bound)"}
            }
        },
        "HostProfile": {
            "type": "object", "required": ["host_rank", "gpu_count", "measurements"],
            "properties": {
                "host_rank": {"type": "integer", "minimum": 0},
                "gpu_count": {"type": "integer", "minimum": 1, "maximum": 4096},
                "measurements": {"type": "array", "minItems": 1, "maxItems": 64, "items": schema_ref("HostMeasurement"), "description": "Power limits unique"}
            }
        },
        "HostReport": {
            "type": "object", "required": ["host_rank", "time", "energy", "metric", "current_epoch"],
            "properties": {
                "host_rank": {"type": "integer", "minimum": 0},
                "time": {"type": "number", "minimum": 0, "description": "The host's seconds of training so far"},
                "energy": {"type": "number", "minimum": 0, "description": "Joules of the host's GPUs so far"},
                "metric": described("number", "Rank 0's is the run's"),
                "current_epoch": {"type": "integer", "minimum": 1, "description": "Each host reports its epochs in order; a repeat is ignored"},
                "energy_uncertainty_j": {"type": "number", "minimum": 0, "description": "Half-width of the bound on energy, joules (at most 1e18 / hosts); absent when the host measured none"}
            }
        },
        "EpochTotals": {
            "type": "object", "required": ["epoch", "time", "energy", "metric", "hosts"],
            "properties": {
                "epoch": integer,
                "time": described("number", "The slowest host's seconds so far"),
                "energy": described("number", "Every host's joules so far, summed"),
                "metric": {"type": "number", "nullable": true},
                "hosts": integer,
                "energy_uncertainty_j": described("number", "The sum of the hosts' bounds on their energy, joules (the run's report to the job carries it); absent when a host gave none")
            }
        },
        "RunView": {
            "type": "object",
            "description": "A run across hosts as it stands: its trial, its power limit once every host's profile is in, whether to stop.",
            "required": ["job_id", "run_id", "trial_number", "batch_size", "hosts", "joined", "status", "stop_train", "converged", "message", "power_limit", "profiled", "reported_epoch", "epochs"],
            "properties": {
                "job_id": {"type": "string"}, "run_id": {"type": "string"},
                "trial_number": integer, "batch_size": integer, "hosts": integer, "joined": integer,
                "status": {"type": "string", "enum": ["running", "stopped", "failed", "ended"]},
                "stop_train": described("boolean", "The run is over: every host stops its command"),
                "converged": {"type": "boolean"},
                "message": described("string", "Why it stopped or failed (a failure names the host)"),
                "power_limit": {"type": "integer", "nullable": true, "description": "Watts, for every host"},
                "uncertain": {"type": "array", "items": described("integer", "Watts"), "description": "The combined profile's note that its windows could not tell power_limit from others: power_limit first, then the limits whose energy per step (summed over the hosts, with the sum of their bounds) lies within their bounds of it; absent when every limit was told apart or a host gave no bounds"},
                "profiled": integer,
                "reported_epoch": described("integer", "The last epoch reported to the optimizer (once every host reported it)"),
                "epochs": {"type": "array", "items": schema_ref("EpochTotals"), "description": "The most recent combined epochs (up to 16)"}
            }
        },
        "Totals": {
            "type": "object",
            "description": "Running totals over a job's finished trials, kept in the job document (zeros for documents written before they existed).",
            "required": ["finished_trials", "failed_trials", "energy", "time", "cost", "last_activity_ms"],
            "properties": {
                "finished_trials": integer, "failed_trials": integer,
                "energy": described("number", "Joules"),
                "time": described("number", "Seconds"),
                "cost": described("number", "Zeus cost"),
                "last_activity_ms": described("integer", "Unix milliseconds; 0 if none"),
                "energy_uncertainty_j": {"type": "number", "minimum": 0, "description": "Half-width of the bound on energy, joules: the sum of the finished trials' energy_uncertainty_j. Absent once any trial counted gave none (an older client, a host that measured none, or trials counted before the endpoint kept bounds): never invented"}
            }
        },
        "JobSummary": {
            "type": "object",
            "description": "One job of the list, computed from its document alone.",
            "required": ["job_id", "version", "created_ms", "last_activity_ms", "stage", "policy", "gpu_model", "number_of_gpus", "default_batch_size", "best_batch_size", "min_cost", "best_power_limit", "trials", "open_trials", "totals", "savings"],
            "properties": {
                "job_id": {"type": "string"}, "version": integer,
                "created_ms": described("integer", "Unix milliseconds"),
                "last_activity_ms": described("integer", "Last trial dispatch or end (created_ms if none), Unix milliseconds"),
                "stage": {"type": "string", "enum": ["Pruning", "MAB"]},
                "policy": {"type": "string", "enum": ["zeus", "wattwise"]},
                "gpu_model": {"type": "string"}, "number_of_gpus": integer,
                "default_batch_size": integer,
                "best_batch_size": described("integer", "Batch size of the cheapest run that reached the target (the default before any did)"),
                "min_cost": {"type": "number", "nullable": true},
                "best_power_limit": {"type": "integer", "nullable": true, "description": "Watts: the limit the best batch size's training profile picks by Zeus cost; null without a profile"},
                "trials": described("integer", "Trials dispatched so far"),
                "open_trials": described("integer", "Trials waiting for a result"),
                "totals": schema_ref("Totals"),
                "savings": savings_property(),
                "workload": described("string", "The workload the job names; absent when it names none"),
                "sharing": schema_ref("Sharing")
            }
        },
        "Savings": savings_schema(),
        "Sharing": sharing_schema(),
        "JobPage": {
            "type": "object", "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "items": schema_ref("JobSummary")},
                "next_cursor": {"type": "string", "nullable": true, "description": "Pass as cursor for the next page; null on the last page"}
            }
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}
    })
}

/// The operation (summary, parameters, body, answers) of one route; the
/// parameters the row says (the job's and the run's ids) come first.
fn operation_of(def: &RouteDef) -> Value {
    let mut op = operation_body(def);
    let mut params = row_parameters(def);
    if let Some(Value::Array(own)) = op.get("parameters") {
        params.extend(own.iter().cloned());
    }
    if let (false, Some(map)) = (params.is_empty(), op.as_object_mut()) {
        map.insert("parameters".into(), Value::Array(params));
    }
    op
}

/// What one route's operation says beyond its row: summary, other parameters,
/// body, answers.
fn operation_body(def: &RouteDef) -> Value {
    let null = json!({"nullable": true, "description": "null"});
    match def.endpoint {
        Endpoint::RegisterJob => operation(
            "Register a job (Zeus's POST /jobs)",
            responses(vec![
                ("201", ok("Registered", schema_ref("JobSpec"))),
                ("200", ok("Already registered with the same configuration", schema_ref("JobSpec"))),
            ], &[409, 422]),
            json!({"requestBody": json_body("JobSpec")}),
        ),
        Endpoint::DeleteJob => operation(
            "Delete a job and its trials",
            responses(vec![("200", ok("Deleted (body: null)", null))], &[404, 422]),
            json!({}),
        ),
        Endpoint::ListJobs => operation(
            "List jobs, newest first (created_ms, then job_id, descending), one page at a time",
            responses(vec![("200", ok("One page", schema_ref("JobPage")))], &[404, 422]),
            json!({"parameters": [
                {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": crate::listing::MAX_PAGE, "default": crate::listing::DEFAULT_PAGE}},
                {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}, "description": "next_cursor of the previous page (opaque)"}
            ]}),
        ),
        Endpoint::JobSummary => operation(
            "The job's summary, as the list shows it",
            responses(vec![("200", ok("The summary", schema_ref("JobSummary")))], &[404]),
            json!({}),
        ),
        Endpoint::NextTrial => operation(
            "The batch size of the next run: dispatches a trial",
            responses(vec![("200", ok("The trial to run", schema_ref("TrialId")))], &[400, 404, 422]),
            json!({}),
        ),
        Endpoint::Report => operation(
            "Report a run's totals after an epoch; says whether to stop",
            responses(vec![("200", ok("Keep training or stop", schema_ref("ReportResponse")))], &[400, 404, 422]),
            json!({"requestBody": json_body("TrainingResult")}),
        ),
        Endpoint::EndTrial => operation(
            "End a trial (a still-dispatched one becomes Failed)",
            responses(vec![("200", ok("Ended (body: null)", null))], &[404, 422]),
            json!({"requestBody": json_body("TrialId")}),
        ),
        Endpoint::Health => json!({"summary": "Liveness (no token needed)", "security": [],
                "responses": {"200": ok("Up", schema_ref("Health")), "503": error_responses(&[503])["503"]}}),
        Endpoint::OpenApi => operation("This document", responses(vec![("200", ok("OpenAPI 3 document", json!({"type": "object"})))], &[]), json!({})),
        Endpoint::JobDocument => operation(
            "The job's document",
            responses(vec![("200", ok("The state", schema_ref("JobState")))], &[404]),
            json!({}),
        ),
        Endpoint::Trials => operation(
            "Every trial of the job, in order, as JSON or CSV",
            responses(vec![("200", json!({
                "description": "The trials",
                "content": {
                    "application/json": {"schema": {"type": "array", "items": schema_ref("Trial")}},
                    "text/csv": {"schema": {"type": "string"}}
                }
            }))], &[404, 422]),
            json!({"parameters": [
                {"name": "format", "in": "query", "required": false, "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}
            ]}),
        ),
        Endpoint::Profiles => operation(
            "The job's power profiles",
            responses(vec![("200", ok("Profiles", json!({"type": "array", "items": schema_ref("PowerProfile")})))], &[404]),
            json!({}),
        ),
        Endpoint::JoinRun => operation(
            "Join a run across hosts (the first host opens it and dispatches its trial)",
            responses(vec![("200", ok("The run", schema_ref("RunView")))], &[400, 404, 409, 422]),
            json!({"requestBody": json_body("JoinRun")}),
        ),
        Endpoint::RunState => operation(
            "A run across hosts as it stands now (host deadlines applied; writes nothing)",
            responses(vec![("200", ok("The run", schema_ref("RunView")))], &[404]),
            json!({}),
        ),
        Endpoint::RunHeartbeat
        | Endpoint::RunProfile
        | Endpoint::RunReport
        | Endpoint::RunDone => {
            let (summary, body) = match def.endpoint {
                Endpoint::RunHeartbeat => ("A host is alive; answers the run's state (a host polls this)", "HostCall"),
                Endpoint::RunProfile => ("A host's power profile; once every host's is in, the run's power limit is chosen", "HostProfile"),
                Endpoint::RunReport => ("A host's totals after an epoch; once every host reported it, the optimizer gets one report (energy summed, slowest time)", "HostReport"),
                _ => ("A host's command ended; once every host's has, the trial ends", "HostCall"),
            };
            operation(
                summary,
                responses(vec![("200", ok("The run", schema_ref("RunView")))], &[400, 404, 422]),
                json!({"requestBody": json_body(body)}),
            )
        }
        Endpoint::AddProfile => operation(
            "Store a power profile (replaces the one with the same GPU model, batch size and phase)",
            responses(vec![("201", ok("Stored", schema_ref("PowerProfile")))], &[404, 422]),
            json!({"requestBody": json_body("PowerProfile")}),
        ),
    }
}

/// The OpenAPI 3 document served at `/openapi.json`: one path per template of
/// the route table, one operation per row.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for def in ROUTES {
        if let Value::Object(ops) = paths.entry(def.path).or_insert_with(|| json!({})) {
            ops.insert(def.method.to_ascii_lowercase(), operation_of(def));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wattwise",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Batch size (and power profile) optimizer for recurring training jobs; Zeus-compatible routes."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use crate::wire::{
        Phase, PowerMeasurement, PowerProfile, ReportResponse, TrainingResult, TrialId,
    };
    use std::collections::BTreeSet;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn schema(name: &str) -> Value {
        document()["components"]["schemas"][name].clone()
    }

    /// The schema lists exactly the type's serde fields, and requires a subset of them.
    fn check(name: &str, sample: Value) {
        let s = schema(name);
        assert_eq!(keys(&s["properties"]), keys(&sample), "{name}");
        for r in s["required"].as_array().unwrap() {
            assert!(sample.get(r.as_str().unwrap()).is_some(), "{name}: {r}");
        }
    }

    #[test]
    fn schemas_match_the_wire_types() {
        let mut spec = JobSpec::new("p", vec![8], 8, 300.0, 1, "A100");
        spec.job_id = Some("p-1".into());
        spec.policy = crate::policy::Policy::Wattwise;
        spec.workload = Some("imagenet-resnet50".into());
        check("JobSpec", serde_json::to_value(&spec).unwrap());
        let t = TrialId {
            job_id: "j".into(),
            batch_size: 8,
            trial_number: 1,
        };
        check("TrialId", serde_json::to_value(&t).unwrap());
        let r = TrainingResult {
            job_id: "j".into(),
            batch_size: 8,
            trial_number: 1,
            time: 1.0,
            energy: 1.0,
            metric: 0.5,
            current_epoch: 1,
            energy_uncertainty_j: Some(0.5),
        };
        check("TrainingResult", serde_json::to_value(&r).unwrap());
        let rr = ReportResponse {
            stop_train: true,
            converged: true,
            message: String::new(),
        };
        check("ReportResponse", serde_json::to_value(&rr).unwrap());
        let m = PowerMeasurement {
            power_limit: 300,
            average_power: 1.0,
            throughput: 1.0,
            energy_uncertainty_j: Some(0.5),
        };
        check("PowerMeasurement", serde_json::to_value(m).unwrap());
        let p = PowerProfile {
            batch_size: 8,
            phase: Phase::Train,
            gpu_model: "A100".into(),
            measurements: vec![
                m,
                PowerMeasurement {
                    power_limit: 250,
                    ..m
                },
            ],
            uncertain: vec![250, 300],
        };
        check("PowerProfile", serde_json::to_value(&p).unwrap());
        // A trials-export row: the trial's fields plus job_id; a succeeded one has them all.
        let t = crate::trial::Trial {
            trial_number: 1,
            batch_size: 8,
            kind: crate::trial::TrialType::Mab,
            start_ms: 1,
            status: crate::trial::TrialStatus::Succeeded {
                end_ms: 2,
                result: crate::trial::RunResult {
                    time: 1.0,
                    energy: 1.0,
                    converged: true,
                    energy_uncertainty_j: Some(0.5),
                },
            },
        };
        let mut row = serde_json::to_value(&t).unwrap();
        row["job_id"] = json!("j");
        check("Trial", row);
        schemas_match_the_run_types();
        let state = crate::job::JobState::new("p-1".into(), spec.validate().unwrap(), 1, 5);
        let summary = crate::listing::JobSummary::of(&state, 1);
        check("JobSummary", serde_json::to_value(&summary).unwrap());
        // The optional fields given: a bounded total and a saving with its standard error.
        let totals = crate::trial::Totals {
            energy_uncertainty_j: Some(0.5),
            ..summary.totals.clone()
        };
        check("Totals", serde_json::to_value(&totals).unwrap());
        let savings = crate::listing::Savings {
            basis_runs: 2,
            runs: 3,
            default_cost: 3.0,
            energy: 1.0,
            time: 1.0,
            cost: 1.0,
            cost_fraction: 1.0 / 3.0,
            cost_uncertainty: Some(0.3),
            cost_fraction_uncertainty: Some(0.1),
        };
        check("Savings", serde_json::to_value(&savings).unwrap());
        let page = crate::listing::JobPage {
            jobs: vec![summary],
            next_cursor: None,
        };
        check("JobPage", serde_json::to_value(&page).unwrap());
    }

    /// The runs across hosts' types, each with its optional fields given.
    fn schemas_match_the_run_types() {
        use crate::runs::{EpochTotals, HostMeasurement, HostReport, RunView};
        let r = HostReport {
            host_rank: 0,
            time: 1.0,
            energy: 1.0,
            metric: 0.5,
            current_epoch: 1,
            energy_uncertainty_j: Some(0.5),
        };
        check("HostReport", serde_json::to_value(&r).unwrap());
        let m = HostMeasurement {
            power_limit: 300,
            energy: 1.0,
            time: 1.0,
            steps: 1,
            energy_uncertainty_j: Some(0.5),
        };
        check("HostMeasurement", serde_json::to_value(m).unwrap());
        let e = EpochTotals {
            epoch: 1,
            time: 1.0,
            energy: 1.0,
            metric: Some(0.5),
            hosts: 2,
            energy_uncertainty_j: Some(0.5),
        };
        check("EpochTotals", serde_json::to_value(e).unwrap());
        let v = RunView {
            job_id: "j".into(),
            run_id: "r".into(),
            trial_number: 1,
            batch_size: 8,
            hosts: 2,
            joined: 2,
            status: "running".into(),
            stop_train: false,
            converged: false,
            message: String::new(),
            power_limit: Some(250),
            uncertain: vec![250, 300],
            profiled: 2,
            reported_epoch: 1,
            epochs: vec![e],
        };
        check("RunView", serde_json::to_value(&v).unwrap());
    }

    #[test]
    fn job_spec_required_fields_are_those_without_defaults() {
        // Every field not listed as required must be optional on the wire.
        let s = schema("JobSpec");
        let required: BTreeSet<String> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let minimal: serde_json::Map<String, Value> = [
            ("job_id_prefix", json!("p")),
            ("batch_sizes", json!([8])),
            ("default_batch_size", json!(8)),
            ("max_power", json!(300.0)),
            ("number_of_gpus", json!(1)),
            ("gpu_model", json!("A100")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(required, minimal.keys().cloned().collect());
        assert!(serde_json::from_value::<JobSpec>(Value::Object(minimal.clone())).is_ok());
        for k in minimal.keys() {
            let mut less = minimal.clone();
            less.remove(k);
            assert!(
                serde_json::from_value::<JobSpec>(Value::Object(less)).is_err(),
                "{k} should be required"
            );
        }
    }

    #[test]
    fn every_ref_resolves_and_every_route_is_listed() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "unresolved {name}"
            );
        }
        for def in ROUTES {
            let method = def.method.to_ascii_lowercase();
            assert!(
                doc["paths"][def.path][&method].is_object(),
                "{method} {}",
                def.path
            );
        }
        // Every path of the document is a route's (nothing listed by hand).
        let listed: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|ops| ops.as_object().unwrap().len())
            .sum();
        assert_eq!(listed, ROUTES.len());
    }

    #[test]
    fn each_route_declares_the_job_id_where_its_row_says() {
        let doc = document();
        for def in ROUTES {
            let op = &doc["paths"][def.path][def.method.to_ascii_lowercase()];
            let place = |name: &str| {
                op["parameters"].as_array().and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == name)
                        .map(|p| p["in"].as_str().unwrap().to_string())
                })
            };
            let want = match def.job_in {
                JobIn::Path => Some("path"),
                JobIn::Query => Some("query"),
                JobIn::Body | JobIn::Nowhere => None,
            };
            assert_eq!(
                place("job_id").as_deref(),
                want,
                "{} {}",
                def.method,
                def.path
            );
            let run = def.path.contains("{run_id}").then_some("path");
            assert_eq!(
                place("run_id").as_deref(),
                run,
                "{} {}",
                def.method,
                def.path
            );
        }
    }
}
