//! Which GPUs a command gets: `--gpus`, else `CUDA_VISIBLE_DEVICES`, else
//! `NVIDIA_VISIBLE_DEVICES`, else every GPU. A pure function of the device facts
//! and the environment's values, so every rule is unit-tested.
//!
//! Numbering: `--gpus` and `NVIDIA_VISIBLE_DEVICES` take NVML indices (the order
//! `nvidia-smi` and `wattwise gpus` show, by PCI bus id); `CUDA_VISIBLE_DEVICES`
//! takes CUDA indices, in the order `CUDA_DEVICE_ORDER` names: `PCI_BUS_ID` is PCI
//! bus order (NVML's), the default `FASTEST_FIRST` is approximated here as compute
//! capability descending, then PCI bus id (CUDA's own ranking also weighs clocks
//! and SM counts; on a host of one GPU model both orders equal NVML's). Every
//! variable also takes `GPU-…` UUIDs (CUDA: a unique prefix is enough) and `MIG-…`
//! UUIDs; a MIG instance stands for its parent GPU, which is measured and limited.

use std::collections::{BTreeMap, BTreeSet};

use crate::nvml::gpu::DeviceFacts;

/// The variable CUDA reads.
pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// The variable naming CUDA's device order.
pub const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";
/// The variable the NVIDIA container runtime (and Kubernetes' device plugin) reads.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// The environment's say in the selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectionEnv {
    /// `CUDA_VISIBLE_DEVICES`, if set.
    pub cuda_visible: Option<String>,
    /// `CUDA_DEVICE_ORDER`, if set.
    pub cuda_order: Option<String>,
    /// `NVIDIA_VISIBLE_DEVICES`, if set.
    pub nvidia_visible: Option<String>,
}

impl SelectionEnv {
    /// Reads the three variables of this process.
    pub fn from_env() -> SelectionEnv {
        SelectionEnv {
            cuda_visible: std::env::var(CUDA_VISIBLE_DEVICES).ok(),
            cuda_order: std::env::var(CUDA_DEVICE_ORDER).ok(),
            nvidia_visible: std::env::var(NVIDIA_VISIBLE_DEVICES).ok(),
        }
    }
}

/// Where a selection came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `--gpus` flag.
    Flag,
    /// `CUDA_VISIBLE_DEVICES`.
    Cuda,
    /// `NVIDIA_VISIBLE_DEVICES`.
    Nvidia,
    /// Nothing said: every GPU.
    All,
}

impl Source {
    /// How to name it in a message.
    pub fn name(self) -> &'static str {
        match self {
            Source::Flag => "--gpus",
            Source::Cuda => CUDA_VISIBLE_DEVICES,
            Source::Nvidia => NVIDIA_VISIBLE_DEVICES,
            Source::All => "every GPU (no --gpus, CUDA_VISIBLE_DEVICES or NVIDIA_VISIBLE_DEVICES)",
        }
    }
}

/// The GPUs a command gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// GPUs given whole (NVML indices).
    pub whole: BTreeSet<u32>,
    /// MIG instances given, by parent GPU (NVML index) and instance UUID.
    pub mig: BTreeMap<u32, BTreeSet<String>>,
    /// Where it came from.
    pub source: Source,
    /// `CUDA_VISIBLE_DEVICES` entries CUDA ignores (from the first invalid one on).
    pub ignored: Vec<String>,
}

impl Selection {
    /// The GPUs to measure and limit (NVML indices, ascending): the whole GPUs and
    /// the parents of the MIG instances.
    pub fn gpus(&self) -> Vec<u32> {
        let mut all: BTreeSet<u32> = self.whole.clone();
        all.extend(self.mig.keys().copied());
        all.into_iter().collect()
    }
}

/// Why no selection could be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// An entry names no GPU.
    #[error("{source_name}: {entry:?} is not {rule}")]
    Entry {
        /// The flag or variable.
        source_name: &'static str,
        /// The entry.
        entry: String,
        /// What it must be.
        rule: String,
    },
    /// The selection is empty.
    #[error("{source_name}={value:?} gives this command no GPU{why}")]
    NoGpu {
        /// The flag or variable.
        source_name: &'static str,
        /// Its value.
        value: String,
        /// A hint.
        why: String,
    },
    /// A CUDA index beyond the devices this process sees.
    #[error("gpu_indices: CUDA index {index} is not visible to this process: {visible} gives it {count} GPU(s), CUDA indices 0 to {last}")]
    CudaIndex {
        /// The index given.
        index: i64,
        /// What made the GPUs visible.
        visible: String,
        /// How many are visible.
        count: usize,
        /// The highest visible index.
        last: usize,
    },
    /// Two CUDA indices given are one GPU (an index given twice, or two MIG
    /// instances of one GPU: wattwise measures whole GPUs).
    #[error("gpu_indices: CUDA indices {first} and {second} are both GPU {gpu} (NVML index; {visible}): wattwise measures whole GPUs, so give one of them")]
    CudaSameGpu {
        /// The first index.
        first: usize,
        /// The second.
        second: usize,
        /// Their GPU (NVML index).
        gpu: u32,
        /// What made the GPUs visible.
        visible: String,
    },
    /// A limit change would reach MIG instances the run was not given.
    #[error("GPU {index} ({uuid}) is split into MIG instances and this run was given {given} of its {total}: its power limit is the whole GPU's and would change the other instances' too, so wattwise will not change it; give the run the whole GPU or every instance (`wattwise measure` only reads it)")]
    MigShared {
        /// The parent GPU.
        index: u32,
        /// Its UUID.
        uuid: String,
        /// Instances given.
        given: usize,
        /// Instances it has.
        total: usize,
    },
}

/// Positions into `facts` in CUDA's order for `CUDA_DEVICE_ORDER` = `order`.
pub fn cuda_order(facts: &[DeviceFacts], order: Option<&str>) -> Vec<usize> {
    let mut pos: Vec<usize> = (0..facts.len()).collect();
    let bus = |i: usize| pci_key(&facts[i].pci_bus_id);
    if order.map(str::trim) == Some("PCI_BUS_ID") {
        pos.sort_by_key(|&i| bus(i));
    } else {
        pos.sort_by(|&a, &b| {
            facts[b]
                .compute_capability
                .cmp(&facts[a].compute_capability)
                .then_with(|| bus(a).cmp(&bus(b)))
        });
    }
    pos
}

/// `domain:bus:device.function` as numbers (unparsable ids sort last, by text).
fn pci_key(id: &str) -> (u64, u64, u64, u64, String) {
    let parse = |s: &str| u64::from_str_radix(s, 16).ok();
    let parts: Option<(u64, u64, u64, u64)> = (|| {
        let (domain, rest) = id.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        Some((parse(domain)?, parse(bus)?, parse(dev)?, parse(func)?))
    })();
    match parts {
        Some((a, b, c, d)) => (a, b, c, d, String::new()),
        None => (u64::MAX, 0, 0, 0, id.to_string()),
    }
}

/// What one entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Named {
    Gpu(u32),
    Mig { parent: u32, uuid: String },
}

/// Resolves one entry: an index into `order` (positions into `facts`), a `GPU-`
/// UUID or unique prefix of one, or a `MIG-` UUID.
fn resolve(facts: &[DeviceFacts], order: &[usize], entry: &str) -> Option<Named> {
    if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) {
        let i: usize = entry.parse().ok()?;
        return order.get(i).map(|&p| Named::Gpu(facts[p].index));
    }
    let lower = entry.to_ascii_lowercase();
    if lower.starts_with("gpu-") {
        let mut found = facts
            .iter()
            .filter(|f| f.uuid.to_ascii_lowercase().starts_with(&lower));
        let first = found.next()?;
        return found.next().is_none().then_some(Named::Gpu(first.index));
    }
    if lower.starts_with("mig-") {
        for f in facts {
            if let Some(u) = f
                .mig
                .instances()
                .iter()
                .find(|u| u.to_ascii_lowercase() == lower)
            {
                return Some(Named::Mig {
                    parent: f.index,
                    uuid: u.clone(),
                });
            }
        }
    }
    None
}

fn add(sel: &mut Selection, named: Named) {
    match named {
        Named::Gpu(i) => {
            sel.whole.insert(i);
        }
        Named::Mig { parent, uuid } => {
            sel.mig.entry(parent).or_default().insert(uuid);
        }
    }
}

fn empty(source: Source) -> Selection {
    Selection {
        whole: BTreeSet::new(),
        mig: BTreeMap::new(),
        source,
        ignored: Vec::new(),
    }
}

fn entries(value: &str) -> Vec<String> {
    value.split(',').map(|e| e.trim().to_string()).collect()
}

/// A strict list (`--gpus`, `NVIDIA_VISIBLE_DEVICES`): NVML indices and UUIDs;
/// any entry that names no GPU is an error.
fn strict(facts: &[DeviceFacts], source: Source, value: &str) -> Result<Selection, SelectError> {
    let nvml: Vec<usize> = (0..facts.len()).collect();
    let mut sel = empty(source);
    for e in entries(value) {
        let named = resolve(facts, &nvml, &e).ok_or_else(|| SelectError::Entry {
            source_name: source.name(),
            entry: e.clone(),
            rule: format!(
                "an NVML GPU index below {} or the UUID of one GPU (GPU-… or MIG-…)",
                facts.len()
            ),
        })?;
        add(&mut sel, named);
    }
    Ok(sel)
}

fn everything(facts: &[DeviceFacts], source: Source) -> Selection {
    let mut sel = empty(source);
    sel.whole = facts.iter().map(|f| f.index).collect();
    sel
}

/// `CUDA_VISIBLE_DEVICES`, as CUDA reads it: entries in order until the first
/// invalid (or repeated) one; CUDA ignores that one and the rest. Answers the
/// devices CUDA numbers 0, 1, … in that order, and the ignored entries.
fn cuda_list(facts: &[DeviceFacts], order: Option<&str>, value: &str) -> (Vec<Named>, Vec<String>) {
    let order = cuda_order(facts, order);
    let mut seen = Vec::new();
    let list = entries(value);
    for (n, e) in list.iter().enumerate() {
        match resolve(facts, &order, e) {
            Some(named) if !seen.contains(&named) => seen.push(named),
            _ => return (seen, list[n..].to_vec()),
        }
    }
    (seen, Vec::new())
}

/// `CUDA_VISIBLE_DEVICES`'s selection (see [`cuda_list`]).
fn cuda(facts: &[DeviceFacts], order: Option<&str>, value: &str) -> Selection {
    let (named, ignored) = cuda_list(facts, order, value);
    let mut sel = empty(Source::Cuda);
    for n in named {
        add(&mut sel, n);
    }
    sel.ignored = ignored;
    sel
}

/// The GPUs a command gets: `flag` (the `--gpus` entries), else
/// `CUDA_VISIBLE_DEVICES`, else `NVIDIA_VISIBLE_DEVICES`, else every GPU.
/// Never empty.
pub fn select(
    facts: &[DeviceFacts],
    env: &SelectionEnv,
    flag: Option<&str>,
) -> Result<Selection, SelectError> {
    let (sel, value) = if let Some(value) = flag {
        let sel = if value.trim() == "all" {
            everything(facts, Source::Flag)
        } else {
            strict(facts, Source::Flag, value)?
        };
        (sel, value)
    } else if let Some(value) = &env.cuda_visible {
        (
            cuda(facts, env.cuda_order.as_deref(), value),
            value.as_str(),
        )
    } else if let Some(value) = &env.nvidia_visible {
        let v = value.trim();
        let sel = match v {
            "all" => everything(facts, Source::Nvidia),
            "" | "none" | "void" => empty(Source::Nvidia),
            _ => {
                let list = entries(v);
                // Inside a container NVML sees exactly the GPUs the runtime
                // exposed, while the indices name the host's: as many indices as
                // GPUs means all of them (on the host too, when they are valid).
                if list.len() == facts.len()
                    && list
                        .iter()
                        .all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
                {
                    everything(facts, Source::Nvidia)
                } else {
                    strict(facts, Source::Nvidia, v)?
                }
            }
        };
        (sel, value.as_str())
    } else {
        (everything(facts, Source::All), "")
    };
    if sel.gpus().is_empty() {
        let why = if facts.is_empty() {
            " (NVML finds no GPU on this host)".to_string()
        } else if let Some(first) = sel.ignored.first() {
            format!(" (CUDA stops at the first entry that names no GPU: {first:?})")
        } else {
            String::new()
        };
        return Err(SelectError::NoGpu {
            source_name: if sel.source == Source::All {
                "GPUs"
            } else {
                sel.source.name()
            },
            value: value.to_string(),
            why,
        });
    }
    Ok(sel)
}

/// The GPUs a process's CUDA devices are, in CUDA's numbering (what Zeus's
/// `gpu_indices` count): see [`cuda_devices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaDevices {
    /// `gpus[i]` is the NVML index of CUDA device `i` (of a MIG instance: of its
    /// parent GPU, which is measured).
    pub gpus: Vec<u32>,
    /// What made them visible, for messages (`CUDA_VISIBLE_DEVICES="2,3"`).
    pub visible: String,
    /// `CUDA_VISIBLE_DEVICES` entries CUDA ignores (from the first invalid one on).
    pub ignored: Vec<String>,
}

/// The GPUs CUDA numbers 0, 1, … in a process of environment `env`: the
/// entries of `CUDA_VISIBLE_DEVICES` in their order, up to the first that
/// names no GPU (as [`select`] reads them); without it, the GPUs [`select`]
/// gives with no flag (`NVIDIA_VISIBLE_DEVICES`, else every GPU) in CUDA's
/// order ([`cuda_order`]). Errors as [`select`]; never empty.
pub fn cuda_devices(facts: &[DeviceFacts], env: &SelectionEnv) -> Result<CudaDevices, SelectError> {
    let sel = select(facts, env, None)?;
    let order = env.cuda_order.as_deref();
    let ignored = sel.ignored.clone();
    let (gpus, visible) = match (&env.cuda_visible, sel.source) {
        (Some(value), Source::Cuda) => {
            let gpus = cuda_list(facts, order, value)
                .0
                .into_iter()
                .map(|n| match n {
                    Named::Gpu(i) => i,
                    Named::Mig { parent, .. } => parent,
                })
                .collect();
            (gpus, format!("{CUDA_VISIBLE_DEVICES}={value:?}"))
        }
        _ => {
            let chosen = sel.gpus();
            let gpus = cuda_order(facts, order)
                .into_iter()
                .map(|p| facts[p].index)
                .filter(|i| chosen.contains(i))
                .collect();
            let visible = match (&env.nvidia_visible, sel.source) {
                (Some(value), Source::Nvidia) => format!("{NVIDIA_VISIBLE_DEVICES}={value:?}"),
                _ => "this host (no CUDA_VISIBLE_DEVICES)".to_string(),
            };
            (gpus, visible)
        }
    };
    Ok(CudaDevices {
        gpus,
        visible,
        ignored,
    })
}

impl CudaDevices {
    /// The NVML indices of the CUDA devices `indices` (in their order; `None`:
    /// every visible one, `0..n`). An index beyond the visible devices, or two
    /// that are one GPU, is an error naming them.
    pub fn nvml_indices(&self, indices: Option<&[i64]>) -> Result<Vec<u32>, SelectError> {
        let every: Vec<i64>;
        let indices = match indices {
            Some(given) => given,
            None => {
                every = (0..self.gpus.len() as i64).collect();
                &every
            }
        };
        let mut out: Vec<u32> = Vec::with_capacity(indices.len());
        for (k, &index) in indices.iter().enumerate() {
            let gpu = usize::try_from(index)
                .ok()
                .and_then(|i| self.gpus.get(i))
                .copied()
                .ok_or_else(|| SelectError::CudaIndex {
                    index,
                    visible: self.visible.clone(),
                    count: self.gpus.len(),
                    last: self.gpus.len().saturating_sub(1),
                })?;
            if let Some(j) = out.iter().position(|&g| g == gpu) {
                return Err(SelectError::CudaSameGpu {
                    first: indices[j] as usize,
                    second: indices[k] as usize,
                    gpu,
                    visible: self.visible.clone(),
                });
            }
            out.push(gpu);
        }
        Ok(out)
    }
}

/// Refuses a selection whose power limits cannot be changed: a MIG-enabled GPU
/// some of whose instances were not given to the run.
pub fn check_limits_allowed(facts: &[DeviceFacts], sel: &Selection) -> Result<(), SelectError> {
    for (&parent, given) in &sel.mig {
        if sel.whole.contains(&parent) {
            continue;
        }
        let Some(f) = facts.iter().find(|f| f.index == parent) else {
            continue;
        };
        let all = f.mig.instances();
        if !all.iter().all(|u| given.contains(u)) {
            return Err(SelectError::MigShared {
                index: parent,
                uuid: f.uuid.clone(),
                given: given.len(),
                total: all.len(),
            });
        }
    }
    Ok(())
}

/// Reads the host's GPUs and selects the command's (the environment of this
/// process, `flag` from `--gpus`); says on stderr which entries CUDA ignores.
pub fn select_on_host(
    gpus: &dyn crate::nvml::gpu::Gpus,
    flag: Option<&str>,
) -> anyhow::Result<(Vec<DeviceFacts>, Selection)> {
    let facts = crate::nvml::gpu::device_facts(gpus)?;
    let sel = select(&facts, &SelectionEnv::from_env(), flag)?;
    log_ignored(&sel.ignored, &sel.gpus());
    Ok((facts, sel))
}

/// Reads the host's GPUs and answers this process's CUDA devices
/// ([`cuda_devices`]); says on stderr which entries CUDA ignores.
pub fn cuda_devices_on_host(gpus: &dyn crate::nvml::gpu::Gpus) -> anyhow::Result<CudaDevices> {
    let facts = crate::nvml::gpu::device_facts(gpus)?;
    let devices = cuda_devices(&facts, &SelectionEnv::from_env())?;
    log_ignored(&devices.ignored, &devices.gpus);
    Ok(devices)
}

fn log_ignored(ignored: &[String], using: &[u32]) {
    if let Some(first) = ignored.first() {
        crate::log::log(format!(
            "{CUDA_VISIBLE_DEVICES}: CUDA ignores {first:?} and what follows (the first entry that names no GPU ends its list); using GPUs {using:?}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::Mig;

    fn host(n: u32) -> Vec<DeviceFacts> {
        (0..n)
            .map(|i| DeviceFacts {
                index: i,
                uuid: format!("GPU-{i:08x}-aaaa-4000-8000-000000000000"),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x10 + i),
                compute_capability: (8, 0),
                mig: Mig::Disabled,
            })
            .collect()
    }

    fn cuda_env(v: &str) -> SelectionEnv {
        SelectionEnv {
            cuda_visible: Some(v.into()),
            ..Default::default()
        }
    }

    fn gpus(facts: &[DeviceFacts], env: &SelectionEnv, flag: Option<&str>) -> Vec<u32> {
        select(facts, env, flag).unwrap().gpus()
    }

    #[test]
    fn nothing_said_is_every_gpu() {
        let f = host(4);
        let s = select(&f, &SelectionEnv::default(), None).unwrap();
        assert_eq!(s.gpus(), vec![0, 1, 2, 3]);
        assert_eq!(s.source, Source::All);
        let err = select(&[], &SelectionEnv::default(), None).unwrap_err();
        assert!(err.to_string().contains("NVML finds no GPU"), "{err}");
    }

    #[test]
    fn cuda_indices_uuids_and_prefixes() {
        let f = host(8);
        assert_eq!(gpus(&f, &cuda_env("2,5"), None), vec![2, 5]);
        assert_eq!(gpus(&f, &cuda_env(" 5 , 2 "), None), vec![2, 5]);
        let env = cuda_env(&format!("{},{}", f[2].uuid, f[5].uuid));
        assert_eq!(gpus(&f, &env, None), vec![2, 5]);
        // A unique prefix is enough; an ambiguous one names nothing.
        assert_eq!(gpus(&f, &cuda_env("GPU-00000003"), None), vec![3]);
        let err = select(&f, &cuda_env("GPU-0000000"), None).unwrap_err();
        assert!(matches!(err, SelectError::NoGpu { .. }), "{err}");
        // Case does not matter.
        assert_eq!(gpus(&f, &cuda_env("gpu-00000004-AAAA"), None), vec![4]);
    }

    #[test]
    fn cuda_stops_at_the_first_invalid_or_repeated_entry() {
        let f = host(8);
        let s = select(&f, &cuda_env("1,9,3"), None).unwrap();
        assert_eq!(s.gpus(), vec![1]);
        assert_eq!(s.ignored, vec!["9".to_string(), "3".to_string()]);
        assert_eq!(gpus(&f, &cuda_env("4,4,6"), None), vec![4]);
        assert_eq!(gpus(&f, &cuda_env("0,-1,2"), None), vec![0]);
        for v in ["", "-1", "nope,1", "8"] {
            let err = select(&f, &cuda_env(v), None).unwrap_err();
            assert!(
                err.to_string().contains("CUDA_VISIBLE_DEVICES")
                    && err.to_string().contains("no GPU"),
                "{v}: {err}"
            );
        }
    }

    #[test]
    fn cuda_order_fastest_first_puts_newer_gpus_first() {
        let mut f = host(4);
        f[0].compute_capability = (6, 0);
        f[2].compute_capability = (9, 0);
        // FASTEST_FIRST: 2 (9.0), then 1 and 3 (8.0, by bus), then 0 (6.0).
        assert_eq!(cuda_order(&f, None), vec![2, 1, 3, 0]);
        assert_eq!(cuda_order(&f, Some("FASTEST_FIRST")), vec![2, 1, 3, 0]);
        assert_eq!(gpus(&f, &cuda_env("0"), None), vec![2]);
        assert_eq!(gpus(&f, &cuda_env("3"), None), vec![0]);
        let mut env = cuda_env("0");
        env.cuda_order = Some("PCI_BUS_ID".into());
        assert_eq!(gpus(&f, &env, None), vec![0]);
        // PCI order is numeric, not textual, and NVML's order need not be it.
        f[1].pci_bus_id = "00000000:9A:00.0".into();
        f[3].pci_bus_id = "00000000:1B:00.0".into();
        assert_eq!(cuda_order(&f, Some("PCI_BUS_ID")), vec![0, 2, 3, 1]);
        // One model: both orders are NVML's.
        let g = host(5);
        assert_eq!(cuda_order(&g, None), vec![0, 1, 2, 3, 4]);
        assert_eq!(cuda_order(&g, Some("PCI_BUS_ID")), vec![0, 1, 2, 3, 4]);
    }

    fn mig_host() -> Vec<DeviceFacts> {
        let mut f = host(4);
        f[1].mig = Mig::Enabled(vec!["MIG-a".into(), "MIG-b".into()]);
        f[3].mig = Mig::Unsupported;
        f
    }

    #[test]
    fn a_mig_instance_stands_for_its_parent() {
        let f = mig_host();
        let s = select(&f, &cuda_env("MIG-b"), None).unwrap();
        assert_eq!(s.gpus(), vec![1]);
        assert!(s.whole.is_empty());
        // Only one of two instances: measuring is fine, limiting is refused.
        let err = check_limits_allowed(&f, &s).unwrap_err();
        assert!(
            matches!(
                err,
                SelectError::MigShared {
                    index: 1,
                    given: 1,
                    total: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("GPU 1"), "{err}");
        // Every instance, or the whole GPU: allowed.
        let s = select(&f, &cuda_env("MIG-a,MIG-b"), None).unwrap();
        check_limits_allowed(&f, &s).unwrap();
        let s = select(&f, &SelectionEnv::default(), Some("1")).unwrap();
        check_limits_allowed(&f, &s).unwrap();
        let s = select(&f, &SelectionEnv::default(), Some("MIG-a,0")).unwrap();
        assert_eq!(s.gpus(), vec![0, 1]);
        assert!(check_limits_allowed(&f, &s).is_err());
    }

    #[test]
    fn the_flag_takes_nvml_indices_and_uuids_and_wins() {
        let mut f = host(4);
        f[0].compute_capability = (6, 0);
        let env = cuda_env("0");
        // CUDA's 0 is NVML's 1 here; the flag's 0 is NVML's 0.
        assert_eq!(gpus(&f, &env, None), vec![1]);
        assert_eq!(gpus(&f, &env, Some("0")), vec![0]);
        let s = select(&f, &env, Some(&f[3].uuid.clone())).unwrap();
        assert_eq!((s.gpus(), s.source), (vec![3], Source::Flag));
        assert_eq!(gpus(&f, &env, Some("all")), vec![0, 1, 2, 3]);
        for bad in ["4", "x", "0,,1", "GPU-ffff"] {
            let err = select(&f, &env, Some(bad)).unwrap_err();
            assert!(err.to_string().starts_with("--gpus:"), "{bad}: {err}");
        }
    }

    #[test]
    fn nvidia_visible_devices() {
        let f = host(8);
        let env = |v: &str| SelectionEnv {
            nvidia_visible: Some(v.into()),
            ..Default::default()
        };
        assert_eq!(gpus(&f, &env("all"), None), (0..8).collect::<Vec<_>>());
        assert_eq!(gpus(&f, &env("2,5"), None), vec![2, 5]);
        assert_eq!(gpus(&f, &env(&f[6].uuid.clone()), None), vec![6]);
        for none in ["none", "void", ""] {
            let err = select(&f, &env(none), None).unwrap_err();
            assert!(err.to_string().contains("NVIDIA_VISIBLE_DEVICES"), "{err}");
        }
        assert!(select(&f, &env("9"), None).is_err());
        // In a container NVML sees only the exposed GPUs; the host's indices
        // then name all of them.
        let container = host(2);
        assert_eq!(gpus(&container, &env("5,7"), None), vec![0, 1]);
        // CUDA_VISIBLE_DEVICES comes first.
        let mut both = env("2,5");
        both.cuda_visible = Some("1".into());
        assert_eq!(gpus(&f, &both, None), vec![1]);
    }

    #[test]
    fn cuda_devices_number_the_visible_gpus_in_cuda_order() {
        let f = host(4);
        let dev = |env: &SelectionEnv| cuda_devices(&f, env).unwrap();
        // The list's order, not NVML's: CUDA device 0 is GPU 3.
        let d = dev(&cuda_env("3,1"));
        assert_eq!(d.gpus, vec![3, 1]);
        assert_eq!(d.visible, "CUDA_VISIBLE_DEVICES=\"3,1\"");
        assert_eq!(d.nvml_indices(Some(&[0])).unwrap(), vec![3]);
        assert_eq!(d.nvml_indices(Some(&[1, 0])).unwrap(), vec![1, 3]);
        assert_eq!(d.nvml_indices(None).unwrap(), vec![3, 1]);
        // UUIDs (and unique prefixes), up to the first entry that names no GPU.
        let d = dev(&cuda_env(&format!("{},GPU-00000002,nope,0", f[2].uuid)));
        assert_eq!(d.gpus, vec![2]);
        assert_eq!(d.ignored, vec!["GPU-00000002", "nope", "0"]);
        let d = dev(&cuda_env("GPU-00000002,0"));
        assert_eq!(d.gpus, vec![2, 0]);
        // Nothing said: every GPU, in CUDA's order.
        let mut g = host(4);
        g[3].compute_capability = (9, 0);
        let d = cuda_devices(&g, &SelectionEnv::default()).unwrap();
        assert_eq!(d.gpus, vec![3, 0, 1, 2]);
        assert!(d.visible.contains("this host"), "{}", d.visible);
        // NVIDIA_VISIBLE_DEVICES: its GPUs, in CUDA's order.
        let nv = SelectionEnv {
            nvidia_visible: Some("2,3".into()),
            ..Default::default()
        };
        let d = cuda_devices(&g, &nv).unwrap();
        assert_eq!(d.gpus, vec![3, 2]);
        assert_eq!(d.visible, "NVIDIA_VISIBLE_DEVICES=\"2,3\"");
        // A MIG instance is its parent GPU.
        let m = mig_host();
        assert_eq!(
            cuda_devices(&m, &cuda_env("2,MIG-b")).unwrap().gpus,
            vec![2, 1]
        );
        // Nothing visible: select's error.
        let err = cuda_devices(&f, &cuda_env("7")).unwrap_err();
        assert!(matches!(err, SelectError::NoGpu { .. }), "{err}");
    }

    #[test]
    fn cuda_indices_beyond_the_visible_or_on_one_gpu_are_errors() {
        let f = host(4);
        let d = cuda_devices(&f, &cuda_env("2,3")).unwrap();
        for bad in [2, -1, 99] {
            let err = d.nvml_indices(Some(&[0, bad])).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, SelectError::CudaIndex { index, count: 2, .. } if index == bad)
                    && msg.contains(&format!("CUDA index {bad} "))
                    && msg.contains("CUDA_VISIBLE_DEVICES=\"2,3\"")
                    && msg.contains("2 GPU(s), CUDA indices 0 to 1"),
                "{msg}"
            );
        }
        let err = d.nvml_indices(Some(&[1, 0, 1])).unwrap_err();
        assert!(
            matches!(
                err,
                SelectError::CudaSameGpu {
                    first: 1,
                    second: 1,
                    gpu: 3,
                    ..
                }
            ),
            "{err}"
        );
        // Two MIG instances of one GPU are two CUDA devices but one measured GPU.
        let m = mig_host();
        let d = cuda_devices(&m, &cuda_env("MIG-a,MIG-b")).unwrap();
        assert_eq!(d.gpus, vec![1, 1]);
        assert_eq!(d.nvml_indices(Some(&[1])).unwrap(), vec![1]);
        let err = d.nvml_indices(Some(&[0, 1])).unwrap_err();
        assert!(
            err.to_string()
                .contains("CUDA indices 0 and 1 are both GPU 1"),
            "{err}"
        );
        assert!(d.nvml_indices(None).is_err());
    }
}
