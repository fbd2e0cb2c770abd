//! `wattwise gpus`: the GPUs, their power limits, limit constraints and draw.

use serde::Serialize;

use crate::gpu::{GpuError, Gpus};

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

/// One GPU's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Model name.
    pub name: String,
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
    for index in 0..gpus.count()? {
        let c = gpus.limit_constraints(index)?;
        out.push(GpuInfo {
            index,
            name: gpus.name(index)?,
            power_limit_w: f64::from(gpus.power_limit(index)?) / 1000.0,
            min_limit_w: f64::from(c.min_mw) / 1000.0,
            max_limit_w: f64::from(c.max_mw) / 1000.0,
            power_draw_w: f64::from(gpus.power_usage(index)?) / 1000.0,
        });
    }
    Ok(out)
}

/// Renders the table.
pub fn table(infos: &[GpuInfo]) -> String {
    let name_w = infos.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    let mut s = format!(
        "{:>3}  {:<name_w$}  {:>9}  {:>15}  {:>8}\n",
        "gpu", "name", "limit (W)", "range (W)", "draw (W)"
    );
    for i in infos {
        s.push_str(&format!(
            "{:>3}  {:<name_w$}  {:>9.1}  {:>15}  {:>8.1}\n",
            i.index,
            i.name,
            i.power_limit_w,
            format!("{:.0}-{:.0}", i.min_limit_w, i.max_limit_w),
            i.power_draw_w
        ));
    }
    s
}

/// Runs `wattwise gpus`.
pub fn run(args: GpusArgs) -> anyhow::Result<()> {
    let mut gpus = crate::gpu::NvmlGpus::open()?;
    crate::limits::recover_unless_busy(&mut gpus, &crate::limits::state_dir())?;
    let infos = inspect(&gpus)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&infos)?),
        Format::Table => print!("{}", table(&infos)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::fake::FakeGpus;

    #[test]
    fn inspects_every_gpu_in_watts() {
        let mut g = FakeGpus::new(2);
        g.gpus[1].limit_mw = 212_500;
        g.gpus[1].name = "Other".into();
        let infos = inspect(&g).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[1].power_limit_w, 212.5);
        assert_eq!(infos[0].min_limit_w, 100.0);
        assert_eq!(infos[0].max_limit_w, 300.0);
        let t = table(&infos);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("212.5") && t.contains("100-300"), "{t}");
    }
}
