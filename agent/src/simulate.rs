//! `wattwise simulate` (filled by the simulator work).

/// Arguments of `wattwise simulate`.
#[derive(clap::Args)]
pub struct SimulateArgs {}

/// Runs the simulator and prints the result.
pub fn run(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("the simulator is not built yet")
}
