//! The job file of `wattwise run` (TOML): Zeus's job spec fields, and an optional
//! `[power]` table with the power limit optimizer's settings.
//!
//! ```toml
//! job_id_prefix = "mnist"
//! batch_sizes = [32, 64, 128]
//! default_batch_size = 64
//! target_metric = 0.9
//! max_epochs = 20
//! policy = "wattwise"      # optional: "wattwise" (wattwise's, the default) or "zeus"
//! workload = "mnist-cnn"   # optional: the endpoint's jobs of one workload learn from each other
//!
//! [power]                  # all optional; Zeus's defaults
//! wait_steps = 1
//! warmup_steps = 10
//! profile_steps = 40
//! pl_step = 25
//! selector = { kind = "zeus_cost", eta = 0.5 }   # energy | time | zeus_cost | max_slowdown
//! stop_after_rises = 2     # end the profile after 2 costlier limits in a row
//!                          # (wattwise's policy: 2 unless set; Zeus's: every limit)
//! ```
//!
//! The GPU fields of the spec (`gpu_model`, `number_of_gpus`, `max_power`) come
//! from NVML, never from the file.

use wattwise_core::policy::{Policy, UnknownPolicy};
use wattwise_core::power::{PowerSettings, SetInFile};
use wattwise_core::spec::JobSpec;

/// Spec fields the file may set.
const SPEC_FIELDS: &[&str] = &[
    "job_id",
    "job_id_prefix",
    "batch_sizes",
    "default_batch_size",
    "eta_knob",
    "beta_knob",
    "target_metric",
    "higher_is_better_metric",
    "max_epochs",
    "num_pruning_rounds",
    "window_size",
    "mab_prior_mean",
    "mab_prior_precision",
    "mab_num_explorations",
    "mab_seed",
    "policy",
    "workload",
];

/// Spec fields NVML fills in.
const GPU_FIELDS: &[&str] = &["gpu_model", "number_of_gpus", "max_power"];

/// Why a job file is refused.
#[derive(Debug, thiserror::Error)]
#[error("job file: {0}")]
pub struct JobFileError(String);

/// A parsed job file.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFile {
    /// The spec's fields as a JSON object (without the GPU fields).
    pub spec: serde_json::Map<String, serde_json::Value>,
    /// The power limit optimizer's settings.
    pub power: PowerSettings,
}

/// The GPUs a job runs on, as NVML describes them.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuFacts {
    /// Model name of the first GPU.
    pub gpu_model: String,
    /// Number of GPUs.
    pub number_of_gpus: u32,
    /// Sum of their maximum power limits, W.
    pub max_power: f64,
}

impl JobFile {
    /// Parses the TOML text; the error names the field and the rule.
    pub fn parse(text: &str) -> Result<JobFile, JobFileError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| JobFileError(e.to_string()))?;
        let mut spec = serde_json::Map::new();
        let mut power = None;
        let mut set = SetInFile::default();
        for (key, value) in table {
            if key == "power" {
                let t = value
                    .as_table()
                    .ok_or_else(|| JobFileError("power: must be a table".into()))?;
                set = SetInFile {
                    selector: t.contains_key("selector"),
                    stop_after_rises: t.contains_key("stop_after_rises"),
                };
                let json = serde_json::to_value(t).map_err(|e| JobFileError(e.to_string()))?;
                let settings: PowerSettings = serde_json::from_value(json)
                    .map_err(|e| JobFileError(format!("power: {e}")))?;
                settings
                    .validate()
                    .map_err(|e| JobFileError(format!("power.{e}")))?;
                power = Some(settings);
            } else if GPU_FIELDS.contains(&key.as_str()) {
                return Err(JobFileError(format!(
                    "{key}: is read from the GPUs (NVML); remove it from the file"
                )));
            } else if key == "policy" {
                let name = value.as_str().unwrap_or_default();
                let policy: Policy = name.parse().map_err(|e: UnknownPolicy| {
                    JobFileError(if value.is_str() {
                        e.to_string()
                    } else {
                        format!("policy: must be a string, \"zeus\" or \"wattwise\" (got {value})")
                    })
                })?;
                spec.insert(key, policy.name().into());
            } else if SPEC_FIELDS.contains(&key.as_str()) {
                let json = serde_json::to_value(&value).map_err(|e| JobFileError(e.to_string()))?;
                spec.insert(key, json);
            } else {
                return Err(JobFileError(format!(
                    "{key}: unknown field (expected one of {}, or a [power] table)",
                    SPEC_FIELDS.join(", ")
                )));
            }
        }
        // A job file without the field runs wattwise's policy: in the simulator it
        // saves against the default where Zeus's can cost more (README). A job
        // registered over the API without the field stays Zeus's.
        spec.entry("policy".to_string())
            .or_insert_with(|| Policy::Wattwise.name().into());
        // What the file left unset follows the job's policy and eta (the core's
        // rule: wattwise's ends its profile early, as the simulator models it).
        let policy = spec
            .get("policy")
            .and_then(|v| v.as_str())
            .and_then(|name| name.parse().ok())
            .unwrap_or(Policy::Wattwise);
        let eta = spec.get("eta_knob").and_then(|v| v.as_f64()).unwrap_or(0.5);
        let power = PowerSettings::for_job(power.unwrap_or_default(), set, policy, eta);
        Ok(JobFile { spec, power })
    }

    /// The spec to register, with the GPU fields filled; validated like the server
    /// would.
    pub fn spec(&self, gpus: &GpuFacts) -> Result<JobSpec, JobFileError> {
        let mut fields = self.spec.clone();
        fields.insert("gpu_model".into(), gpus.gpu_model.clone().into());
        fields.insert("number_of_gpus".into(), gpus.number_of_gpus.into());
        fields.insert("max_power".into(), gpus.max_power.into());
        let spec: JobSpec = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| JobFileError(e.to_string()))?;
        spec.validate().map_err(|e| JobFileError(e.to_string()))?;
        Ok(spec)
    }
}

/// Test support: the facts of two fake GPUs, for this module's tests and the session's.
#[cfg(test)]
pub(crate) fn fake_facts() -> GpuFacts {
    GpuFacts {
        gpu_model: "Fake GPU".into(),
        number_of_gpus: 2,
        max_power: 600.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattwise_core::power::{Selector, WATTWISE_STOP_AFTER_RISES};

    use super::fake_facts as facts;

    #[test]
    fn a_minimal_file_gets_zeus_defaults() {
        let f = JobFile::parse(
            "job_id_prefix = \"mnist\"\nbatch_sizes = [8, 16]\ndefault_batch_size = 16\neta_knob = 0.3\n",
        )
        .unwrap();
        assert_eq!(f.power.profile_steps, 40);
        assert_eq!(
            f.power.selector,
            Selector::ZeusCost {
                eta: 0.3,
                max_power: None
            }
        );
        let spec = f.spec(&facts()).unwrap();
        assert_eq!(spec.gpu_model, "Fake GPU");
        assert_eq!(spec.number_of_gpus, 2);
        assert_eq!(spec.max_power, 600.0);
        assert_eq!(spec.max_epochs, 100);
        assert_eq!(spec.eta_knob, 0.3);
    }

    /// The smallest valid file, then `extra`.
    fn with(extra: &str) -> Result<JobFile, JobFileError> {
        JobFile::parse(&format!(
            "job_id_prefix = \"j\"\nbatch_sizes = [8]\ndefault_batch_size = 8\n{extra}"
        ))
    }

    /// The error `extra` makes, when reading the file or its spec.
    fn error_of(extra: &str) -> String {
        match with(extra) {
            Ok(f) => f.spec(&facts()).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_policy_field_picks_the_batch_size_policy() {
        let policy = |extra| with(extra).unwrap().spec(&facts()).unwrap().policy;
        assert_eq!(policy(""), Policy::Wattwise, "the better policy by default");
        assert_eq!(policy("policy = \"zeus\"\n"), Policy::Zeus);
        assert_eq!(policy("policy = \"wattwise\"\n"), Policy::Wattwise);
        for bad in ["policy = \"fast\"\n", "policy = 1\n"] {
            assert!(error_of(bad).contains("policy: must be"), "{bad}");
        }
    }

    #[test]
    fn the_workload_field_reaches_the_spec() {
        let spec = with("workload = \"mnist-cnn\"\n")
            .unwrap()
            .spec(&facts())
            .unwrap();
        assert_eq!(spec.workload.as_deref(), Some("mnist-cnn"));
        assert_eq!(with("").unwrap().spec(&facts()).unwrap().workload, None);
    }

    #[test]
    fn the_power_table_sets_the_optimizer() {
        let power = with(
            "[power]\nprofile_steps = 5\nselector = { kind = \"max_slowdown\", factor = 1.1 }\n",
        )
        .unwrap()
        .power;
        assert_eq!(power.profile_steps, 5);
        assert_eq!(power.warmup_steps, 10);
        assert_eq!(power.selector, Selector::MaxSlowdown { factor: 1.1 });
    }

    #[test]
    fn wattwise_ends_its_profile_early_and_zeus_profiles_every_limit() {
        let rises = |extra| with(extra).unwrap().power.stop_after_rises;
        assert_eq!(rises(""), Some(WATTWISE_STOP_AFTER_RISES));
        assert_eq!(
            rises("policy = \"wattwise\"\n"),
            Some(WATTWISE_STOP_AFTER_RISES)
        );
        assert_eq!(rises("policy = \"zeus\"\n"), None);
        assert_eq!(rises("[power]\nstop_after_rises = 4\n"), Some(4));
        assert_eq!(
            rises("policy = \"zeus\"\n[power]\nstop_after_rises = 1\n"),
            Some(1)
        );
        assert!(error_of("[power]\nstop_after_rises = 0\n").contains("stop_after_rises"));
    }

    #[test]
    fn bad_files_name_the_field() {
        for (extra, needle) in [
            ("gpu_model = \"x\"\n", "gpu_model"),
            ("colour = 1\n", "colour"),
            ("power = 3\n", "power"),
            ("[power]\nprofile_steps = 0\n", "profile_steps"),
            ("[power]\nprofle_steps = 3\n", "profle_steps"),
            (
                "[power]\nselector = { kind = \"zeus_cost\", eta = 3.0 }\n",
                "eta",
            ),
        ] {
            let err = error_of(extra);
            assert!(err.contains(needle), "{extra}: {err}");
        }
        // Not one of the batch sizes: the spec's check.
        let f = JobFile::parse(
            "job_id_prefix = \"j\"\nbatch_sizes = [8, 16]\ndefault_batch_size = 9\n",
        );
        let err = f.unwrap().spec(&facts()).unwrap_err().to_string();
        assert!(err.contains("default_batch_size"), "{err}");
        assert!(JobFile::parse("not toml [").is_err());
    }
}
