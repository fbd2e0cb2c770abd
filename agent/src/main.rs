//! `wattwise`: the native command-line tool.
//!
//! Each subcommand lives in its own module; this file only parses and dispatches.

use clap::{Parser, Subcommand};

mod simulate;

/// wattwise: lower the energy of recurring training jobs.
#[derive(Parser)]
#[command(name = "wattwise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate wattwise on a workload (the built-in synthetic one, or the Zeus traces).
    Simulate(simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wattwise: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
