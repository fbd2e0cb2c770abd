//! Which traces a simulation's flags name, and the catalog they make.
//!
//! `wattwise simulate` names its traces with flags: none at all (the synthetic
//! workload), a dataset or GPU without files (the Zeus traces built into the
//! core), `--traces DIR --gpu GPU`, or `--train FILE --power FILE`. The rule
//! lives here, in two steps around the host's I/O:
//!
//! 1. [`TraceFlags::choose`] says which files to read (none, or a train and a
//!    power trace) and which GPU the power trace is, or why the flags name none;
//! 2. the host reads each file it is told to ([`TraceChoice::try_map`]) and
//!    [`Catalog::load`] makes the catalog out of their text.
//!
//! Paths stay the host's type (`P`): the core never opens, joins or renders one.

use super::catalog::{Catalog, Options, PowerFile, Source};
use super::error::SimError;
use super::synthetic::SYNTHETIC_DATASET;

/// The trace flags of a simulation, as the host received them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceFlags<'a, P> {
    /// `--list`: the workloads are to be listed (no simulation).
    pub list: bool,
    /// `--dataset`.
    pub dataset: Option<&'a str>,
    /// `--gpu`.
    pub gpu: Option<&'a str>,
    /// `--traces DIR`: a directory holding `summary_train.csv` and `summary_power_{gpu}.csv`.
    pub traces: Option<P>,
    /// `--train FILE`: a train trace.
    pub train: Option<P>,
    /// `--power FILE`: one GPU's power trace.
    pub power: Option<P>,
    /// The name of the `--power` file without its directory and extension, when
    /// it has one in UTF-8 (`summary_power_v100` names GPU `v100`).
    pub power_stem: Option<&'a str>,
}

/// A trace file to read: a path the user gave, or a file in the directory the user gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TracePath<P> {
    /// The path of `--train` or `--power`, as given.
    Given(P),
    /// The file `name` in the `--traces` directory `dir`.
    InDir {
        /// The directory given.
        dir: P,
        /// The file's name in it.
        name: String,
    },
}

/// The traces of a catalog: built in, or files (`F`: where they are, then their text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceChoice<F> {
    /// The synthetic workload: nothing to read.
    Synthetic,
    /// The Zeus NSDI '23 traces built into the core: nothing to read.
    Zeus,
    /// A user's train trace and one GPU's power trace.
    Files {
        /// The train trace (`summary_train.csv` format).
        train: F,
        /// The power trace (`summary_power_{gpu}.csv` format).
        power: F,
        /// The GPU the power trace was measured on.
        gpu: String,
    },
}

/// A trace file the host read: its name, as the user knows it, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceText {
    /// The file's name (for messages).
    pub name: String,
    /// The CSV text.
    pub text: String,
}

/// The GPU of a power trace named neither by `--gpu` nor by its file name.
pub const UNNAMED_GPU: &str = "gpu";

/// The prefix of a power trace's file name before its GPU.
const POWER_PREFIX: &str = "summary_power_";

impl<P: Clone> TraceFlags<'_, P> {
    /// The traces the flags name:
    ///
    /// - no trace file: the synthetic workload when `--dataset synthetic`, or
    ///   when neither `--dataset`, `--gpu` nor `--list` is given; otherwise the
    ///   built-in Zeus traces;
    /// - `--traces DIR` (needs `--gpu`): `DIR/summary_train.csv` and
    ///   `DIR/summary_power_{gpu}.csv`;
    /// - `--train FILE --power FILE`: those files, the GPU being `--gpu`, else
    ///   what follows `summary_power_` in the power file's name, else
    ///   [`UNNAMED_GPU`];
    /// - any other mix of the three file flags is an error.
    pub fn choose(&self) -> Result<TraceChoice<TracePath<P>>, SimError> {
        match (&self.traces, &self.train, &self.power) {
            (None, None, None) => {
                let synthetic = match self.dataset {
                    Some(d) => d == SYNTHETIC_DATASET,
                    None => self.gpu.is_none() && !self.list,
                };
                Ok(if synthetic {
                    TraceChoice::Synthetic
                } else {
                    TraceChoice::Zeus
                })
            }
            (Some(dir), None, None) => {
                let gpu = self.gpu.ok_or(SimError::TracesNeedGpu)?;
                let in_dir = |name: String| TracePath::InDir {
                    dir: dir.clone(),
                    name,
                };
                Ok(TraceChoice::Files {
                    train: in_dir("summary_train.csv".to_string()),
                    power: in_dir(format!("{POWER_PREFIX}{gpu}.csv")),
                    gpu: gpu.to_string(),
                })
            }
            (None, Some(train), Some(power)) => {
                let gpu = self
                    .gpu
                    .or_else(|| self.power_stem?.strip_prefix(POWER_PREFIX))
                    .unwrap_or(UNNAMED_GPU);
                Ok(TraceChoice::Files {
                    train: TracePath::Given(train.clone()),
                    power: TracePath::Given(power.clone()),
                    gpu: gpu.to_string(),
                })
            }
            _ => Err(SimError::TraceFlags),
        }
    }
}

impl<F> TraceChoice<F> {
    /// The same choice with each file replaced by `read(file)`: the train trace
    /// first, then the power trace; the first error stops it.
    pub fn try_map<G, E>(
        self,
        mut read: impl FnMut(F) -> Result<G, E>,
    ) -> Result<TraceChoice<G>, E> {
        Ok(match self {
            TraceChoice::Synthetic => TraceChoice::Synthetic,
            TraceChoice::Zeus => TraceChoice::Zeus,
            TraceChoice::Files { train, power, gpu } => TraceChoice::Files {
                train: read(train)?,
                power: read(power)?,
                gpu,
            },
        })
    }
}

impl Catalog {
    /// The catalog of the traces chosen, their files read: a malformed file is an
    /// error naming the file, the line and the column.
    pub fn load(choice: TraceChoice<TraceText>) -> Result<Catalog, SimError> {
        match choice {
            TraceChoice::Synthetic => Ok(Catalog::synthetic()),
            TraceChoice::Zeus => Catalog::zeus(),
            TraceChoice::Files { train, power, gpu } => Catalog::from_csv(
                &train.name,
                &train.text,
                &[PowerFile {
                    gpu,
                    name: power.name,
                    text: power.text,
                }],
            ),
        }
    }

    /// What `--list` shows: the catalog's options and, when they are the
    /// built-in Zeus traces, the synthetic workload's after them.
    pub fn listing(&mut self) -> Vec<Options> {
        let mut options = vec![self.options()];
        if self.source() == Source::Zeus {
            options.push(Catalog::synthetic().options());
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> TraceFlags<'static, &'static str> {
        TraceFlags::default()
    }

    #[test]
    fn no_file_is_synthetic_or_built_in() {
        assert_eq!(flags().choose().unwrap(), TraceChoice::Synthetic);
        let list = TraceFlags {
            list: true,
            ..flags()
        };
        assert_eq!(list.choose().unwrap(), TraceChoice::Zeus);
        let gpu = TraceFlags {
            gpu: Some("v100"),
            ..flags()
        };
        assert_eq!(gpu.choose().unwrap(), TraceChoice::Zeus);
        let imagenet = TraceFlags {
            dataset: Some("imagenet"),
            ..flags()
        };
        assert_eq!(imagenet.choose().unwrap(), TraceChoice::Zeus);
        // `--dataset synthetic` wins over `--gpu` and `--list`.
        let synthetic = TraceFlags {
            dataset: Some(SYNTHETIC_DATASET),
            gpu: Some("v100"),
            list: true,
            ..flags()
        };
        assert_eq!(synthetic.choose().unwrap(), TraceChoice::Synthetic);
    }

    #[test]
    fn a_directory_needs_its_gpu() {
        let dir = TraceFlags {
            traces: Some("t"),
            ..flags()
        };
        let e = dir.choose().unwrap_err().to_string();
        assert_eq!(
            e,
            "--traces needs --gpu (the GPU of summary_power_{gpu}.csv)"
        );
        let dir = TraceFlags {
            gpu: Some("a40"),
            ..dir
        };
        let in_dir = |name: &str| TracePath::InDir {
            dir: "t",
            name: name.to_string(),
        };
        assert_eq!(
            dir.choose().unwrap(),
            TraceChoice::Files {
                train: in_dir("summary_train.csv"),
                power: in_dir("summary_power_a40.csv"),
                gpu: "a40".to_string(),
            }
        );
    }

    #[test]
    fn files_name_their_gpu() {
        let files = TraceFlags {
            train: Some("train.csv"),
            power: Some("d/summary_power_p100.csv"),
            power_stem: Some("summary_power_p100"),
            ..flags()
        };
        let gpu_of = |f: &TraceFlags<'_, &str>| match f.choose().unwrap() {
            TraceChoice::Files { gpu, train, power } => {
                assert_eq!(train, TracePath::Given("train.csv"));
                assert_eq!(power, TracePath::Given(f.power.unwrap()));
                gpu
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(gpu_of(&files), "p100");
        let named = TraceFlags {
            gpu: Some("h100"),
            ..files.clone()
        };
        assert_eq!(gpu_of(&named), "h100");
        let unnamed = TraceFlags {
            power_stem: Some("mine"),
            ..files.clone()
        };
        assert_eq!(gpu_of(&unnamed), UNNAMED_GPU);
        let no_stem = TraceFlags {
            power_stem: None,
            ..files
        };
        assert_eq!(gpu_of(&no_stem), UNNAMED_GPU);
    }

    #[test]
    fn other_mixes_of_file_flags_are_errors() {
        let rule = "give either --traces DIR --gpu GPU, or both --train FILE and --power FILE";
        for (traces, train, power) in [
            (None, Some("a"), None),
            (None, None, Some("b")),
            (Some("t"), Some("a"), Some("b")),
            (Some("t"), None, Some("b")),
        ] {
            let f = TraceFlags {
                traces,
                train,
                power,
                gpu: Some("v100"),
                ..flags()
            };
            assert_eq!(f.choose().unwrap_err().to_string(), rule, "{f:?}");
        }
    }

    #[test]
    fn files_are_read_train_first_and_loaded() {
        let choice = TraceChoice::Files {
            train: "train",
            power: "power",
            gpu: "g".to_string(),
        };
        let mut read = Vec::new();
        let e = choice
            .clone()
            .try_map(|f| {
                read.push(f);
                Err::<TraceText, _>(f)
            })
            .unwrap_err();
        assert_eq!((e, read), ("train", vec!["train"]));
        let bad = choice
            .try_map(|f| {
                Ok::<_, ()>(TraceText {
                    name: f.to_string(),
                    text: "x\n".to_string(),
                })
            })
            .unwrap();
        let e = Catalog::load(bad).unwrap_err().to_string();
        assert!(e.starts_with("train: "), "{e}");
        let synthetic = Catalog::load(TraceChoice::Synthetic).unwrap();
        assert_eq!(synthetic.source(), Source::Synthetic);
        let zeus = Catalog::load(TraceChoice::Zeus).unwrap();
        assert_eq!(zeus.source(), Source::Zeus);
    }

    #[test]
    fn the_built_in_listing_adds_the_synthetic_workload() {
        let mut zeus = Catalog::zeus().unwrap();
        let listing = zeus.listing();
        let sources: Vec<Source> = listing.iter().map(|o| o.source).collect();
        assert_eq!(sources, [Source::Zeus, Source::Synthetic]);
        let listing = Catalog::synthetic().listing();
        let sources: Vec<Source> = listing.iter().map(|o| o.source).collect();
        assert_eq!(sources, [Source::Synthetic]);
    }
}
