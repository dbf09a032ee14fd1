//! NSGA-II generations per second on mbv3: population 50, objectives proxy accuracy and
//! latency from a latency model (all ops in its table), every network built from its encoding,
//! with and without surrogate screening;
//! and a whole 1,000-evaluation NSGA-II run on nb201 with the model compiled for the space.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hwnas_search::accuracy::AccuracySource;
use hwnas_search::nsga2;
use hwnas_search::objective::{ArchProblem, Constraint, LatencySource, Metric};
use hwnas_search::space::mbv3::Mbv3;
use hwnas_search::strategy::Config;

mod common;

const GENERATIONS: usize = 20;
const POPULATION: usize = 50;

fn bench(c: &mut Criterion) {
    let model = common::mock_mbv3_model();
    let mut problem = ArchProblem {
        space: &Mbv3,
        accuracy: AccuracySource::FlopsProxy,
        latency: vec![LatencySource::model("mock".into(), model, &Mbv3)],
        objectives: vec![Metric::Accuracy, Metric::Latency(0), Metric::MemoryMb],
        constraints: vec![Constraint {
            metric: Metric::Mparams,
            bound: 6.0,
        }],
        journal: None,
    };
    let cfg = Config {
        population: POPULATION,
        max_evaluations: POPULATION * (GENERATIONS + 1),
        ..Config::default()
    };
    let mut group = c.benchmark_group("nsga2_mbv3");
    group.throughput(Throughput::Elements(GENERATIONS as u64));
    group.sample_size(20);
    // With and without the surrogate's screening (40 candidates bred and predicted a child).
    let plain = Config {
        screening: false,
        ..cfg.clone()
    };
    for (name, cfg) in [
        ("generations_pop50_3_objectives", &cfg),
        ("generations_pop50_3_objectives_no_screening", &plain),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = nsga2::run(&mut problem, cfg, |_| {}).unwrap();
                assert_eq!(out.history.len(), GENERATIONS + 1);
                out.front.len()
            })
        });
    }
    group.finish();
}

/// NSGA-II's own cost on nb201, 1,000 evaluations, the latency model compiled once for the
/// space (5^6 entries, outside the timing) and NAS-Bench-201's accuracies from the shared data:
/// no network is built in the loop.
fn bench_nb201(c: &mut Criterion) {
    let mut problem = common::nb201_problem();
    let cfg = Config {
        population: 50,
        max_evaluations: 1000,
        ..Config::default()
    };
    let mut group = c.benchmark_group("nsga2_nb201");
    group.sample_size(30);
    group.bench_function("1000_evaluations_accuracy_latency", |b| {
        b.iter(|| {
            let out = nsga2::run(&mut problem, &cfg, |_| {}).unwrap();
            assert_eq!(out.archive.len(), 1000);
            out.front.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_nb201);
criterion_main!(benches);
