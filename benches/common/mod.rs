//! What the benches share: a latency model of every mbv3 op on the deterministic mock device.

use hwnas_core::table::{LatencyTable, Row};
use hwnas_predictor::LatencyModel;
use hwnas_profiler::backend::Backend;
use hwnas_profiler::backend::mock::MockDevice;
use hwnas_profiler::measure::{MeasureConfig, measure_group};
use hwnas_search::space::{SearchSpace, mbv3::Mbv3};

pub fn mock_mbv3_model() -> LatencyModel {
    let mut dev = MockDevice::default();
    let cfg = MeasureConfig {
        min_runs: 5,
        warmup_runs: 0,
        warmup_ms: 0.0,
        ..Default::default()
    };
    let rows = Mbv3
        .ops()
        .iter()
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
