//! GPU access: a small trait over what the agent needs from NVML, its
//! `nvml-wrapper` implementation, and a recording in-memory fake for unit tests.
//!
//! Units are NVML's: milliwatts and millijoules.

use std::ffi::OsStr;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use wattwise_core::power::LimitConstraints;

/// Environment variable overriding the NVML library path.
pub const NVML_LIB_ENV: &str = "WATTWISE_NVML_LIB";
/// The system NVML library.
pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";

/// What can go wrong talking to the GPUs.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// NVML could not be loaded or initialized.
    #[error("cannot use NVML from {lib} ({reason}); this command needs an NVIDIA GPU and its driver (set {NVML_LIB_ENV} to use another libnvidia-ml)")]
    Unavailable {
        /// The library path tried.
        lib: String,
        /// NVML's reason.
        reason: String,
    },
    /// NVML refused to change a setting.
    #[error("NVML refused to set the power limit of GPU {index}: changing GPU power limits needs the CAP_SYS_ADMIN capability (run the agent as root, or under systemd with AmbientCapabilities=CAP_SYS_ADMIN as in agent/wattwise-agent.service)")]
    NoPermission {
        /// The GPU.
        index: u32,
    },
    /// The GPU does not have this (e.g. the energy counter before Volta).
    #[error("GPU {index} cannot {what}: NVML answers not supported")]
    NotSupported {
        /// What was asked.
        what: &'static str,
        /// The GPU.
        index: u32,
    },
    /// Any other NVML failure.
    #[error("NVML failed to {what} of GPU {index}: {reason}")]
    Call {
        /// What was asked.
        what: &'static str,
        /// The GPU.
        index: u32,
        /// NVML's reason.
        reason: String,
    },
}

/// A GPU's MIG (Multi-Instance GPU) mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mig {
    /// The GPU has no MIG (before Ampere, or consumer GPUs).
    Unsupported,
    /// MIG is off: the GPU is one device.
    Disabled,
    /// MIG is on; the UUIDs (`MIG-…`) of its instances.
    Enabled(Vec<String>),
}

impl Mig {
    /// `unsupported`, `disabled` or `enabled`.
    pub fn mode(&self) -> &'static str {
        match self {
            Mig::Unsupported => "unsupported",
            Mig::Disabled => "disabled",
            Mig::Enabled(_) => "enabled",
        }
    }

    /// The instances' UUIDs (none unless enabled).
    pub fn instances(&self) -> &[String] {
        match self {
            Mig::Enabled(list) => list,
            _ => &[],
        }
    }
}

/// What identifies a GPU and orders it the way CUDA does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFacts {
    /// NVML index.
    pub index: u32,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// PCI bus id, `domain:bus:device.function` in hex.
    pub pci_bus_id: String,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// MIG mode and instances.
    pub mig: Mig,
}

/// The facts of every GPU, in NVML order.
pub fn device_facts(gpus: &dyn Gpus) -> Result<Vec<DeviceFacts>, GpuError> {
    (0..gpus.count()?)
        .map(|index| {
            Ok(DeviceFacts {
                index,
                uuid: gpus.uuid(index)?,
                pci_bus_id: gpus.pci_bus_id(index)?,
                compute_capability: gpus.compute_capability(index)?,
                mig: gpus.mig(index)?,
            })
        })
        .collect()
}

/// The GPU operations the agent uses.
pub trait Gpus {
    /// Number of GPUs.
    fn count(&self) -> Result<u32, GpuError>;
    /// Model name of GPU `index`.
    fn name(&self, index: u32) -> Result<String, GpuError>;
    /// Power limits GPU `index` accepts, mW.
    fn limit_constraints(&self, index: u32) -> Result<LimitConstraints, GpuError>;
    /// Current power limit, mW.
    fn power_limit(&self, index: u32) -> Result<u32, GpuError>;
    /// Sets the power limit, mW.
    fn set_power_limit(&mut self, index: u32, limit_mw: u32) -> Result<(), GpuError>;
    /// Power drawn now, mW.
    fn power_usage(&self, index: u32) -> Result<u32, GpuError>;
    /// Energy counter since the driver loaded, mJ ([`GpuError::NotSupported`] on
    /// GPUs without one).
    fn total_energy(&self, index: u32) -> Result<u64, GpuError>;
    /// The `GPU-…` UUID (as `nvidia-smi -L` shows it).
    fn uuid(&self, index: u32) -> Result<String, GpuError>;
    /// The PCI bus id.
    fn pci_bus_id(&self, index: u32) -> Result<String, GpuError>;
    /// CUDA compute capability (major, minor).
    fn compute_capability(&self, index: u32) -> Result<(i32, i32), GpuError>;
    /// MIG mode and instances.
    fn mig(&self, index: u32) -> Result<Mig, GpuError>;
    /// NVML's power fields, mW, where the GPU offers them
    /// (`nvmlDeviceGetFieldValues`): the instantaneous power
    /// (`NVML_FI_DEV_POWER_INSTANT`) and the averaged one
    /// (`NVML_FI_DEV_POWER_AVERAGE`); `None` for a field it lacks. The default
    /// answers neither (as drivers before 530 do).
    fn power_fields(&self, index: u32) -> Result<PowerFields, GpuError> {
        let _ = index;
        Ok(PowerFields::default())
    }
}

/// NVML field id of the instantaneous power draw, mW.
pub const FI_POWER_INSTANT: u32 = 186;
/// NVML field id of the averaged power draw, mW.
pub const FI_POWER_AVERAGE: u32 = 185;

/// The power fields a GPU answered (see [`Gpus::power_fields`]), mW.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PowerFields {
    /// `NVML_FI_DEV_POWER_INSTANT`.
    pub instant_mw: Option<u32>,
    /// `NVML_FI_DEV_POWER_AVERAGE`.
    pub average_mw: Option<u32>,
}

/// The NVML library path: `WATTWISE_NVML_LIB` or the system library.
pub fn nvml_lib_path() -> String {
    std::env::var(NVML_LIB_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_NVML_LIB.to_string())
}

/// The real GPUs through `nvml-wrapper`.
pub struct NvmlGpus {
    nvml: Nvml,
}

impl NvmlGpus {
    /// Loads NVML from [`nvml_lib_path`] and initializes it.
    pub fn open() -> Result<NvmlGpus, GpuError> {
        let lib = nvml_lib_path();
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(&lib))
            .init()
            .map_err(|e| GpuError::Unavailable {
                lib: lib.clone(),
                reason: e.to_string(),
            })?;
        Ok(NvmlGpus { nvml })
    }

    fn call<T>(
        &self,
        what: &'static str,
        index: u32,
        f: impl FnOnce(&mut nvml_wrapper::Device<'_>) -> Result<T, NvmlError>,
    ) -> Result<T, GpuError> {
        let err = |e: NvmlError| match e {
            NvmlError::NoPermission => GpuError::NoPermission { index },
            NvmlError::NotSupported => GpuError::NotSupported { what, index },
            other => GpuError::Call {
                what,
                index,
                reason: other.to_string(),
            },
        };
        let mut device = self.nvml.device_by_index(index).map_err(err)?;
        f(&mut device).map_err(err)
    }
}

impl Gpus for NvmlGpus {
    fn count(&self) -> Result<u32, GpuError> {
        self.nvml.device_count().map_err(|e| GpuError::Call {
            what: "count the GPUs",
            index: 0,
            reason: e.to_string(),
        })
    }

    fn name(&self, index: u32) -> Result<String, GpuError> {
        self.call("read the name", index, |d| d.name())
    }

    fn limit_constraints(&self, index: u32) -> Result<LimitConstraints, GpuError> {
        self.call("read the power limit constraints", index, |d| {
            d.power_management_limit_constraints()
                .map(|c| LimitConstraints {
                    min_mw: c.min_limit,
                    max_mw: c.max_limit,
                })
        })
    }

    fn power_limit(&self, index: u32) -> Result<u32, GpuError> {
        self.call("read the power limit", index, |d| {
            d.power_management_limit()
        })
    }

    fn set_power_limit(&mut self, index: u32, limit_mw: u32) -> Result<(), GpuError> {
        self.call("set the power limit", index, |d| {
            d.set_power_management_limit(limit_mw)
        })
    }

    fn power_usage(&self, index: u32) -> Result<u32, GpuError> {
        self.call("read the power draw", index, |d| d.power_usage())
    }

    fn total_energy(&self, index: u32) -> Result<u64, GpuError> {
        self.call("read the energy counter", index, |d| {
            d.total_energy_consumption()
        })
    }

    fn uuid(&self, index: u32) -> Result<String, GpuError> {
        self.call("read the UUID", index, |d| d.uuid())
    }

    fn pci_bus_id(&self, index: u32) -> Result<String, GpuError> {
        self.call("read the PCI bus id", index, |d| {
            d.pci_info().map(|p| p.bus_id)
        })
    }

    fn compute_capability(&self, index: u32) -> Result<(i32, i32), GpuError> {
        self.call("read the compute capability", index, |d| {
            d.cuda_compute_capability().map(|c| (c.major, c.minor))
        })
    }

    fn mig(&self, index: u32) -> Result<Mig, GpuError> {
        let mode = match self.call("read the MIG mode", index, |d| d.mig_mode()) {
            Ok(m) => m,
            Err(GpuError::NotSupported { .. }) => return Ok(Mig::Unsupported),
            Err(e) => return Err(e),
        };
        if mode.current == 0 {
            return Ok(Mig::Disabled);
        }
        self.call("list the MIG instances", index, |d| {
            let mut list = Vec::new();
            for slot in 0..d.mig_device_count()? {
                match d.mig_device_by_index(slot) {
                    Ok(m) => list.push(m.uuid()?),
                    Err(NvmlError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Mig::Enabled(list))
        })
    }

    fn power_fields(&self, index: u32) -> Result<PowerFields, GpuError> {
        use nvml_wrapper::enums::device::SampleValue;
        use nvml_wrapper::structs::device::FieldId;
        let answer = self.call("read the power fields", index, |d| {
            d.field_values_for(&[FieldId(FI_POWER_INSTANT), FieldId(FI_POWER_AVERAGE)])
        });
        let samples = match answer {
            Ok(samples) => samples,
            // No field API (old drivers): neither field.
            Err(GpuError::NotSupported { .. }) | Err(GpuError::Call { .. }) => {
                return Ok(PowerFields::default())
            }
            Err(e) => return Err(e),
        };
        let mw = |i: usize| match samples.get(i) {
            Some(Ok(sample)) => match sample.value {
                Ok(SampleValue::U32(v)) => Some(v),
                Ok(SampleValue::U64(v)) => u32::try_from(v).ok(),
                Ok(SampleValue::I64(v)) => u32::try_from(v).ok(),
                Ok(SampleValue::F64(v)) if v.is_finite() && v >= 0.0 => Some(v as u32),
                _ => None,
            },
            _ => None,
        };
        Ok(PowerFields {
            instant_mw: mw(0),
            average_mw: mw(1),
        })
    }
}

/// In-memory GPUs for unit tests: limits, a settable energy counter, optional
/// permission refusal, and a log of every limit set.
#[cfg(test)]
pub mod fake {
    use super::*;

    /// One fake GPU.
    #[derive(Clone, Debug)]
    pub struct FakeGpu {
        /// Model name.
        pub name: String,
        /// Accepted limits.
        pub constraints: LimitConstraints,
        /// Current limit, mW.
        pub limit_mw: u32,
        /// Energy counter, mJ (`None`: the GPU has none).
        pub energy_mj: Option<u64>,
        /// Power drawn now, mW.
        pub power_mw: u32,
        /// UUID.
        pub uuid: String,
        /// PCI bus id.
        pub pci_bus_id: String,
        /// Compute capability.
        pub cc: (i32, i32),
        /// MIG mode.
        pub mig: Mig,
    }

    /// The recording fake.
    #[derive(Clone, Debug, Default)]
    pub struct FakeGpus {
        /// The GPUs.
        pub gpus: Vec<FakeGpu>,
        /// Refuse every set.
        pub deny: bool,
        /// Every `(index, limit_mw)` set, in order.
        pub sets: Vec<(u32, u32)>,
    }

    impl FakeGpus {
        /// `n` GPUs of 100..=300 W at 300 W.
        pub fn new(n: u32) -> FakeGpus {
            FakeGpus {
                gpus: (0..n)
                    .map(|i| FakeGpu {
                        name: "Fake GPU".into(),
                        constraints: LimitConstraints {
                            min_mw: 100_000,
                            max_mw: 300_000,
                        },
                        limit_mw: 300_000,
                        energy_mj: Some(0),
                        power_mw: 250_000,
                        uuid: format!("GPU-{i:08x}-0000-0000-0000-000000000000"),
                        pci_bus_id: format!("00000000:{:02X}:00.0", 0x10 + i),
                        cc: (8, 0),
                        mig: Mig::Disabled,
                    })
                    .collect(),
                ..Default::default()
            }
        }

        fn gpu(&self, index: u32) -> Result<&FakeGpu, GpuError> {
            self.gpus.get(index as usize).ok_or(GpuError::Call {
                what: "find",
                index,
                reason: "no such GPU".into(),
            })
        }
    }

    impl Gpus for FakeGpus {
        fn count(&self) -> Result<u32, GpuError> {
            Ok(self.gpus.len() as u32)
        }
        fn name(&self, index: u32) -> Result<String, GpuError> {
            Ok(self.gpu(index)?.name.clone())
        }
        fn limit_constraints(&self, index: u32) -> Result<LimitConstraints, GpuError> {
            Ok(self.gpu(index)?.constraints)
        }
        fn power_limit(&self, index: u32) -> Result<u32, GpuError> {
            Ok(self.gpu(index)?.limit_mw)
        }
        fn set_power_limit(&mut self, index: u32, limit_mw: u32) -> Result<(), GpuError> {
            self.gpu(index)?;
            if self.deny {
                return Err(GpuError::NoPermission { index });
            }
            self.sets.push((index, limit_mw));
            self.gpus[index as usize].limit_mw = limit_mw;
            Ok(())
        }
        fn power_usage(&self, index: u32) -> Result<u32, GpuError> {
            let g = self.gpu(index)?;
            Ok(g.power_mw.min(g.limit_mw))
        }
        fn total_energy(&self, index: u32) -> Result<u64, GpuError> {
            self.gpu(index)?.energy_mj.ok_or(GpuError::NotSupported {
                what: "read the energy counter",
                index,
            })
        }
        fn uuid(&self, index: u32) -> Result<String, GpuError> {
            Ok(self.gpu(index)?.uuid.clone())
        }
        fn pci_bus_id(&self, index: u32) -> Result<String, GpuError> {
            Ok(self.gpu(index)?.pci_bus_id.clone())
        }
        fn compute_capability(&self, index: u32) -> Result<(i32, i32), GpuError> {
            Ok(self.gpu(index)?.cc)
        }
        fn mig(&self, index: u32) -> Result<Mig, GpuError> {
            Ok(self.gpu(index)?.mig.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_nvml_is_one_clear_sentence() {
        let err = GpuError::Unavailable {
            lib: "libnvidia-ml.so.1".into(),
            reason: "a libloading error".into(),
        };
        let text = err.to_string();
        assert!(text.contains("needs an NVIDIA GPU"), "{text}");
        let denied = GpuError::NoPermission { index: 1 }.to_string();
        assert!(denied.contains("CAP_SYS_ADMIN"), "{denied}");
    }
}
