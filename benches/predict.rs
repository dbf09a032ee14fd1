//! Architecture latency predictions per second: the model's fast path over op lists of random
//! mbv3 networks (all ops in the table), the model compiled for the space (lookups from a
//! genome), and the whole path from an encoding string.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hwnas_core::rng::SplitMix64;
use hwnas_predictor::Term;
use hwnas_search::compiled::CompiledLatency;
use hwnas_search::space::{SearchSpace, mbv3::Mbv3};

mod common;

fn bench(c: &mut Criterion) {
    let model = common::mock_mbv3_model();
    let mut rng = SplitMix64::new(9);
    let archs: Vec<String> = (0..1000).map(|_| Mbv3.sample(&mut rng)).collect();
    let op_lists: Vec<Vec<Term>> = archs
        .iter()
        .map(|a| Term::of_network(&Mbv3.network(a).unwrap()))
        .collect();
    let mut group = c.benchmark_group("predict_mbv3");
    group.throughput(Throughput::Elements(archs.len() as u64));
    group.bench_function("fast_path_from_terms", |b| {
        b.iter(|| {
            op_lists
                .iter()
                .map(|ops| model.predict_fast(ops).unwrap())
                .sum::<f64>()
        })
    });
    let compiled = CompiledLatency::new(&model, &Mbv3).expect("mbv3 compiles");
    let genomes: Vec<u8> = archs.iter().flat_map(|a| Mbv3.encode(a).unwrap()).collect();
    group.bench_function("compiled_from_genome", |b| {
        b.iter(|| {
            genomes
                .chunks_exact(compiled.genes())
                .map(|g| compiled.predict_ms(std::hint::black_box(g)))
                .sum::<f64>()
        })
    });
    let mut out = Vec::with_capacity(archs.len());
    group.bench_function("compiled_batch", |b| {
        b.iter(|| {
            out.clear();
            compiled.predict_batch(std::hint::black_box(&genomes), &mut out);
            out.len()
        })
    });
    group.bench_function("from_encoding_string", |b| {
        b.iter(|| {
            archs
                .iter()
                .map(|a| {
                    model
                        .predict_fast(&Term::of_network(&Mbv3.network(a).unwrap()))
                        .unwrap()
                })
                .sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
