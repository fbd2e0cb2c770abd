//! The subcommands of `wattwise`, one module each: each parses its flags and
//! calls the library.

pub mod exporter;
pub mod gpus;
pub mod measure;
pub mod run;
#[cfg(feature = "serve")]
pub mod serve;
pub mod simulate;

/// Output format of the inspection commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document.
    Json,
}
