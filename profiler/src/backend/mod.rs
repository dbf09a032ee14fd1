//! Backends, and [`open`], the one factory from a device profile.
//!
//! - [`ort`] (feature `ort`): ONNX Runtime through an execution provider.
//! - GPUs through wgpu (feature `gpu`): `hwnas_gpu::runtime::GpuRuntime`.
//! - [`mock`]: a deterministic simulated device, for fast tests and trying the pipeline.
//!
//! Every one implements [`hwnas_core::backend::Backend`] for single ops and whole networks.

use std::path::Path;

pub use hwnas_core::backend::{Backend, BackendError};

use crate::device::{BackendKind, DeviceProfile};
use crate::energy::Metered;

pub mod mock;
#[cfg(feature = "ort")]
pub mod ort;

/// The backend a device profile names, opened in this process, with an energy meter beside
/// it when the profile's `[energy]` is enabled. `ort_library` overrides the profile's ONNX
/// Runtime library.
pub fn open(
    profile: &DeviceProfile,
    ort_library: Option<&Path>,
) -> Result<Box<dyn Backend>, BackendError> {
    let backend = open_plain(profile, ort_library)?;
    if !profile.energy.enabled {
        return Ok(backend);
    }
    Ok(Box::new(Metered::open(
        backend,
        &profile.energy,
        profile.runs_on_gpu(),
    )?))
}

/// The backend alone, without an energy meter.
fn open_plain(
    profile: &DeviceProfile,
    ort_library: Option<&Path>,
) -> Result<Box<dyn Backend>, BackendError> {
    match profile.backend {
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(
            ort::OrtRuntime::new(&profile.ort, ort_library)?.with_precision(profile.precision),
        )),
        #[cfg(feature = "gpu")]
        BackendKind::Wgpu => Ok(Box::new(hwnas_gpu::runtime::GpuRuntime::new(
            &profile.wgpu,
        )?)),
        BackendKind::Mock => Ok(Box::new(mock::MockDevice::default())),
        #[allow(unreachable_patterns)]
        kind => {
            let _ = ort_library;
            Err(BackendError::Unavailable(format!(
                "this hwnas was built without the `{kind:?}` backend (cargo features `ort`, `gpu`)"
            )))
        }
    }
}
