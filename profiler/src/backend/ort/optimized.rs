//! The graph ONNX Runtime really runs: a network's model after the session's optimisations
//! (fusions, QDQ pairs turned into QLinear ops, layout changes), as ORT writes it back. This is
//! how composition rules that mirror ORT's choices are checked against ORT itself (which pools
//! an int8 graph runs channels-last: `Network::channels_last_pools`).

use super::OrtRuntime;
use crate::backend::BackendError;
use hwnas_core::network::Network;
use hwnas_onnx::{self as onnx, ModelProto};

impl OrtRuntime {
    /// `net`, built at this runtime's precision, as ORT optimises it for this runtime's
    /// execution provider and optimisation level.
    pub fn optimized_network(&self, net: &Network) -> Result<ModelProto, BackendError> {
        let err = |message: String| BackendError::Prepare {
            key: net.name.clone(),
            message,
        };
        let model = self.network_model(net).map_err(err)?;
        let dir = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
        let path = dir.path().join("optimized.onnx");
        self.builder()
            .map_err(err)?
            .with_optimized_model_path(&path)
            .map_err(|e| err(e.to_string()))?
            .commit_from_memory(&model.to_bytes())
            .map_err(|e| err(e.to_string()))?;
        onnx::import::read_model(&path).map_err(|e| err(e.to_string()))
    }
}
