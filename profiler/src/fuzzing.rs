//! Entry points for the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) and for the
//! regression test that replays what they found (`profiler/tests/fuzz_regressions.rs`): each
//! feeds arbitrary bytes to one parser, which must answer with a value or an error — never a
//! panic, an overflow or an unbounded allocation.

use std::path::Path;

use prost::Message;

use crate::device::DeviceProfile;
use hwnas_core::op::Op;
use hwnas_core::table::LatencyTable;
use hwnas_gpu::plan::Plan;
use hwnas_onnx::ModelProto;
use hwnas_onnx::import::{ImportOptions, import};

/// An ONNX file: decoded, imported (mapped to ops) and lowered for the GPU.
pub fn onnx(data: &[u8]) {
    if let Ok(model) = ModelProto::decode(data) {
        let _ = import(&model, "fuzz.onnx", ImportOptions::default());
        let _ = Plan::lower(&model);
    }
}

/// A latency table (CSV with its `#` header).
pub fn latency_table(data: &[u8]) {
    let _ = LatencyTable::parse(data, Path::new("fuzz.csv"));
}

/// A device profile (TOML).
pub fn device_profile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DeviceProfile::parse(text);
    }
}

/// An op key: what parses must print back to itself, and have finite costs.
pub fn op_key(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(op) = Op::from_key(text)
    {
        assert_eq!(Op::from_key(&op.key()), Ok(op), "{text}");
        let _ = (op.flops(), op.params(), op.bytes(), op.working_set_bytes());
    }
}

/// A fuzz target: bytes in, no panic.
pub type Target = fn(&[u8]);

/// Every target, by name (for the fuzz script and the regression test).
pub const TARGETS: [(&str, Target); 4] = [
    ("onnx", onnx),
    ("latency_table", latency_table),
    ("device_profile", device_profile),
    ("op_key", op_key),
];
