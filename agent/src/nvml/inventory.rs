//! What `wattwise gpus` shows of each GPU: identity, MIG, power limits and their
//! range, draw, how its energy is measured, and the wattwise run that owns it.

use serde::Serialize;

use crate::nvml::energy_meter::EnergySource;
use crate::nvml::gpu::{GpuError, Gpus};
use crate::nvml::ownership::owners;

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
