//! `wattwise`: the native command-line tool.
//!
//! Each subcommand lives in its own module of the library
//! ([`wattwise_agent::commands`]); this file only parses and dispatches.

use clap::{Parser, Subcommand};
use wattwise_agent::commands::{exporter, gpus, measure, run, serve, simulate};

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
    /// List the GPUs: UUIDs, MIG mode, power limits and range, draw, owning run.
    Gpus(gpus::GpusArgs),
    /// Measure the time and GPU energy of a command.
    Measure(measure::MeasureArgs),
    /// Run one recurrence of a training job under wattwise (batch size, power limit, reports).
    Run(run::RunArgs),
    /// Serve the GPUs' Prometheus metrics (energy, power, limit) until stopped.
    Exporter(exporter::ExporterArgs),
    /// Serve the local endpoint (SQLite) with the what-if and jobs page until stopped.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args).map(|()| 0),
        Command::Gpus(args) => gpus::run(args).map(|()| 0),
        Command::Measure(args) => measure::run(args),
        Command::Run(args) => run::run(args),
        Command::Exporter(args) => exporter::run(args).map(|()| 0),
        Command::Serve(args) => serve::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("wattwise: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
