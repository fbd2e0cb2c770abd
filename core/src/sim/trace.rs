//! The Zeus train and power traces: parsing from CSV text and merging.
//!
//! The host reads the files; this module only sees their text. Columns are
//! found by their header names (any order, extra columns ignored), and a bad
//! cell is reported with its line (1-based, the header is line 1) and column.
//!
//! Merging follows Zeus's simulator: an inner join of the two traces on
//! (dataset, network, batch size, optimizer), with, per merged row,
//! `TTA = target_epoch * time_per_epoch`, `ETA = TTA * average_power` and
//! `energy_per_epoch = time_per_epoch * average_power`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A malformed trace: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The text has no header line.
    #[error("{trace} trace: empty (expected a header line with columns {expected})")]
    Empty {
        /// Which trace ("train", "power" or "group").
        trace: &'static str,
        /// The columns it needs.
        expected: String,
    },
    /// A needed column is not in the header.
    #[error("{trace} trace: line 1: missing column `{column}`")]
    MissingColumn {
        /// Which trace.
        trace: &'static str,
        /// The missing column.
        column: &'static str,
    },
    /// A cell is not what its column needs.
    #[error("{trace} trace: line {line}, column `{column}`: {rule}, got {value:?}")]
    BadCell {
        /// Which trace.
        trace: &'static str,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The cell's text.
        value: String,
        /// The rule the cell broke.
        rule: &'static str,
    },
    /// A row has a different number of cells than the header.
    #[error("{trace} trace: line {line}: {found} cells, but the header has {expected}")]
    RowLength {
        /// Which trace.
        trace: &'static str,
        /// 1-based line number.
        line: usize,
        /// Cells in the row.
        found: usize,
        /// Cells in the header.
        expected: usize,
    },
    /// Two power rows for the same configuration and power limit.
    #[error("power trace: line {line}: duplicate row for {key} (first on line {first})")]
    DuplicatePower {
        /// 1-based line of the second row.
        line: usize,
        /// 1-based line of the first row.
        first: usize,
        /// The configuration, in words.
        key: String,
    },
}

/// A workload configuration at one batch size: what a row of either trace is
/// about, and what train rows and power rows join on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    /// Dataset name.
    pub dataset: String,
    /// Network name.
    pub network: String,
    /// Batch size.
    pub batch_size: u32,
    /// Optimizer name.
    pub optimizer: String,
}

impl std::fmt::Display for Configuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} batch size {}",
            self.dataset, self.network, self.optimizer, self.batch_size
        )
    }
}

/// One row of the train trace: one training run reaching (or not) one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// What the row trained.
    #[serde(flatten)]
    pub config: Configuration,
    /// Learning rate.
    pub learning_rate: f64,
    /// Repetition index of the configuration.
    pub run: i64,
    /// Target validation metric.
    pub target_metric: f64,
    /// Epoch at which the target was reached; `None` when it never was (`nan` or empty).
    pub target_epoch: Option<f64>,
}

/// One row of a power trace: one configuration at one power limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerRow {
    /// What the row measured.
    #[serde(flatten)]
    pub config: Configuration,
    /// GPU power limit in watts.
    pub power_limit: u32,
    /// Seconds per epoch.
    pub time_per_epoch: f64,
    /// Average GPU power in watts.
    pub average_power: f64,
}

/// One row of the merged trace (Zeus's simulator dataframe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedRow {
    /// The train row.
    pub train: TrainRow,
    /// Power limit in watts.
    pub power_limit: u32,
    /// Seconds per epoch at that power limit.
    pub time_per_epoch: f64,
    /// Average power in watts at that power limit.
    pub average_power: f64,
    /// Time to accuracy: `target_epoch * time_per_epoch` (`None` when never reached).
    pub tta: Option<f64>,
    /// Energy to accuracy: `TTA * average_power`.
    pub eta: Option<f64>,
    /// `time_per_epoch * average_power`.
    pub energy_per_epoch: f64,
}

/// A CSV table split into header and rows of trimmed cells, with the columns
/// a trace needs found by name.
struct Table<'a> {
    trace: &'static str,
    /// The needed columns: `(name, index in the header)`.
    columns: Vec<(&'static str, usize)>,
    /// `(line number, cells)`.
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    /// Splits `text` into rows and finds the `expected` columns (in that order,
    /// so the first missing one is named).
    fn parse(
        trace: &'static str,
        text: &'a str,
        expected: &[&'static str],
    ) -> Result<Self, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(TraceError::Empty {
                trace,
                expected: expected.join(","),
            });
        };
        let header: Vec<&str> = header
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(str::trim)
            .collect();
        let mut rows = Vec::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line
                .split(',')
                .map(|c| c.trim().trim_matches('"'))
                .collect();
            if cells.len() != header.len() {
                return Err(TraceError::RowLength {
                    trace,
                    line: i + 1,
                    found: cells.len(),
                    expected: header.len(),
                });
            }
            rows.push((i + 1, cells));
        }
        let columns = expected
            .iter()
            .map(|&name| {
                header
                    .iter()
                    .position(|h| h.trim_matches('"') == name)
                    .map(|i| (name, i))
                    .ok_or(TraceError::MissingColumn {
                        trace,
                        column: name,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Table {
            trace,
            columns,
            rows,
        })
    }

    /// The rows, each read by column name.
    fn rows(&self) -> impl Iterator<Item = Row<'_, 'a>> {
        self.rows.iter().map(move |(line, cells)| Row {
            table: self,
            line: *line,
            cells,
        })
    }
}

/// One row of a [`Table`]: cells read by column name and checked by rule.
struct Row<'t, 'a> {
    table: &'t Table<'a>,
    line: usize,
    cells: &'t [&'a str],
}

impl<'a> Row<'_, 'a> {
    /// The cell of a needed column (a column the trace does not need is missing).
    fn cell(&self, column: &'static str) -> Result<&'a str, TraceError> {
        self.table
            .columns
            .iter()
            .find(|(name, _)| *name == column)
            .and_then(|&(_, i)| self.cells.get(i).copied())
            .ok_or(TraceError::MissingColumn {
                trace: self.table.trace,
                column,
            })
    }

    /// The error for a cell of `column` that breaks `rule`.
    fn bad(&self, column: &'static str, value: &str, rule: &'static str) -> TraceError {
        TraceError::BadCell {
            trace: self.table.trace,
            line: self.line,
            column,
            value: value.to_string(),
            rule,
        }
    }

    /// A cell that is checked and converted by `parse` (`None`: it breaks `rule`).
    fn parsed<T>(
        &self,
        column: &'static str,
        rule: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, TraceError> {
        let v = self.cell(column)?;
        parse(v).ok_or_else(|| self.bad(column, v, rule))
    }

    /// The configuration that joins train and power rows: dataset, network,
    /// batch size and optimizer.
    fn configuration(&self) -> Result<Configuration, TraceError> {
        Ok(Configuration {
            dataset: self.text("dataset")?,
            network: self.text("network")?,
            batch_size: self.positive_int("batch_size")?,
            optimizer: self.text("optimizer")?,
        })
    }

    fn text(&self, column: &'static str) -> Result<String, TraceError> {
        self.parsed(column, "must not be empty", |v| {
            (!v.is_empty()).then(|| v.to_string())
        })
    }

    fn positive_int(&self, column: &'static str) -> Result<u32, TraceError> {
        self.parsed(column, "must be a whole number > 0", |v| {
            // Accept "256" and "256.0" (pandas writes integers of float columns that way).
            v.parse::<u32>()
                .ok()
                .or_else(|| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= u32::MAX as f64)
                        .map(|f| f as u32)
                })
                .filter(|&n| n > 0)
        })
    }

    fn int(&self, column: &'static str) -> Result<i64, TraceError> {
        self.parsed(column, "must be a whole number", |v| {
            v.parse::<i64>().ok().or_else(|| {
                v.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        })
    }

    fn finite(&self, column: &'static str) -> Result<f64, TraceError> {
        self.parsed(column, "must be a finite number", |v| {
            v.parse::<f64>().ok().filter(|f| f.is_finite())
        })
    }

    fn positive(&self, column: &'static str) -> Result<f64, TraceError> {
        self.parsed(column, "must be a finite number > 0", |v| {
            v.parse::<f64>().ok().filter(|f| f.is_finite() && *f > 0.0)
        })
    }
}

/// The columns of the train trace.
pub const TRAIN_COLUMNS: [&str; 8] = [
    "dataset",
    "network",
    "batch_size",
    "optimizer",
    "learning_rate",
    "run",
    "target_metric",
    "target_epoch",
];

/// The columns of a power trace.
pub const POWER_COLUMNS: [&str; 7] = [
    "dataset",
    "network",
    "batch_size",
    "optimizer",
    "power_limit",
    "time_per_epoch",
    "average_power",
];

/// Parses the train trace (`summary_train.csv`).
pub fn parse_train(text: &str) -> Result<Vec<TrainRow>, TraceError> {
    let t = Table::parse("train", text, &TRAIN_COLUMNS)?;
    t.rows()
        .map(|r| {
            // The epoch first: a row with several bad cells names this one.
            let target_epoch = r.parsed(
                "target_epoch",
                "must be a number >= 0, `nan` or empty",
                |v| {
                    if v.is_empty() || v.eq_ignore_ascii_case("nan") {
                        Some(None)
                    } else {
                        v.parse::<f64>()
                            .ok()
                            .filter(|e| e.is_finite() && *e >= 0.0)
                            .map(Some)
                    }
                },
            )?;
            Ok(TrainRow {
                config: r.configuration()?,
                learning_rate: r.finite("learning_rate")?,
                run: r.int("run")?,
                target_metric: r.finite("target_metric")?,
                target_epoch,
            })
        })
        .collect()
}

/// Parses a power trace (`summary_power_{gpu}.csv`). A configuration may appear
/// only once per power limit.
pub fn parse_power(text: &str) -> Result<Vec<PowerRow>, TraceError> {
    let t = Table::parse("power", text, &POWER_COLUMNS)?;
    let mut out = Vec::with_capacity(t.rows.len());
    let mut seen: HashMap<(Configuration, u32), usize> = HashMap::new();
    for r in t.rows() {
        let row = PowerRow {
            config: r.configuration()?,
            power_limit: r.positive_int("power_limit")?,
            time_per_epoch: r.positive("time_per_epoch")?,
            average_power: r.positive("average_power")?,
        };
        let key = (row.config.clone(), row.power_limit);
        if let Some(&first) = seen.get(&key) {
            return Err(TraceError::DuplicatePower {
                line: r.line,
                first,
                key: format!("{} at {} W", row.config, row.power_limit),
            });
        }
        seen.insert(key, r.line);
        out.push(row);
    }
    Ok(out)
}

/// One row of the Alibaba group trace: a submission of a recurring job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    /// Group id (one recurring job in the Alibaba trace).
    pub group: String,
    /// Submission time in seconds.
    pub start_time: f64,
    /// End time in seconds.
    pub end_time: f64,
    /// The Zeus dataset mapped to this job.
    pub dataset: String,
    /// This job's runtime over the mean runtime of its dataset's jobs.
    pub runtime_ratio: f64,
}

/// The columns of the Alibaba group trace.
pub const GROUP_COLUMNS: [&str; 5] = [
    "group",
    "start_time",
    "end_time",
    "dataset",
    "runtime_ratio",
];

/// Parses the Alibaba group trace (`alibaba_groups.csv`). Every row needs
/// `end_time >= start_time` and a runtime ratio >= 0.
pub fn parse_groups(text: &str) -> Result<Vec<GroupRow>, TraceError> {
    let t = Table::parse("group", text, &GROUP_COLUMNS)?;
    t.rows()
        .map(|r| {
            let row = GroupRow {
                group: r.text("group")?,
                start_time: r.finite("start_time")?,
                end_time: r.finite("end_time")?,
                dataset: r.text("dataset")?,
                runtime_ratio: r.finite("runtime_ratio")?,
            };
            if row.end_time < row.start_time {
                return Err(r.bad("end_time", r.cell("end_time")?, "must be >= start_time"));
            }
            if row.runtime_ratio < 0.0 {
                return Err(r.bad("runtime_ratio", r.cell("runtime_ratio")?, "must be >= 0"));
            }
            Ok(row)
        })
        .collect()
}

/// The first group of a dataset in the group trace: the group a simulation of
/// that dataset's workload runs when none is named.
pub fn first_group_of<'a>(rows: &'a [GroupRow], dataset: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.dataset == dataset)
        .map(|r| r.group.as_str())
}

/// One submission of an Alibaba group (a row of the group trace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupJob {
    /// When it was submitted, in seconds.
    pub start_time: f64,
    /// When it ended in the Alibaba trace, in seconds.
    pub end_time: f64,
    /// Its runtime over the mean runtime of its dataset's jobs.
    pub runtime_ratio: f64,
}

/// The submissions of one group, sorted by start time (stable), ready for
/// [`simulate_one_alibaba_group`](super::simulator::simulate_one_alibaba_group).
pub fn group_jobs(rows: &[GroupRow], group: &str) -> Vec<GroupJob> {
    let mut jobs: Vec<GroupJob> = rows
        .iter()
        .filter(|r| r.group == group)
        .map(|r| GroupJob {
            start_time: r.start_time,
            end_time: r.end_time,
            runtime_ratio: r.runtime_ratio,
        })
        .collect();
    jobs.sort_by(|a, b| a.start_time.total_cmp(&b.start_time));
    jobs
}

/// A train trace and a power trace (one GPU), parsed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Train trace rows.
    pub train: Vec<TrainRow>,
    /// Power trace rows.
    pub power: Vec<PowerRow>,
}

impl Trace {
    /// Parses both traces from their CSV text.
    pub fn from_csv(train: &str, power: &str) -> Result<Self, TraceError> {
        Ok(Trace {
            train: parse_train(train)?,
            power: parse_power(power)?,
        })
    }

    /// The merged trace: every train row joined with every power row of the same
    /// (dataset, network, batch size, optimizer), in train row order.
    pub fn merged(&self) -> Vec<MergedRow> {
        let index = self.power_index();
        let mut out = Vec::new();
        for t in &self.train {
            for &p in index.get(&t.config).map(Vec::as_slice).unwrap_or(&[]) {
                let p = &self.power[p];
                let tta = t.target_epoch.map(|e| e * p.time_per_epoch);
                out.push(MergedRow {
                    train: t.clone(),
                    power_limit: p.power_limit,
                    time_per_epoch: p.time_per_epoch,
                    average_power: p.average_power,
                    tta,
                    eta: tta.map(|tta| tta * p.average_power),
                    energy_per_epoch: p.time_per_epoch * p.average_power,
                });
            }
        }
        out
    }

    /// Power rows by (dataset, network, batch size, optimizer).
    pub(crate) fn power_index(&self) -> HashMap<&Configuration, Vec<usize>> {
        let mut index: HashMap<&Configuration, Vec<usize>> = HashMap::new();
        for (i, p) in self.power.iter().enumerate() {
            index.entry(&p.config).or_default().push(i);
        }
        index
    }

    /// The largest power limit among the power rows that join a train row (Zeus's
    /// `MAXPOWER`, the same for every job on this GPU). `None` when nothing joins.
    pub fn max_power(&self) -> Option<u32> {
        let trained: std::collections::HashSet<&Configuration> =
            self.train.iter().map(|t| &t.config).collect();
        self.power
            .iter()
            .filter(|p| trained.contains(&p.config))
            .map(|p| p.power_limit)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: &str =
        "dataset,network,batch_size,optimizer,learning_rate,run,target_metric,target_epoch
d,n,8,adam,1e-3,1,0.5,3
d,n,8,adam,1e-3,2,0.5,nan
d,n,16,adam,1e-3,1,0.5,4
";
    const POWER: &str =
        "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power
d,n,8,adam,100,10.0,90.0
d,n,8,adam,200,8.0,150.0
d,n,16,adam,100,6.0,95.0
d,n,32,adam,300,6.0,95.0
";

    #[test]
    fn parses_and_merges_like_zeus() {
        let t = Trace::from_csv(TRAIN, POWER).unwrap();
        assert_eq!(t.train.len(), 3);
        assert_eq!(t.train[1].target_epoch, None);
        let m = t.merged();
        // 2 runs x 2 limits for bs 8, 1 x 1 for bs 16; bs 32 has no train row.
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].tta, Some(30.0));
        assert_eq!(m[0].eta, Some(2700.0));
        assert_eq!(m[0].energy_per_epoch, 900.0);
        assert_eq!(m[2].tta, None);
        // bs 32 at 300 W joins nothing, so it does not count.
        assert_eq!(t.max_power(), Some(200));
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = TRAIN.replace("d,n,16,adam,1e-3,1,0.5,4", "d,n,16,adam,1e-3,1,0.5,four");
        let e = parse_train(&bad).unwrap_err();
        assert_eq!(
            e,
            TraceError::BadCell {
                trace: "train",
                line: 4,
                column: "target_epoch",
                value: "four".into(),
                rule: "must be a number >= 0, `nan` or empty"
            }
        );

        // Every bad cell is named by its line and column, whichever trace holds it.
        let groups = "group,start_time,end_time,dataset,runtime_ratio\n\
                      g1,100.0,200.0,squad,1.5\n\
                      g2,20.0,10.0,imagenet,1.0\n";
        let bad_cells = [
            (e.to_string(), "line 4, column `target_epoch`"),
            (
                power_error(
                    &POWER.replace("d,n,16,adam,100,6.0,95.0", "d,n,16,adam,100,-6.0,95.0"),
                ),
                "line 4, column `time_per_epoch`",
            ),
            (
                power_error(&POWER.replace("d,n,16,adam,100,6.0,95.0", "d,n,0,adam,100,6.0,95.0")),
                "line 4, column `batch_size`",
            ),
            (group_error(groups), "line 3, column `end_time`"),
            (
                group_error(&groups.replace("1.5", "x")),
                "line 2, column `runtime_ratio`",
            ),
        ];
        for (error, want) in bad_cells {
            assert!(error.contains(want), "{error:?} should name {want:?}");
        }

        let e = parse_power("dataset,network,batch_size\n").unwrap_err();
        assert_eq!(
            e,
            TraceError::MissingColumn {
                trace: "power",
                column: "optimizer"
            }
        );

        let e = parse_train("").unwrap_err();
        assert!(matches!(e, TraceError::Empty { trace: "train", .. }));

        let e = parse_power(&format!("{POWER}d,n,8\n")).unwrap_err();
        assert_eq!(
            e,
            TraceError::RowLength {
                trace: "power",
                line: 6,
                found: 3,
                expected: 7
            }
        );

        let e = parse_power(&format!("{POWER}d,n,8,adam,100,1,1\n")).unwrap_err();
        assert!(
            matches!(
                e,
                TraceError::DuplicatePower {
                    line: 6,
                    first: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn group_trace_parses_and_sorts() {
        let text = "group,start_time,end_time,dataset,runtime_ratio\n\
                    g1,100.0,200.0,squad,1.5\n\
                    g2,0.0,10.0,imagenet,1.0\n\
                    g1,50.0,60.0,squad,0.5\n";
        let rows = parse_groups(text).unwrap();
        assert_eq!(rows.len(), 3);
        let jobs = group_jobs(&rows, "g1");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].start_time, 50.0);
        assert_eq!(jobs[1].runtime_ratio, 1.5);
    }

    fn power_error(text: &str) -> String {
        parse_power(text).unwrap_err().to_string()
    }

    fn group_error(text: &str) -> String {
        parse_groups(text).unwrap_err().to_string()
    }

    #[test]
    fn columns_in_any_order_and_blank_lines() {
        let text = "target_epoch,dataset,network,optimizer,batch_size,run,learning_rate,target_metric,extra\n\n5,d,n,adam,64.0,1,0.1,0.5,x\n";
        let rows = parse_train(text).unwrap();
        assert_eq!(rows[0].config.batch_size, 64);
        assert_eq!(rows[0].target_epoch, Some(5.0));
    }
}
