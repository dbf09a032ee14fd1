//! What the benches share: a latency model of every op of a space on the deterministic mock
//! device, and nb201 as a search problem with that model compiled.

use hwnas_core::table::{LatencyTable, Row};
use hwnas_predictor::LatencyModel;
use hwnas_profiler::backend::Backend;
use hwnas_profiler::backend::mock::MockDevice;
use hwnas_profiler::measure::{MeasureConfig, measure_group};
use hwnas_search::accuracy::AccuracySource;
use hwnas_search::compiled::CompiledLatency;
use hwnas_search::objective::{ArchProblem, LatencySource, Metric};
use hwnas_search::space::{SearchSpace, mbv3::Mbv3, nb201::Nb201};

/// NAS-Bench-201's CIFAR-10 accuracies, from the shared data.
#[allow(dead_code)] // each bench is its own crate, and not every one uses it
pub const NB201_ACCURACY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/nb201/cifar10_test_acc.csv"
);

/// nb201 as a search problem: NAS-Bench-201's accuracies against the mock model's latency,
/// compiled for the space (5^6 entries) so that no network is built while searching.
#[allow(dead_code)]
pub fn nb201_problem() -> ArchProblem<'static> {
    let model = mock_model(&Nb201);
    let compiled = CompiledLatency::new(&model, &Nb201).expect("nb201 compiles");
    ArchProblem {
        space: &Nb201,
        accuracy: AccuracySource::parse(&format!("table:{NB201_ACCURACY}"), &Nb201, 1)
            .expect("the shared NAS-Bench-201 accuracies (../shared/data/nb201)"),
        latency: vec![LatencySource::Model {
            name: "mock".into(),
            model: Box::new(model),
            compiled: Some(Box::new(compiled)),
        }],
        objectives: vec![Metric::Accuracy, Metric::Latency(0)],
        constraints: vec![],
        journal: None,
    }
}

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
                &measure_group(&mut k, &cfg, None, None).remove(0).unwrap(),
                "mock",
            )
        })
        .collect();
    let table = LatencyTable { meta: vec![], rows };
    LatencyModel::from_table(&table, std::path::Path::new("mock.csv"))
}
