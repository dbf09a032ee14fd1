//! The reference networks a device is calibrated on when the models to predict are not from a
//! search space: the five CNN families of `hwnas_onnx::zoo` (residual, inverted-residual with
//! and without squeeze-excitation, channel shuffle, fire modules) at four resolutions, written
//! as torch exports them. `profile --reference` measures their ops; `fit --calibrate-reference`
//! times them end to end and fits the calibration `predict --model` applies to any imported
//! model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hwnas_core::network::Network;
use hwnas_onnx::import::{ImportOptions, import};
use hwnas_onnx::zoo;

/// Input sizes: from small mobile inputs to the ImageNet size.
pub const RESOLUTIONS: [u32; 4] = [96, 128, 160, 224];

/// Every reference network: its name and the network its ONNX file maps to.
pub fn networks() -> anyhow::Result<Vec<(String, Network)>> {
    let mut out = Vec::new();
    for family in zoo::FAMILIES {
        for res in RESOLUTIONS {
            let name = format!("{family}-{res}");
            let model = zoo::build(family, res).map_err(anyhow::Error::msg)?;
            let m = import(&model, &name, ImportOptions::default())?;
            anyhow::ensure!(
                m.unmapped.is_empty(),
                "reference network {name} maps only in part"
            );
            out.push((name, m.network));
        }
    }
    Ok(out)
}

/// Whether `name` is a reference network's (`FAMILY-RESOLUTION`).
pub fn networks_named(name: &str) -> bool {
    zoo::FAMILIES
        .iter()
        .any(|f| RESOLUTIONS.iter().any(|r| name == format!("{f}-{r}")))
}

/// Write every reference network's ONNX file into `dir`; returns the paths.
pub fn write(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for family in zoo::FAMILIES {
        for res in RESOLUTIONS {
            let model = zoo::build(family, res).map_err(anyhow::Error::msg)?;
            let path = dir.join(format!("{family}-{res}.onnx"));
            std::fs::write(&path, model.to_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            paths.push(path);
        }
    }
    Ok(paths)
}
