//! `wattwise gpus`: the GPUs, their power limits, limit constraints and draw.

use serde::Serialize;

use crate::nvml::energy_meter::EnergySource;
use crate::nvml::gpu::{GpuError, Gpus};
use crate::nvml::ownership::owners;

/// Output format of the inspection commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document.
    Json,
}

/// Arguments of `wattwise gpus`.
#[derive(clap::Args, Debug)]
pub struct GpusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// The run that owns a GPU.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Owner {
    /// The agent's pid.
    pub pid: u32,
    /// The job.
    pub job: String,
}

/// One GPU's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Model name.
    pub name: String,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// PCI bus id.
    pub pci_bus_id: String,
    /// CUDA compute capability, `major.minor`.
    pub compute_capability: String,
    /// `unsupported`, `disabled` or `enabled`.
    pub mig_mode: String,
    /// UUIDs of the MIG instances (when enabled).
    pub mig_instances: Vec<String>,
    /// How its energy is measured: NVML's counter, or sampled power.
    pub energy_source: EnergySource,
    /// The wattwise run that owns it, if any.
    pub owner: Option<Owner>,
    /// Current power limit, W.
    pub power_limit_w: f64,
    /// Lowest accepted limit, W.
    pub min_limit_w: f64,
    /// Highest accepted limit, W.
    pub max_limit_w: f64,
    /// Power drawn now, W.
    pub power_draw_w: f64,
}

/// Reads every GPU.
pub fn inspect(gpus: &dyn Gpus) -> Result<Vec<GpuInfo>, GpuError> {
    let mut out = Vec::new();
    for f in crate::nvml::gpu::device_facts(gpus)? {
        let index = f.index;
        let c = gpus.limit_constraints(index)?;
        let energy_source = match gpus.total_energy(index) {
            Ok(_) => EnergySource::Counter,
            Err(GpuError::NotSupported { .. }) => EnergySource::Sampled,
            Err(e) => return Err(e),
        };
        out.push(GpuInfo {
            index,
            name: gpus.name(index)?,
            compute_capability: format!("{}.{}", f.compute_capability.0, f.compute_capability.1),
            mig_mode: f.mig.mode().to_string(),
            mig_instances: f.mig.instances().to_vec(),
            uuid: f.uuid,
            pci_bus_id: f.pci_bus_id,
            energy_source,
            owner: None,
            power_limit_w: f64::from(gpus.power_limit(index)?) / 1000.0,
            min_limit_w: f64::from(c.min_mw) / 1000.0,
            max_limit_w: f64::from(c.max_mw) / 1000.0,
            power_draw_w: f64::from(gpus.power_usage(index)?) / 1000.0,
        });
    }
    Ok(out)
}

/// Fills in the owner of each GPU from the ownership records in `dir`.
pub fn with_owners(mut infos: Vec<GpuInfo>, dir: &std::path::Path) -> Vec<GpuInfo> {
    let uuids: Vec<String> = infos.iter().map(|i| i.uuid.clone()).collect();
    for (info, rec) in infos.iter_mut().zip(owners(dir, &uuids)) {
        info.owner = rec.map(|r| Owner {
            pid: r.pid,
            job: r.job,
        });
    }
    infos
}

/// Renders the table.
pub fn table(infos: &[GpuInfo]) -> String {
    let name_w = infos.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    let uuid_w = infos.iter().map(|i| i.uuid.len()).max().unwrap_or(4).max(4);
    let mut s = format!(
        "{:>3}  {:<name_w$}  {:<uuid_w$}  {:<11}  {:>9}  {:>15}  {:>8}  {:<7}  {}\n",
        "gpu", "name", "uuid", "mig", "limit (W)", "range (W)", "draw (W)", "energy", "owner"
    );
    for i in infos {
        let mig = match i.mig_instances.len() {
            0 => i.mig_mode.clone(),
            n => format!("{n} inst."),
        };
        let owner = match &i.owner {
            Some(o) => format!("pid {} (job {})", o.pid, o.job),
            None => "-".into(),
        };
        s.push_str(&format!(
            "{:>3}  {:<name_w$}  {:<uuid_w$}  {:<11}  {:>9.1}  {:>15}  {:>8.1}  {:<7}  {}\n",
            i.index,
            i.name,
            i.uuid,
            mig,
            i.power_limit_w,
            format!("{:.0}-{:.0}", i.min_limit_w, i.max_limit_w),
            i.power_draw_w,
            i.energy_source.name(),
            owner
        ));
    }
    s
}

/// Runs `wattwise gpus`.
pub fn run(args: GpusArgs) -> anyhow::Result<()> {
    let mut gpus = crate::nvml::gpu::NvmlGpus::open()?;
    let dir = crate::nvml::limits::state_dir();
    crate::nvml::limits::recover_unless_busy(&mut gpus, &dir)?;
    let infos = with_owners(inspect(&gpus)?, &dir);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&infos)?),
        Format::Table => print!("{}", table(&infos)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    #[test]
    fn inspects_every_gpu_in_watts() {
        let mut g = FakeGpus::new(2);
        g.gpus[1].limit_mw = 212_500;
        g.gpus[1].name = "Other".into();
        g.gpus[1].energy_mj = None;
        g.gpus[0].mig = crate::nvml::gpu::Mig::Enabled(vec!["MIG-x".into(), "MIG-y".into()]);
        let infos = inspect(&g).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[1].power_limit_w, 212.5);
        assert_eq!(infos[0].min_limit_w, 100.0);
        assert_eq!(infos[0].max_limit_w, 300.0);
        assert_eq!(infos[0].mig_mode, "enabled");
        assert_eq!(infos[1].energy_source, EnergySource::Sampled);
        assert_eq!(infos[1].uuid, g.gpus[1].uuid);
        let mut infos = infos;
        infos[1].owner = Some(Owner {
            pid: 42,
            job: "mnist".into(),
        });
        let t = table(&infos);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("212.5") && t.contains("100-300"), "{t}");
        assert!(
            t.contains("2 inst.") && t.contains("pid 42 (job mnist)"),
            "{t}"
        );
        assert!(t.contains(&g.gpus[0].uuid) && t.contains("sampled"), "{t}");
    }
}
