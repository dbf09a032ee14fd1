//! A user's ONNX file on its way to a device: the model's bytes and the external-data files
//! it names, carried inside a request and written back out beside each other on the device.

use std::path::{Component, Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use hwnas_core::backend::BackendError;
use hwnas_core::op::Tensor;
use hwnas_onnx::ModelProto;

/// An ONNX file and the input shape it is fed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFile {
    /// The path as the host knows it: what errors name.
    pub name: String,
    pub input: Tensor,
    /// The file's name (written under it on the device), and its bytes in base64.
    file_name: String,
    model: String,
    /// Each external-data file, by its location relative to the model, in base64.
    external: Vec<(String, String)>,
}

impl WireFile {
    /// Read `path` and every external-data file its initializers name.
    pub fn read(path: &Path, input: Tensor) -> Result<WireFile, BackendError> {
        let name = path.display().to_string();
        let err = |why: String| BackendError::File(format!("{name}: {why}"));
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|e| err(format!("not an ONNX model ({e})")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut external = Vec::new();
        for location in external_locations(&model) {
            if !is_inside(&location) {
                return Err(err(format!(
                    "external data `{location}` is not a relative path inside the model's folder"
                )));
            }
            let data = std::fs::read(dir.join(&location))
                .map_err(|e| err(format!("its external data `{location}`: {e}")))?;
            external.push((location, BASE64.encode(data)));
        }
        Ok(WireFile {
            name,
            input,
            file_name: path
                .file_name()
                .map_or("model.onnx".into(), |f| f.to_string_lossy().into_owned()),
            model: BASE64.encode(&bytes),
            external,
        })
    }

    /// Write the model and its external data into `dir`; the model's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        let decode = |what: &str, b64: &str| {
            BASE64
                .decode(b64)
                .map_err(|e| format!("{}: {what} arrived damaged ({e})", self.name))
        };
        if !is_inside(&self.file_name) {
            return Err(format!("{}: the file name is not plain", self.name));
        }
        let path = dir.join(&self.file_name);
        let write = |to: &Path, bytes: Vec<u8>| {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(to, bytes).map_err(|e| format!("{}: {e}", to.display()))
        };
        write(&path, decode("the model", &self.model)?)?;
        for (location, data) in &self.external {
            if !is_inside(location) {
                return Err(format!(
                    "{}: external data `{location}` is outside",
                    self.name
                ));
            }
            write(&dir.join(location), decode(location, data)?)?;
        }
        Ok(path)
    }

    /// `message` with the device's temporary `path` replaced by the host's name for the file.
    pub fn rename(&self, message: &str, path: &Path) -> String {
        message.replace(&path.display().to_string(), &self.name)
    }
}

/// The distinct external-data locations of the model's initializers.
fn external_locations(model: &ModelProto) -> Vec<String> {
    const EXTERNAL: i32 = 1;
    let mut out: Vec<String> = Vec::new();
    let tensors = model.graph.iter().flat_map(|g| &g.initializer);
    for t in tensors.filter(|t| t.data_location == EXTERNAL) {
        let location = t.external_data.iter().find(|e| e.key == "location");
        if let Some(l) = location.filter(|l| !out.contains(&l.value)) {
            out.push(l.value.clone());
        }
    }
    out
}

/// A relative path that stays inside its folder (what ONNX requires of a location).
fn is_inside(location: &str) -> bool {
    let path = Path::new(location);
    !location.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwnas_onnx::proto::{GraphProto, StringStringEntryProto, TensorProto};

    /// A model with external data travels whole: written on the other side, its bytes and its
    /// data file are where the model says.
    #[test]
    fn a_model_and_its_external_data_arrive_side_by_side() {
        let here = tempfile::tempdir().unwrap();
        let weights = TensorProto {
            name: "w".into(),
            data_location: 1,
            external_data: vec![StringStringEntryProto {
                key: "location".into(),
                value: "data/w.bin".into(),
            }],
            ..Default::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![weights.clone(), weights],
                ..Default::default()
            }),
            ..Default::default()
        };
        let path = here.path().join("m.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        std::fs::create_dir(here.path().join("data")).unwrap();
        std::fs::write(here.path().join("data/w.bin"), [1u8, 2, 3]).unwrap();
        let input = Tensor::new(1, 3, 8, 8);
        let wire = WireFile::read(&path, input).unwrap();
        assert_eq!(wire.external.len(), 1, "each location once");
        let json = serde_json::to_string(&wire).unwrap();
        let there = tempfile::tempdir().unwrap();
        let back: WireFile = serde_json::from_str(&json).unwrap();
        let written = back.write(there.path()).unwrap();
        assert_eq!(
            std::fs::read(&written).unwrap(),
            std::fs::read(&path).unwrap()
        );
        assert_eq!(
            std::fs::read(there.path().join("data/w.bin")).unwrap(),
            [1, 2, 3]
        );
        let moved = back.rename(&format!("{} failed", written.display()), &written);
        assert_eq!(moved, format!("{} failed", path.display()));
    }

    #[test]
    fn locations_outside_the_folder_and_missing_data_are_refused() {
        let here = tempfile::tempdir().unwrap();
        for (location, why) in [
            ("../secret", "not a relative path"),
            ("/etc/x", "not a relative path"),
            ("gone.bin", "gone.bin"),
        ] {
            let model = ModelProto {
                graph: Some(GraphProto {
                    initializer: vec![TensorProto {
                        data_location: 1,
                        external_data: vec![StringStringEntryProto {
                            key: "location".into(),
                            value: location.into(),
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let path = here.path().join("m.onnx");
            std::fs::write(&path, model.encode_to_vec()).unwrap();
            let e = WireFile::read(&path, Tensor::new(1, 3, 8, 8))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("m.onnx"), "{location}: {e}");
        }
    }
}
