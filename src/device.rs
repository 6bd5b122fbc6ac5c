//! Choosing where tensors live.

use crate::error::InputError;
use tch::Device;

/// The `--device` choice: `auto` takes the first GPU when libtorch sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, InputError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(InputError::new(
                "--device cuda: libtorch sees no CUDA device on this machine (use --device cpu or auto)",
            )),
        }
    }
}

/// A short name for logs and JSON: `cpu` or `cuda:0`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
