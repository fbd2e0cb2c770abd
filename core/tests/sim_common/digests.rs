// Compiled twice: natively into the simulator tests (included by `sim_common`)
// and, as text, into the wasm32 module that `sim_wasm.rs` builds; so every item
// is named by its full path and the file has no `use` lines.

/// FNV-1a over every field of every history entry, bit for bit.
pub(crate) fn digest(history: &[wattwise_core::sim::HistoryEntry]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in history {
        eat(e.recurrence as u64);
        eat(e.batch_size as u64);
        eat(e.power_limit as u64);
        eat(e.energy.to_bits());
        eat(e.time.to_bits());
        eat(e.reached as u64);
        eat(e.cost.to_bits());
    }
    h
}

/// The synthetic workload on the synthetic trace and GPU.
pub(crate) fn synthetic_job() -> wattwise_core::sim::JobTrace {
    use wattwise_core::sim::synthetic as s;
    wattwise_core::sim::JobTrace::new(
        &s::synthetic_trace(s::SYNTHETIC_TRACE_SEED),
        &s::synthetic_workload(),
        s::SYNTHETIC_GPU,
    )
    .unwrap()
}

/// The digests compared across hosts: the synthetic workload for seeds 1..=3,
/// 60 recurrences, under Zeus's policy then wattwise's; then librispeech on V100
/// of the built-in traces (seeds 1..=3, 50 recurrences).
pub(crate) fn cross_host_digests() -> Vec<u64> {
    use wattwise_core::policy::Policy;
    use wattwise_core::sim::{simulate_one_job_with, JobTrace, SimConfig, Workload};
    let cfg = |seed| SimConfig {
        eta_knob: 0.5,
        beta_knob: 2.0,
        seed,
    };
    let synthetic = synthetic_job();
    let trace = wattwise_core::sim::builtin::trace("v100").unwrap();
    let librispeech =
        JobTrace::new(&trace, &Workload::zeus("librispeech").unwrap(), "v100").unwrap();
    let runs = [
        (&synthetic, 60, Policy::Zeus),
        (&synthetic, 60, Policy::Wattwise),
        (&librispeech, 50, Policy::Zeus),
    ];
    let mut out = Vec::new();
    for (job, recurrences, policy) in runs {
        for seed in 1..=3u64 {
            out.push(digest(
                &simulate_one_job_with(job, recurrences, &cfg(seed), policy).unwrap(),
            ));
        }
    }
    out
}
