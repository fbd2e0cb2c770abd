//! `wattwise exporter --listen ADDR`: serves the GPUs' Prometheus metrics
//! ([`crate::exporter`]) until SIGINT or SIGTERM.

use crate::exporter::{Exporter, RunStatus, Source};
use crate::log::log;
use crate::nvml::gpu::NvmlGpus;

/// Where `wattwise exporter` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9402";

/// Arguments of `wattwise exporter`.
#[derive(clap::Args, Debug)]
pub struct ExporterArgs {
    /// Address to serve GET /metrics on: HOST:PORT, or a bare PORT (on 127.0.0.1).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
}

/// Runs `wattwise exporter` until SIGINT or SIGTERM. It only reads the GPUs.
pub fn run(args: ExporterArgs) -> anyhow::Result<()> {
    let source = Source::new(Box::new(NvmlGpus::open()?), None, RunStatus::default())?;
    let exporter = Exporter::bind("--listen", &args.listen, source)?;
    crate::run::child::catch_termination_signals();
    log(format!(
        "metrics of {} GPU(s) at http://{}/metrics",
        exporter.gpu_count(),
        exporter.local_addr()?
    ));
    exporter.serve(|| crate::run::child::signalled().is_some())?;
    Ok(())
}
