//! hwnas beside the field's reference implementations, measured in the same run (this machine
//! drifts, so only ratios from one sitting mean anything): mbv3 latency predictions per second
//! against OFA's dict look-up table and a NumPy batch (`../shared/anchors/ofa_lut_predictor.py`),
//! and a 1,000-evaluation NSGA-II run on nb201 against pymoo's
//! (`../shared/anchors/pymoo_nsga2_nb201.py`). Needs `./.venv` with NumPy and pymoo
//! (`scripts/setup.sh` installs them) and the shared NAS-Bench-201 data; fails without them.
//!
//! `cargo bench --bench anchors`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hwnas_core::rng::SplitMix64;
use hwnas_search::compiled::CompiledLatency;
use hwnas_search::nsga2;
use hwnas_search::space::{SearchSpace, mbv3::Mbv3};
use hwnas_search::strategy::Config;

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs an anchor script with the project's Python; its standard output.
fn anchor(script: &str, args: &[&str]) -> String {
    let python = root().join(".venv/bin/python");
    let path = root().join("../shared/anchors").join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} {}: {e} (scripts/setup.sh)",
                python.display(),
                path.display()
            )
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The number after `marker` in `text` (commas allowed), e.g. "median 5,668,583 archs/s".
fn number_after(text: &str, marker: &str) -> f64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` not in:\n{text}"))
        + marker.len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
        .filter(|c| *c != ',')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{marker}`"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn predictions() {
    let model = common::mock_mbv3_model();
    let compiled = CompiledLatency::new(&model, &Mbv3).expect("mbv3 compiles");
    let mut rng = SplitMix64::new(1);
    let n = 100_000;
    let genomes: Vec<u8> = (0..n)
        .flat_map(|_| Mbv3.encode(&Mbv3.sample(&mut rng)).unwrap())
        .collect();
    let mut out = Vec::with_capacity(n);
    let ours = median(
        (0..7)
            .map(|_| {
                out.clear();
                let t = Instant::now();
                compiled.predict_batch(std::hint::black_box(&genomes), &mut out);
                n as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let text = anchor(
        "ofa_lut_predictor.py",
        &["--numpy", "--n", "100000", "--runs", "5"],
    );
    let dict = number_after(&text, "OFA-style dict LUT (expand field = mid): median");
    let numpy = number_after(&text, "numpy batch (not OFA-style): median");
    println!("mbv3 latency predictions per second, one core, one sitting:");
    println!("  hwnas compiled (batch of genomes) {:>12.0}", ours);
    println!(
        "  NumPy batch (anchor)              {:>12.0}  hwnas {:.1}x",
        numpy,
        ours / numpy
    );
    println!(
        "  OFA dict LUT (anchor)             {:>12.0}  hwnas {:.0}x",
        dict,
        ours / dict
    );
}

fn search() {
    let mut problem = common::nb201_problem();
    // The anchor wants the latency of every cell in NAS-Bench-201's index order.
    let mut lat = String::from("arch_index,latency_ms\n");
    let text = std::fs::read_to_string(common::NB201_ACCURACY).expect("the shared data");
    // `arch_index,arch_string,test_acc`: the strings hold no comma.
    for row in text.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        let genome = problem.space.encode(cells[1]).unwrap();
        let ms = problem.latency[0]
            .latency_ms(cells[1], &genome, None)
            .unwrap();
        lat += &format!("{},{ms}\n", cells[0]);
    }
    let lat_path = std::env::temp_dir().join("hwnas-anchors-nb201-latency.csv");
    std::fs::write(&lat_path, lat).unwrap();
    let ours = median(
        (0..20)
            .map(|seed| {
                let cfg = Config {
                    population: 50,
                    max_evaluations: 1000,
                    seed,
                    ..Config::default()
                };
                let t = Instant::now();
                nsga2::run(&mut problem, &cfg, |_| {}).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let report = std::env::temp_dir().join("hwnas-anchors-pymoo.md");
    let lat = lat_path.display().to_string();
    let out = report.display().to_string();
    anchor(
        "pymoo_nsga2_nb201.py",
        &[
            "--lat", &lat, "--pops", "50", "--seeds", "20", "--out", &out,
        ],
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("| NSGA-II pop 50"))
        .expect("pymoo's table");
    let pymoo: f64 = row
        .rsplit('|')
        .nth(1)
        .and_then(|cell| cell.trim().trim_end_matches(" ms").parse().ok())
        .expect("pymoo's wall time per run");
    println!("NSGA-II on nb201, 1,000 evaluations, median of 20 seeds, one sitting:");
    println!("  hwnas, in process     {ours:>8.2} ms");
    println!(
        "  pymoo 0.6.2 (anchor)  {pymoo:>8.2} ms  hwnas {:.0}x faster",
        pymoo / ours
    );
}

fn main() {
    predictions();
    search();
}
