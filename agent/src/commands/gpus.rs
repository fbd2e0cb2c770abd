//! `wattwise gpus`: the GPUs, their power limits, limit constraints and draw.

use crate::commands::Format;
use crate::nvml::inventory::{inspect, with_owners, GpuInfo};

/// Arguments of `wattwise gpus`.
#[derive(clap::Args, Debug)]
pub struct GpusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
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
    use crate::nvml::energy_meter::EnergySource;
    use crate::nvml::gpu::fake::FakeGpus;
    use crate::nvml::inventory::Owner;

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
