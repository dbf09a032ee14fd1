//! What the benches share: a latency model of every op of a space on the deterministic mock
//! device.

use hwnas_core::table::{LatencyTable, Row};
use hwnas_predictor::LatencyModel;
use hwnas_profiler::backend::Backend;
use hwnas_profiler::backend::mock::MockDevice;
use hwnas_profiler::measure::{MeasureConfig, measure_group};
use hwnas_search::space::{SearchSpace, mbv3::Mbv3};

pub fn mock_mbv3_model() -> LatencyModel {
    mock_model(&Mbv3)
}

#[allow(dead_code)] // each bench is its own crate, and not every one uses both
pub fn mock_model(space: &dyn SearchSpace) -> LatencyModel {
    let mut dev = MockDevice::default();
    let cfg = MeasureConfig {
        min_runs: 5,
        warmup_runs: 0,
        warmup_ms: 0.0,
        ..Default::default()
    };
    let rows = space
        .ops()
        .iter()
        .filter(|op| !op.is_free())
        .map(|op| {
            let mut k = vec![dev.prepare(op).unwrap()];
            Row::new(
                op,
                &measure_group(&mut k, &cfg, None).remove(0).unwrap(),
                "mock",
            )
        })
        .collect();
    let table = LatencyTable { meta: vec![], rows };
    LatencyModel::from_table(&table, std::path::Path::new("mock.csv"))
}
