//! The subcommands of `wattwise`, one module each: each parses its flags and
//! calls the library.

pub mod exporter;
pub mod gpus;
pub mod measure;
pub mod run;
pub mod simulate;
