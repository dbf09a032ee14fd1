//! Device profiles: one TOML file per target, saying which backend runs the ops and how.
//!
//! ```toml
//! name = "cpu"
//! backend = "ort"
//! precision = "fp32"          # fp32 | fp16 | int8 (QuantizeLinear/DequantizeLinear graphs)
//!
//! [ort]
//! execution_provider = "cpu"  # the ORT execution provider
//! intra_threads = 1           # 1 = the least noisy timings on a shared machine
//! inter_threads = 1
//! optimization = "all"        # disable | basic | extended | all (what deployments use)
//! # library = "/path/to/libonnxruntime.so.1.31.1"   # else $ORT_DYLIB_PATH, else ./.venv
//! timeout_ms = 60000          # preparing an op or one run of it may take this long; longer,
//!                             # and the measuring process is killed and the op recorded failed
//!
//! [ort.options]               # passed to the execution provider as key = "value"
//!
//! [measure]                   # the measurement loop, see MeasureConfig
//! target_ci = 0.01
//! ```
//!
//! A GPU through wgpu instead:
//!
//! ```toml
//! name = "gpu"
//! backend = "wgpu"
//!
//! [wgpu]
//! backend = "vulkan"          # vulkan | metal | dx12 | gl | any
//! adapter = "nvidia"          # part of the adapter's name (case-insensitive); empty = the best
//! timing = "auto"             # auto (timestamps when the adapter has them) | timestamp | wall
//! timeout_ms = 10000          # a run that takes longer is stopped and the op recorded failed
//! ```
//!
//! Energy per op and per network, where the device has a counter (RAPL on CPUs, NVML on
//! NVIDIA GPUs; see [`crate::energy`]); `hwnas profile --energy` sets `enabled`:
//!
//! ```toml
//! [energy]
//! enabled = false
//! source = "auto"             # auto (RAPL, else NVML) | rapl | nvml
//! window_ms = 200.0           # shortest window of an op's runs
//! windows = 3                 # windows per op; the median is kept
//! ```
//!
//! A device that is not this machine adds a `[remote]` section: everything is measured by an
//! `hwnas worker` started on the device through `command` (see `crate::worker`), and the rest
//! of the profile (the `[ort]` library path included) describes the device's side:
//!
//! ```toml
//! [remote]
//! command = "ssh -o BatchMode=yes pi@raspberrypi.local"   # or "adb -s SERIAL shell -T", ...
//! hwnas = "/home/pi/hwnas"    # the hwnas binary on the device (default: `hwnas` on its PATH)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::energy::EnergyConfig;
use crate::measure::MeasureConfig;
use hwnas_core::op::Precision;
use hwnas_gpu::settings::{GPU_BACKENDS, GpuSettings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// A short name for the device; recorded in every table.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub backend: BackendKind,
    /// fp32, fp16 or int8 (QDQ): what every op and network is built in.
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub ort: OrtSettings,
    #[serde(default)]
    pub wgpu: GpuSettings,
    #[serde(default)]
    pub measure: MeasureConfig,
    /// Set when the device is reached through a command rather than being this machine.
    #[serde(default)]
    pub remote: Option<RemoteSettings>,
    /// Energy beside latency, where the device has a counter.
    #[serde(default)]
    pub energy: EnergyConfig,
}

/// How to reach a device that is not this machine: `command` gives a byte pipe to a shell on
/// it (ssh, `adb shell -T`, `docker exec -i`, ...), and `hwnas worker` is run there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    /// The command, as a shell would read it, to which `<hwnas> worker` is appended.
    pub command: String,
    /// The hwnas program on the device, as its shell would find it.
    #[serde(default = "default_remote_hwnas")]
    pub hwnas: String,
}

fn default_remote_hwnas() -> String {
    "hwnas".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// ONNX Runtime, through one of its execution providers.
    Ort,
    /// A GPU through wgpu: hwnas's own WGSL kernels (see [`hwnas_gpu`]).
    Wgpu,
    /// A deterministic simulated device (analytic cost + seeded noise), for tests and demos.
    Mock,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrtSettings {
    pub execution_provider: String,
    pub library: Option<PathBuf>,
    pub intra_threads: usize,
    pub inter_threads: usize,
    pub optimization: OptLevel,
    pub options: BTreeMap<String, String>,
    /// The longest one step (building an op's session, or one run) may take before the
    /// measuring process is stopped and the op recorded failed. Raise it for EPs that compile
    /// at session creation (TensorRT engines).
    pub timeout_ms: f64,
}

impl Default for OrtSettings {
    fn default() -> Self {
        OrtSettings {
            execution_provider: "cpu".into(),
            library: None,
            intra_threads: 1,
            inter_threads: 1,
            optimization: OptLevel::All,
            options: BTreeMap::new(),
            timeout_ms: 60_000.0,
        }
    }
}

/// ONNX Runtime's graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    All,
}

impl OptLevel {
    pub fn name(self) -> &'static str {
        match self {
            OptLevel::Disable => "disable",
            OptLevel::Basic => "basic",
            OptLevel::Extended => "extended",
            OptLevel::All => "all",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot read device profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device profile {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
}

impl DeviceProfile {
    pub fn load(path: &Path) -> Result<DeviceProfile, DeviceError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| DeviceError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// The profile at another precision, checked as if the file had said so.
    pub fn with_precision(self, precision: Precision) -> Result<DeviceProfile, String> {
        let profile = DeviceProfile { precision, ..self };
        profile.check()?;
        Ok(profile)
    }

    /// Parse and check a profile's text; the message names the key to fix.
    /// Whether the device's ops run on a GPU: wgpu, or ONNX Runtime's GPU EPs.
    pub fn runs_on_gpu(&self) -> bool {
        match self.backend {
            BackendKind::Wgpu => true,
            BackendKind::Ort => ["cuda", "tensorrt", "rocm", "migraphx"]
                .contains(&self.ort.execution_provider.to_lowercase().as_str()),
            BackendKind::Mock => false,
        }
    }

    pub fn parse(text: &str) -> Result<DeviceProfile, String> {
        let profile: DeviceProfile = toml::from_str(text).map_err(|e| e.to_string())?;
        profile.check()?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), String> {
        let profile = self;
        profile.measure.validate()?;
        profile.energy.validate()?;
        if profile.name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }
        if profile.precision != Precision::Fp32 && profile.backend != BackendKind::Ort {
            return Err(format!(
                "precision `{}` needs an ONNX Runtime device (backend = \"ort\"): the wgpu kernels and the simulated device are fp32",
                profile.precision
            ));
        }
        if !GPU_BACKENDS.contains(&profile.wgpu.backend.as_str()) {
            return Err(format!(
                "wgpu.backend `{}` is not one of {}",
                profile.wgpu.backend,
                GPU_BACKENDS.join(", ")
            ));
        }
        for (key, ms) in [
            ("wgpu.timeout_ms", profile.wgpu.timeout_ms),
            ("ort.timeout_ms", profile.ort.timeout_ms),
        ] {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(format!(
                    "{key} must be a positive number of milliseconds, got {ms}"
                ));
            }
        }
        if profile.ort.intra_threads == 0 || profile.ort.inter_threads == 0 {
            return Err("ort.intra_threads and ort.inter_threads must be at least 1".into());
        }
        if let Some(remote) = &profile.remote {
            if remote.command.trim().is_empty() || remote.hwnas.trim().is_empty() {
                return Err(
                    "remote.command and remote.hwnas must not be empty (e.g. command = \"ssh pi@raspberrypi.local\")"
                        .into(),
                );
            }
            if profile.backend == BackendKind::Mock {
                return Err(
                    "a [remote] device needs a real backend (ort or wgpu), not mock".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_profile_gets_defaults() {
        let p = DeviceProfile::parse("name = \"cpu\"\nbackend = \"ort\"\n").unwrap();
        assert_eq!(p.ort.execution_provider, "cpu");
        assert_eq!(p.ort.intra_threads, 1);
        assert_eq!(p.ort.optimization, OptLevel::All);
        assert_eq!(p.measure, MeasureConfig::default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\n[ort]\nthreads = 2\n")
            .unwrap_err();
        assert!(e.contains("threads"), "{e}");
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"tpu\"\n").unwrap_err();
        assert!(e.contains("tpu"), "{e}");
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\n[measure]\nmin_runs = 0\n")
            .unwrap_err();
        assert!(e.contains("measure.min_runs"), "{e}");
        let int8 = DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\nprecision = \"int8\"\n");
        assert_eq!(int8.unwrap().precision, Precision::Int8);
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"wgpu\"\nprecision = \"fp16\"\n")
            .unwrap_err();
        assert!(
            e.contains("precision `fp16` needs an ONNX Runtime device"),
            "{e}"
        );
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\nprecision = \"bf16\"\n")
            .unwrap_err();
        assert!(e.contains("bf16") && e.contains("fp32"), "{e}");
        assert!(DeviceProfile::parse("name = \"x\"\nbackend = [").is_err());
        let e =
            DeviceProfile::parse("name = \"x\"\nbackend = \"wgpu\"\n[wgpu]\nbackend = \"cuda\"\n")
                .unwrap_err();
        assert!(e.contains("wgpu.backend") && e.contains("vulkan"), "{e}");
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"wgpu\"\n[wgpu]\ntimeout_ms = 0\n")
            .unwrap_err();
        assert!(e.contains("wgpu.timeout_ms"), "{e}");
        let e =
            DeviceProfile::parse("name = \"x\"\nbackend = \"wgpu\"\n[wgpu]\ntiming = \"cycles\"\n")
                .unwrap_err();
        assert!(e.contains("cycles"), "{e}");
        let e =
            DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\n[remote]\ncommand = \" \"\n")
                .unwrap_err();
        assert!(e.contains("remote.command"), "{e}");
        let e = DeviceProfile::parse("name = \"x\"\nbackend = \"ort\"\n[remote]\nhost = \"pi\"\n")
            .unwrap_err();
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn a_remote_profile_defaults_to_hwnas_on_the_devices_path() {
        let p = DeviceProfile::parse(
            "name = \"pi5\"\nbackend = \"ort\"\n[remote]\ncommand = \"ssh pi@raspberrypi.local\"\n",
        )
        .unwrap();
        let remote = p.remote.unwrap();
        assert_eq!(remote.command, "ssh pi@raspberrypi.local");
        assert_eq!(remote.hwnas, "hwnas");
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn every_shipped_profile_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../device_profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                DeviceProfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 10, "{n} profiles");
    }
}
