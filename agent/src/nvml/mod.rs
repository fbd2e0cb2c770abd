//! The GPUs through NVML: the trait the rest of the agent uses, its real backend,
//! the selection of a job's GPUs, their ownership and limits, their energy, and
//! what `wattwise gpus` shows of them.

pub mod energy_meter;
pub mod gpu;
pub mod inventory;
pub mod limits;
pub mod ownership;
pub mod selection;
