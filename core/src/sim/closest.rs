//! "Simulate this job": which workload of a catalog a live job is closest to, and
//! the knobs to simulate it with (the page's jobs view opens the what-if view on it).
//!
//! The rules, in order:
//!
//! 1. **GPU.** A catalog GPU whose name appears in the job's GPU model or in a
//!    profile's (compared lowercase, letters and digits only: `a40` in
//!    `NVIDIA A40`, `rtx6000` in `Quadro RTX 6000`). With none, the GPUs whose
//!    trace's largest power limit is nearest the job's largest (the largest
//!    profiled limit, else the job's `max_power`).
//! 2. **Workload.** Among the workloads on those GPUs, the smallest distance, in
//!    powers of two: the mean over the job's batch sizes of the distance to the
//!    nearest batch size in the trace, plus the distance between the default batch
//!    sizes, plus a quarter of the distance between the max epochs. Ties go to
//!    the catalog's order.
//! 3. **Knobs.** The job's eta, beta and policy as they are; the default batch
//!    size is the trace's nearest to the job's (the smaller on a tie). The
//!    simulator runs the trace's batch sizes (only those were measured); each of
//!    the job's is paired with its nearest in [`Closest::batch_sizes`].
//!
//! Pure: the catalog's traces and the job's document in, a suggestion out.

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, SimulateSpec, Target, WorkloadOverrides};
use super::error::SimError;
use crate::field_error::FieldError;
use crate::policy::Policy;
use crate::spec::JobParams;
use crate::wire::PowerProfile;

/// One workload on one GPU that a job can be matched to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The workload's dataset (names it in the catalog).
    pub dataset: String,
    /// The GPU of its power trace.
    pub gpu: String,
    /// The batch sizes the trace has for it on this GPU, ascending.
    pub batch_sizes: Vec<u32>,
    /// Its default batch size on this GPU.
    pub default_batch_size: u32,
    /// Its max epochs.
    pub max_epochs: u32,
    /// The trace's largest power limit, watts.
    pub max_power: f64,
}

/// How the GPU was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuMatch {
    /// Its name is in the job's (or a profile's) GPU model.
    Name,
    /// Its largest power limit is the nearest to the job's.
    MaxPower,
}

/// One of the job's batch sizes and the trace's nearest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSizeMatch {
    /// The job's batch size.
    pub job: u32,
    /// The nearest in the trace.
    pub trace: u32,
}

/// The closest workload and the knobs to simulate the job with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closest {
    /// The workload's dataset.
    pub dataset: String,
    /// The GPU.
    pub gpu: String,
    /// How the GPU was chosen.
    pub gpu_match: GpuMatch,
    /// The default batch size to simulate (the trace's nearest to the job's).
    pub default_batch_size: u32,
    /// Each of the job's batch sizes with the trace's nearest.
    pub batch_sizes: Vec<BatchSizeMatch>,
    /// The job's eta.
    pub eta: f64,
    /// The job's beta (`None`: no early stopping).
    pub beta: Option<f64>,
    /// The job's policy.
    pub policy: Policy,
    /// The workload's distance to the job (rule 2), in powers of two.
    pub distance: f64,
}

impl Closest {
    /// The simulation this suggestion means, over `recurrences` with `seed`.
    pub fn spec(&self, recurrences: u32, seed: u64) -> SimulateSpec {
        SimulateSpec {
            target: Target {
                gpu: Some(self.gpu.clone()),
                dataset: Some(self.dataset.clone()),
                workload: None,
                overrides: WorkloadOverrides {
                    default_batch_size: Some(self.default_batch_size),
                    ..WorkloadOverrides::default()
                },
            },
            eta: self.eta,
            beta: self.beta,
            recurrences,
            seed,
            policy: self.policy,
        }
    }
}

/// Lowercase letters and digits only.
fn squash(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `|log2(a) - log2(b)|` for positive sizes (0 counts as 1).
fn octaves(a: u32, b: u32) -> f64 {
    (libm::log2(f64::from(a.max(1))) - libm::log2(f64::from(b.max(1)))).abs()
}

/// The batch size of `sizes` nearest `b` in powers of two (the smaller on a tie);
/// `sizes` ascending and not empty.
fn nearest(sizes: &[u32], b: u32) -> u32 {
    let mut best = sizes[0];
    for &s in &sizes[1..] {
        if octaves(s, b) < octaves(best, b) {
            best = s;
        }
    }
    best
}

/// Rule 2's distance of a candidate to the job.
fn distance(c: &Candidate, params: &JobParams) -> f64 {
    let sizes = &params.batch_sizes;
    let per_size = sizes
        .iter()
        .map(|&b| octaves(nearest(&c.batch_sizes, b), b))
        .sum::<f64>()
        / sizes.len() as f64;
    per_size
        + octaves(c.default_batch_size, params.default_batch_size)
        + octaves(c.max_epochs, params.max_epochs) / 4.0
}

/// The candidate closest to the job by the module's rules, with the knobs; an
/// error names what is missing (no candidate, a job without batch sizes).
pub fn closest(
    candidates: &[Candidate],
    params: &JobParams,
    profiles: &[PowerProfile],
) -> Result<Closest, SimError> {
    if params.batch_sizes.is_empty() {
        return Err(SimError::Knob(FieldError::new(
            "batch_sizes",
            "the job must have at least one batch size",
        )));
    }
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.batch_sizes.is_empty() && c.max_power.is_finite())
        .collect();
    if usable.is_empty() {
        return Err(SimError::Knob(FieldError::new(
            "catalog",
            "has no workload with batch sizes to match the job to",
        )));
    }
    let models: Vec<String> = std::iter::once(params.gpu_model.as_str())
        .chain(profiles.iter().map(|p| p.gpu_model.as_str()))
        .map(squash)
        .collect();
    let named: Vec<&Candidate> = usable
        .iter()
        .copied()
        .filter(|c| {
            let g = squash(&c.gpu);
            !g.is_empty() && models.iter().any(|m| m.contains(&g))
        })
        .collect();
    let (on_gpu, gpu_match) = if named.is_empty() {
        let job_max = profiles
            .iter()
            .flat_map(|p| p.measurements.iter().map(|m| f64::from(m.power_limit)))
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
            .unwrap_or(params.max_power);
        let gap = |c: &Candidate| (c.max_power - job_max).abs();
        let best = usable.iter().map(|c| gap(c)).fold(f64::INFINITY, f64::min);
        let near: Vec<&Candidate> = usable.into_iter().filter(|c| gap(c) <= best).collect();
        (near, GpuMatch::MaxPower)
    } else {
        (named, GpuMatch::Name)
    };
    let mut best: Option<(&Candidate, f64)> = None;
    for c in on_gpu {
        let d = distance(c, params);
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    let Some((c, d)) = best else {
        return Err(SimError::Knob(FieldError::new(
            "catalog",
            "has no workload with batch sizes to match the job to",
        )));
    };
    Ok(Closest {
        dataset: c.dataset.clone(),
        gpu: c.gpu.clone(),
        gpu_match,
        default_batch_size: nearest(&c.batch_sizes, params.default_batch_size),
        batch_sizes: params
            .batch_sizes
            .iter()
            .map(|&b| BatchSizeMatch {
                job: b,
                trace: nearest(&c.batch_sizes, b),
            })
            .collect(),
        eta: params.eta_knob,
        beta: params.beta_knob,
        policy: params.policy,
        distance: d,
    })
}

impl Catalog {
    /// Every workload on every GPU of the catalog that can be simulated, in
    /// the catalog's order (workloads, then GPUs).
    pub fn candidates(&mut self) -> Vec<Candidate> {
        let mut out = Vec::new();
        self.each_job(|dataset, gpu, job| {
            out.push(Candidate {
                dataset: dataset.to_string(),
                gpu: gpu.to_string(),
                batch_sizes: job.batch_sizes.iter().map(|b| b.batch_size).collect(),
                default_batch_size: job.workload.default_batch_size,
                max_epochs: job.workload.max_epochs,
                max_power: job.max_power,
            })
        });
        out
    }

    /// The catalog's workload closest to a live job (see [`closest`]).
    pub fn closest(
        &mut self,
        params: &JobParams,
        profiles: &[PowerProfile],
    ) -> Result<Closest, SimError> {
        closest(&self.candidates(), params, profiles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use crate::wire::{Phase, PowerMeasurement};

    fn params(gpu: &str, sizes: Vec<i64>, default: i64, max_epochs: i64) -> JobParams {
        let mut spec = JobSpec::new("job", sizes, default, 300.0, 1, gpu);
        spec.max_epochs = max_epochs;
        spec.eta_knob = 0.3;
        spec.beta_knob = Some(3.0);
        spec.validate().unwrap()
    }

    fn cand(
        dataset: &str,
        gpu: &str,
        sizes: &[u32],
        default: u32,
        epochs: u32,
        max_power: f64,
    ) -> Candidate {
        Candidate {
            dataset: dataset.into(),
            gpu: gpu.into(),
            batch_sizes: sizes.to_vec(),
            default_batch_size: default,
            max_epochs: epochs,
            max_power,
        }
    }

    fn catalog() -> Vec<Candidate> {
        vec![
            cand("big", "a40", &[256, 512, 1024], 1024, 100, 300.0),
            cand("small", "a40", &[8, 16, 32, 64], 32, 6, 300.0),
            cand("big", "p100", &[256, 512, 1024], 1024, 100, 250.0),
            cand("small", "p100", &[8, 16, 32, 64], 32, 6, 250.0),
            cand("small", "rtx6000", &[8, 16, 32, 64], 32, 6, 260.0),
        ]
    }

    #[test]
    fn the_gpu_is_matched_by_name_then_the_workload_by_batch_sizes() {
        let c = closest(
            &catalog(),
            &params("NVIDIA A40", vec![16, 32, 64], 32, 10),
            &[],
        )
        .unwrap();
        assert_eq!((c.dataset.as_str(), c.gpu.as_str()), ("small", "a40"));
        assert_eq!(c.gpu_match, GpuMatch::Name);
        assert_eq!(c.default_batch_size, 32);
        assert_eq!((c.eta, c.beta, c.policy), (0.3, Some(3.0), Policy::Zeus));
        let c = closest(
            &catalog(),
            &params("Quadro RTX 6000", vec![128, 256], 256, 90),
            &[],
        )
        .unwrap();
        // Only "small" runs on the RTX 6000: the name wins over the batch sizes.
        assert_eq!((c.dataset.as_str(), c.gpu.as_str()), ("small", "rtx6000"));
        assert_eq!(c.default_batch_size, 64);
        assert_eq!(
            c.batch_sizes,
            [
                BatchSizeMatch {
                    job: 128,
                    trace: 64
                },
                BatchSizeMatch {
                    job: 256,
                    trace: 64
                }
            ]
        );
        let c = closest(&catalog(), &params("A40", vec![512, 2048], 2048, 100), &[]).unwrap();
        assert_eq!((c.dataset.as_str(), c.default_batch_size), ("big", 1024));
    }

    #[test]
    fn an_unknown_gpu_goes_by_the_largest_power_limit_profiled() {
        let p = params("Fake GPU F100", vec![16, 32], 32, 5);
        // No profile: the job's max_power (300 W) is the A40's.
        assert_eq!(closest(&catalog(), &p, &[]).unwrap().gpu, "a40");
        let profile = PowerProfile {
            batch_size: 32,
            phase: Phase::Train,
            gpu_model: "Fake GPU F100".into(),
            measurements: [250, 200, 150]
                .map(|w| PowerMeasurement {
                    power_limit: w,
                    average_power: w as f64 - 5.0,
                    throughput: 100.0,
                    energy_uncertainty_j: None,
                })
                .to_vec(),
            uncertain: Vec::new(),
        };
        let c = closest(&catalog(), &p, &[profile]).unwrap();
        assert_eq!((c.gpu.as_str(), c.gpu_match), ("p100", GpuMatch::MaxPower));
        assert_eq!(c.dataset, "small");
    }

    #[test]
    fn ties_go_to_the_catalog_order_and_nothing_to_match_is_an_error() {
        let tie = vec![
            cand("first", "a40", &[32], 32, 10, 300.0),
            cand("second", "a40", &[32], 32, 10, 300.0),
        ];
        let p = params("A40", vec![32], 32, 10);
        let c = closest(&tie, &p, &[]).unwrap();
        assert_eq!((c.dataset.as_str(), c.distance), ("first", 0.0));
        let e = closest(&[], &p, &[]).unwrap_err();
        assert!(e.to_string().starts_with("catalog: "), "{e}");
        let empty = vec![cand("none", "a40", &[], 32, 10, 300.0)];
        assert!(closest(&empty, &p, &[]).is_err());
        assert_eq!(nearest(&[16, 64], 32), 16, "a tie goes to the smaller");
    }

    #[cfg(feature = "builtin-traces")]
    #[test]
    fn the_built_in_catalog_suggests_a_simulation_that_runs() {
        let mut cat = Catalog::zeus().unwrap();
        assert_eq!(cat.candidates().len(), 24);
        // A BERT fine-tune on an A40: squad (default 32, 6 epochs) is the nearest.
        let c = cat
            .closest(&params("NVIDIA A40", vec![16, 32, 64], 32, 6), &[])
            .unwrap();
        assert_eq!(
            (c.dataset.as_str(), c.gpu.as_str(), c.gpu_match),
            ("squad", "a40", GpuMatch::Name)
        );
        let report = cat.simulate(&c.spec(20, 1)).unwrap();
        assert_eq!(report.workload.dataset, "squad");
        assert_eq!(report.workload.default_batch_size, c.default_batch_size);
        // An image classifier with large batches on a V100.
        let c = cat
            .closest(
                &params("Tesla V100-SXM2-32GB", vec![256, 512, 1024], 1024, 100),
                &[],
            )
            .unwrap();
        assert_eq!(c.gpu, "v100");
        assert!(
            ["cifar100", "movielens-1m"].contains(&c.dataset.as_str()),
            "{c:?}"
        );
    }
}
