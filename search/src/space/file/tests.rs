//! The shipped space files against the built-in spaces, and bad files against the loader.

use super::*;
use crate::space::{builtin, genome_count};
use hwnas_core::rng::SplitMix64;

pub(crate) const NB201: &str = include_str!("../../../../spaces/nb201.toml");
pub(crate) const MBV3: &str = include_str!("../../../../spaces/mbv3.toml");

fn random_genome(space: &dyn SearchSpace, rng: &mut SplitMix64) -> Vec<u8> {
    space
        .genes()
        .iter()
        .map(|g| rng.below(g.levels as usize) as u8)
        .collect()
}

/// Same genes, ops, encodings, networks and samples as the compiled space.
fn assert_equivalent(text: &str, name: &str, genomes: &mut dyn Iterator<Item = Vec<u8>>) {
    let file = parse(text, name).unwrap();
    let compiled = builtin(name).unwrap();
    assert_eq!(file.name(), compiled.name());
    assert_eq!(file.describe(), compiled.describe());
    assert_eq!(file.genes(), compiled.genes());
    let keys = |s: &dyn SearchSpace| s.ops().iter().map(hwnas_core::Op::key).collect::<Vec<_>>();
    assert_eq!(keys(file.as_ref()), keys(compiled.as_ref()));
    let mut n = 0;
    for genome in genomes {
        let arch = compiled.decode(&genome);
        assert_eq!(file.decode(&genome), arch);
        assert_eq!(file.encode(&arch).unwrap(), genome, "{arch}");
        assert_eq!(
            file.network(&arch).unwrap(),
            compiled.network(&arch).unwrap(),
            "{arch}"
        );
        n += 1;
    }
    assert!(n > 0);
    let (mut a, mut b) = (SplitMix64::new(3), SplitMix64::new(3));
    for _ in 0..200 {
        assert_eq!(file.sample(&mut a), compiled.sample(&mut b));
    }
}

#[test]
fn nb201_file_is_the_built_in_space_for_every_cell() {
    let genes = builtin("nb201").unwrap().genes();
    assert_eq!(genome_count(&genes), 15_625.0);
    let mut all = (0..15_625usize).map(|mut i| {
        (0..6)
            .map(|_| {
                let g = (i % 5) as u8;
                i /= 5;
                g
            })
            .collect()
    });
    assert_equivalent(NB201, "nb201", &mut all);
}

#[test]
fn mbv3_file_is_the_built_in_space_over_thousands_of_architectures() {
    let compiled = builtin("mbv3").unwrap();
    let mut rng = SplitMix64::new(11);
    let mut random = (0..3000).map(|_| random_genome(compiled.as_ref(), &mut rng));
    assert_equivalent(MBV3, "mbv3", &mut random);
}

pub(crate) const SHIPPED: [(&str, &str); 5] = [
    ("nb201", NB201),
    ("mbv3", MBV3),
    ("fbnet", include_str!("../../../../spaces/fbnet.toml")),
    (
        "proxyless",
        include_str!("../../../../spaces/proxyless.toml"),
    ),
    ("darts", include_str!("../../../../spaces/darts.toml")),
];

#[test]
fn every_shipped_space_samples_valid_networks_of_its_enumerated_ops() {
    for (name, text) in SHIPPED {
        let space = parse(text, name).unwrap();
        assert_eq!(space.name(), name);
        let listed: std::collections::HashSet<String> =
            space.ops().iter().map(hwnas_core::Op::key).collect();
        let mut used = std::collections::HashSet::new();
        let mut rng = SplitMix64::new(5);
        for _ in 0..400 {
            let genome = random_genome(space.as_ref(), &mut rng);
            let arch = space.decode(&genome);
            assert_eq!(space.encode(&arch).unwrap(), genome, "{name}: {arch}");
            let net = space.network(&arch).unwrap();
            net.validate()
                .unwrap_or_else(|e| panic!("{name}: {arch}: {e}"));
            assert_eq!(net.name, arch);
            for op in net.ops() {
                assert!(listed.contains(&op.key()), "{name}: {op} is not enumerated");
                used.insert(op.key());
            }
        }
        // Random networks reach (nearly) every enumerated op; the rest are rare corners.
        let coverage = used.len() as f64 / listed.len() as f64;
        assert!(
            coverage > 0.9,
            "{name}: {} of {} ops used",
            used.len(),
            listed.len()
        );
    }
}

/// A stride of 0 (the robustness test's mutation found it dividing by zero while the network
/// was wired) is an error naming the line, not a panic.
#[test]
fn a_zero_stride_is_an_error() {
    let text = SHIPPED[3].1.replacen("stride = 2", "stride = 0", 2);
    let err = parse(&text, "proxyless")
        .err()
        .expect("stride 0 is refused")
        .to_string();
    assert!(err.contains("line") && err.contains("s:0"), "{err}");
}

#[test]
fn shipped_spaces_have_their_published_size() {
    let count = |text: &str| genome_count(&parse(text, "x").unwrap().genes());
    let close = |a: f64, b: f64| assert!((a / b - 1.0).abs() < 1e-12, "{a} vs {b}");
    close(count(SHIPPED[2].1), 9f64.powi(22));
    close(count(SHIPPED[3].1), 6f64.powi(6) * 7f64.powi(15));
    // DARTS: node j (2 inputs + j earlier nodes) picks 2 of (2 + j) sources x 7 ops.
    let cell: f64 = (0..4).map(|j| ((2 + j) as f64 * 7.0).powi(2)).product();
    close(count(SHIPPED[4].1), cell * cell);
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// Characters that make TOML and space files interesting.
    const ALPHABET: &[u8] = b"0123456789[]{}=\"\n ,.-_#abcdeiknoprstuvx";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Shipped files with random bytes replaced: an error or a space whose networks
        /// build, never a panic.
        #[test]
        fn mutated_space_files_never_panic(
            which in 0usize..5,
            edits in prop::collection::vec((any::<usize>(), any::<usize>()), 1..6),
            seed in any::<u64>(),
        ) {
            let mut bytes = SHIPPED[which].1.as_bytes().to_vec();
            for (pos, c) in edits {
                let i = pos % bytes.len();
                bytes[i] = ALPHABET[c % ALPHABET.len()];
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(space) = parse(&text, "fuzz.toml") {
                let _ = space.ops();
                let mut rng = SplitMix64::new(seed);
                for _ in 0..3 {
                    let arch = space.sample(&mut rng);
                    let net = space.network(&arch).unwrap();
                    prop_assert!(net.validate().is_ok(), "{arch}");
                }
            }
        }
    }
}
