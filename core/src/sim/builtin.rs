//! The Zeus NSDI '23 traces, compiled in (feature `builtin-traces`).
//!
//! The five CSV files live, unchanged, in `core/traces/` beside their origin,
//! licence and citation (`core/traces/README.md`). They are embedded as text and
//! parsed by the same code as a user's uploaded traces, so the built-in workloads
//! and a user's copy of the same files give the same simulations, bit for bit.

use super::error::SimError;
use super::trace::{parse_power, parse_train, Trace, TrainRow};
use super::workload::ZEUS_GPUS;

/// `summary_train.csv`: epochs to each target metric, per workload, batch size and run.
pub const TRAIN_CSV: &str = include_str!("../../traces/summary_train.csv");

/// `summary_power_{gpu}.csv` of each GPU, in the order of [`ZEUS_GPUS`].
pub const POWER_CSV: [(&str, &str); 4] = [
    ("a40", include_str!("../../traces/summary_power_a40.csv")),
    ("v100", include_str!("../../traces/summary_power_v100.csv")),
    ("p100", include_str!("../../traces/summary_power_p100.csv")),
    (
        "rtx6000",
        include_str!("../../traces/summary_power_rtx6000.csv"),
    ),
];

/// The file name of a GPU's power trace, as Zeus names it.
pub fn power_file_name(gpu: &str) -> String {
    format!("summary_power_{gpu}.csv")
}

/// The name of the train trace file.
pub const TRAIN_FILE_NAME: &str = "summary_train.csv";

/// The built-in train trace, parsed.
pub fn train_rows() -> Result<Vec<TrainRow>, SimError> {
    parse_train(TRAIN_CSV).map_err(|source| SimError::TraceFile {
        file: TRAIN_FILE_NAME.into(),
        source,
    })
}

/// The built-in traces of every GPU, in the order of [`ZEUS_GPUS`]: the train
/// trace with that GPU's power trace.
pub fn traces() -> Result<Vec<(String, Trace)>, SimError> {
    let train = train_rows()?;
    POWER_CSV
        .iter()
        .map(|&(gpu, text)| {
            let power = parse_power(text).map_err(|source| SimError::TraceFile {
                file: power_file_name(gpu),
                source,
            })?;
            Ok((
                gpu.to_string(),
                Trace {
                    train: train.clone(),
                    power,
                },
            ))
        })
        .collect()
}

/// The built-in trace of one GPU (the train trace with its power trace).
pub fn trace(gpu: &str) -> Result<Trace, SimError> {
    let Some(&(_, text)) = POWER_CSV.iter().find(|p| p.0 == gpu) else {
        return Err(SimError::UnknownGpu {
            gpu: gpu.to_string(),
            loaded: ZEUS_GPUS.join(", "),
            hint: super::error::did_you_mean(gpu, ZEUS_GPUS.iter().copied()),
        });
    };
    Ok(Trace {
        train: train_rows()?,
        power: parse_power(text).map_err(|source| SimError::TraceFile {
            file: power_file_name(gpu),
            source,
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_trace_parses() {
        let all = traces().unwrap();
        assert!(all.iter().map(|(g, _)| g.as_str()).eq(ZEUS_GPUS));
        for (gpu, t) in &all {
            assert!(t.train.len() > 1000, "{gpu}");
            assert!(t.power.len() > 100, "{gpu}");
            assert!(t.max_power().is_some(), "{gpu}: the traces join");
        }
        assert_eq!(trace("p100").unwrap(), all[2].1);
        assert!(matches!(trace("h100"), Err(SimError::UnknownGpu { .. })));
    }
}
