//! The parsers against hostile bytes, on stable Rust: every input the fuzzers ever crashed on
//! (`fuzz/regressions/<target>/`, replayed forever), and a seeded mutation run over valid inputs
//! (bit flips, truncations, splices, repeated spans) so CI exercises the same entry points
//! without a nightly toolchain. `scripts/fuzz.sh` is the long, coverage-guided version.

use std::path::Path;

use hwnas_core::rng::SplitMix64;
use hwnas_onnx::zoo;
use hwnas_profiler::fuzzing::{self, TARGETS};

#[test]
fn every_input_the_fuzzers_crashed_on_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for (name, target) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            target(&bytes);
        }
    }
}

/// A seeded mutation of `seed`: flip, cut, splice or repeat.
fn mutate(seed: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            v.push(rng.next_u64() as u8);
            continue;
        }
        let i = rng.below(v.len());
        match rng.below(5) {
            0 => v[i] ^= 1 << rng.below(8),
            1 => v[i] = rng.next_u64() as u8,
            2 => v.truncate(i),
            3 => {
                let len = rng.below(16).min(v.len() - i);
                let span: Vec<u8> = v[i..i + len].to_vec();
                let at = rng.below(v.len());
                v.splice(
                    at..at,
                    span.iter().copied().cycle().take(len * (1 + rng.below(4))),
                );
            }
            _ => {
                let junk: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                v.splice(i..i, junk);
            }
        }
    }
    v
}

fn run(target: fuzzing::Target, seeds: &[Vec<u8>], rounds: usize, salt: u64) {
    let mut rng = SplitMix64::new(salt);
    for _ in 0..rounds {
        let seed = &seeds[rng.below(seeds.len())];
        target(&mutate(seed, &mut rng));
    }
}

#[test]
fn mutated_onnx_models_never_panic() {
    let seeds: Vec<Vec<u8>> = ["mobilenetv3", "shufflenetv2", "squeezenet"]
        .iter()
        .map(|f| zoo::build(f, 32).unwrap().to_bytes())
        .collect();
    run(fuzzing::onnx, &seeds, 150, 1);
}

#[test]
fn mutated_tables_profiles_and_keys_never_panic() {
    let table = b"# hwnas-table: 1\n# device: mock\n\
key,kind,batch,cin,hin,win,cout,hout,wout,kernel,stride,groups,expand,se,act,residual,flops,params,bytes_in,bytes_out,bytes_weights,median_us,p10_us,p90_us,mad_us,runs,ci_rel,outliers,capped,wall_us,reorder_us,provider\n\
add-in:1x8x8x8,add,1,8,8,8,8,8,8,,,,,,,,512,0,4096,2048,0,1.5,1.4,1.6,0.05,30,0.01,0,0,2.0,,mock\n"
        .to_vec();
    run(fuzzing::latency_table, &[table], 2000, 2);
    let profiles: Vec<Vec<u8>> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../device_profiles"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
    run(fuzzing::device_profile, &profiles, 2000, 3);
    let keys: Vec<Vec<u8>> = [
        "conv-in:1x16x32x32-out:16-k:3-s:1-g:1-pre:relu-act:none",
        "conv-in:1x3x224x224-out:64-k:3-s:2-g:1-p:0-pre:none-act:relu",
        "mbconv-in:1x24x56x56-out:40-e:4-k:5-s:2-se:1-act:relu-res:0",
        "avgpool-in:1x16x32x32-k:3-s:1-p:1",
        "slice-in:1x116x28x28-out:58-at:58",
        "concat-in:1x64x28x28-out:128",
        "shuffle-in:1x116x28x28-g:2",
    ]
    .iter()
    .map(|k| k.as_bytes().to_vec())
    .collect();
    run(fuzzing::op_key, &keys, 5000, 4);
}
