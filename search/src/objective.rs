//! What an architecture search optimises: the metrics of a network, which of them are
//! objectives, which are bounded by constraints, and [`ArchProblem`], the NSGA-II problem over
//! a search space's genomes.

use std::sync::Mutex;

use hwnas_core::network::Network;
use hwnas_predictor::LatencyModel;

use crate::accuracy::AccuracySource;
use crate::arch_table::{ArchTable, ArchTableError, ValueKind};
use crate::compiled::CompiledLatency;
use crate::journal::Journal;
use crate::problem::{EvaluateError, Evaluation, Problem};
use crate::space::{Gene, SearchSpace};

/// Where one device's latency comes from.
#[derive(Debug, Clone)]
pub enum LatencySource {
    /// Predicted by a latency model (`hwnas fit`): from the genome where the model is
    /// compiled for the space, else from each network.
    Model {
        name: String,
        model: Box<LatencyModel>,
        compiled: Option<Box<CompiledLatency>>,
    },
    /// Whole architectures measured on the device (`--latency table:FILE.csv`).
    Table { name: String, table: ArchTable },
}

impl LatencySource {
    /// A latency model as a source, compiled for `space` when it is a sum of units (a few
    /// ms of work; a prediction then builds no network). Spaces that only enumerate (nb201:
    /// 5^6 networks to predict first, ~0.25 s) are predicted network by network, which is
    /// cheaper for a search of a few thousand evaluations.
    pub fn model(name: String, model: LatencyModel, space: &dyn SearchSpace) -> LatencySource {
        let compiled = CompiledLatency::cheap(space)
            .then(|| CompiledLatency::new(&model, space).ok())
            .flatten()
            .map(Box::new);
        LatencySource::Model {
            name,
            model: Box::new(model),
            compiled,
        }
    }

    /// Whether a latency needs the architecture's network built.
    pub fn needs_network(&self) -> bool {
        matches!(self, LatencySource::Model { compiled: None, .. })
    }

    pub fn table(spec: &str, space: &dyn SearchSpace) -> Result<LatencySource, ArchTableError> {
        let table = ArchTable::from_spec(spec, ValueKind::LatencyMs, space)?;
        let name = table
            .path
            .file_stem()
            .map_or("table".into(), |s| s.to_string_lossy().into_owned());
        Ok(LatencySource::Table { name, table })
    }

    pub fn name(&self) -> &str {
        match self {
            LatencySource::Model { name, .. } | LatencySource::Table { name, .. } => name,
        }
    }

    /// Latency in ms of an architecture: its canonical encoding, its genome, and its network
    /// where [`LatencySource::needs_network`] says it is needed.
    pub fn latency_ms(
        &self,
        arch: &str,
        genome: &[u8],
        net: Option<&Network>,
    ) -> Result<f64, String> {
        match self {
            LatencySource::Model {
                compiled: Some(c), ..
            } => Ok(c.predict_ms(genome)),
            LatencySource::Model { model, .. } => {
                let net = net.ok_or("the network was not built")?;
                let terms = model.terms(net);
                let us = match model.predict_fast(&terms) {
                    Some(us) => us,
                    None => model.predict(&terms).map_err(|e| e.to_string())?.latency_us,
                };
                Ok(us / 1e3)
            }
            LatencySource::Table { table, .. } => table.get(arch).map_err(|e| e.to_string()),
        }
    }

    /// Whether the source predicts energy (a model fitted on a table with `energy_uj`).
    pub fn has_energy(&self) -> bool {
        matches!(self, LatencySource::Model { model, .. } if model.energy.is_some())
    }

    /// Energy per inference in mJ of a network, from a model with energy.
    pub fn energy_mj(&self, net: &Network) -> Result<f64, String> {
        let LatencySource::Model { model, .. } = self else {
            return Err("a table of architectures has no energy".into());
        };
        match model.predict_energy_uj(&model.terms(net)) {
            Some(uj) => uj.map(|uj| uj / 1e3).map_err(|e| e.to_string()),
            None => Err(format!(
                "model `{}` has no energy: profile with --energy and fit again",
                self.name()
            )),
        }
    }

    /// The prediction's interval in ms, where the source has one.
    pub fn interval_ms(&self, net: &Network) -> Option<(f64, f64)> {
        match self {
            LatencySource::Model { model, .. } => {
                let p = model.predict(&model.terms(net)).ok()?;
                Some((p.low_us / 1e3, p.high_us / 1e3))
            }
            LatencySource::Table { .. } => None,
        }
    }
}

/// Gives sources of one name a number each (`cpu1`, `cpu2`), so objectives and bounds can tell
/// them apart.
pub fn name_apart(sources: &mut [LatencySource]) {
    let names: Vec<String> = sources.iter().map(|s| s.name().to_string()).collect();
    for (i, s) in sources.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == names[i]).count() > 1 {
            let unique = format!("{}{}", names[i], i + 1);
            match s {
                LatencySource::Model { name, .. } | LatencySource::Table { name, .. } => {
                    *name = unique
                }
            }
        }
    }
}

/// The position of the latency source named `name`.
pub fn latency_index(latency: &[LatencySource], name: &str) -> Result<usize, String> {
    latency
        .iter()
        .position(|l| l.name() == name)
        .ok_or_else(|| {
            format!(
                "no device `{name}`; the latency sources are: {}",
                latency
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The positions of the sources that predict energy: `name` alone, or every one.
pub fn energy_indices(latency: &[LatencySource], name: Option<&str>) -> Result<Vec<usize>, String> {
    let chosen = match name {
        Some(name) => vec![latency_index(latency, name)?],
        None => (0..latency.len()).collect(),
    };
    let with: Vec<usize> = chosen
        .into_iter()
        .filter(|i| latency[*i].has_energy())
        .collect();
    if with.is_empty() || (name.is_some() && with.len() != 1) {
        return Err(format!(
            "energy needs a --model fitted on a table profiled with --energy; {} has none",
            name.map_or("no model given".to_string(), |n| format!("`{n}`"))
        ));
    }
    Ok(with)
}

/// Objectives from a comma-separated list: accuracy, latency (every device), latency:DEVICE,
/// energy (every device with energy), energy:DEVICE, mflops, mparams, memory; each once, in
/// the order first named.
pub fn parse_objectives(spec: &str, latency: &[LatencySource]) -> Result<Vec<Metric>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "accuracy" => out.push(Metric::Accuracy),
            "latency" => {
                if latency.is_empty() {
                    return Err(
                        "objective `latency` needs a --model or --latency table:FILE.csv".into(),
                    );
                }
                out.extend((0..latency.len()).map(Metric::Latency));
            }
            "energy" => out.extend(
                energy_indices(latency, None)?
                    .into_iter()
                    .map(Metric::Energy),
            ),
            "mflops" | "flops" => out.push(Metric::Mflops),
            "mparams" | "params" => out.push(Metric::Mparams),
            "memory" => out.push(Metric::MemoryMb),
            other => match (
                other.strip_prefix("latency:"),
                other.strip_prefix("energy:"),
            ) {
                (Some(name), _) => out.push(Metric::Latency(latency_index(latency, name)?)),
                (_, Some(name)) => out.extend(
                    energy_indices(latency, Some(name))?
                        .into_iter()
                        .map(Metric::Energy),
                ),
                _ => {
                    return Err(format!(
                        "--objectives: unknown `{other}` (accuracy, latency, latency:DEVICE, energy, energy:DEVICE, mflops, mparams, memory)"
                    ));
                }
            },
        }
    }
    // `dedup` alone keeps non-adjacent repeats.
    let mut seen = Vec::new();
    out.retain(|m| {
        !seen.contains(m) && {
            seen.push(*m);
            true
        }
    });
    if out.len() < 2 {
        return Err(format!(
            "--objectives `{spec}`: a multi-objective search needs at least two"
        ));
    }
    Ok(out)
}

/// A quantity of a network a search can minimise, maximise or bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    /// Latency on the latency source of that index, in ms.
    Latency(usize),
    /// Energy per inference predicted by the latency source of that index, in mJ.
    Energy(usize),
    /// Millions of floating-point operations.
    Mflops,
    /// Millions of parameters.
    Mparams,
    /// Peak activation memory, MB (10^6 bytes), batch 1, fp32.
    MemoryMb,
}

/// Every metric of one evaluated architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub arch: String,
    pub accuracy: f64,
    pub latency_ms: Vec<f64>,
    /// Per latency source, energy per inference in mJ (NaN where not predicted: a source
    /// without energy, or a search that neither optimises nor bounds it).
    pub energy_mj: Vec<f64>,
    pub mflops: f64,
    pub mparams: f64,
    pub memory_mb: f64,
}

impl Metrics {
    fn set_sizes(&mut self, net: &Network) {
        self.mflops = net.flops() as f64 / 1e6;
        self.mparams = net.params() as f64 / 1e6;
        self.memory_mb = net.peak_activation_bytes() as f64 / 1e6;
    }

    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::Accuracy => self.accuracy,
            Metric::Latency(i) => self.latency_ms[i],
            Metric::Energy(i) => self.energy_mj[i],
            Metric::Mflops => self.mflops,
            Metric::Mparams => self.mparams,
            Metric::MemoryMb => self.memory_mb,
        }
    }
}

/// `metric <= bound` (or `>=` for accuracy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraint {
    pub metric: Metric,
    pub bound: f64,
}

impl Constraint {
    /// How far `m` is outside the bound, relative to the bound (0 inside).
    pub fn violation(&self, m: &Metrics) -> f64 {
        let v = m.get(self.metric);
        let excess = match self.metric {
            Metric::Accuracy => self.bound - v,
            _ => v - self.bound,
        };
        (excess / self.bound.abs().max(1e-12)).max(0.0)
    }
}

/// Architecture search as an NSGA-II problem.
pub struct ArchProblem<'a> {
    pub space: &'a dyn SearchSpace,
    pub accuracy: AccuracySource,
    pub latency: Vec<LatencySource>,
    pub objectives: Vec<Metric>,
    pub constraints: Vec<Constraint>,
    /// Where given, accuracies come from it first and every new one is recorded in it, so the
    /// search can stop and resume ([`crate::journal`]).
    pub journal: Option<Mutex<Journal>>,
}

impl ArchProblem<'_> {
    /// Objectives as NSGA-II minimises them: accuracy negated.
    pub fn minimised(&self, m: &Metrics) -> Vec<f64> {
        self.objectives
            .iter()
            .map(|o| match o {
                Metric::Accuracy => -m.accuracy,
                other => m.get(*other),
            })
            .collect()
    }

    pub fn metric_name(&self, m: Metric) -> String {
        match m {
            Metric::Accuracy if self.accuracy.is_proxy() => "accuracy_proxy_mflops".into(),
            Metric::Accuracy => "accuracy".into(),
            Metric::Latency(i) => format!("latency_{}_ms", self.latency[i].name()),
            Metric::Energy(i) => format!("energy_{}_mj", self.latency[i].name()),
            Metric::Mflops => "mflops".into(),
            Metric::Mparams => "mparams".into(),
            Metric::MemoryMb => "peak_memory_mb".into(),
        }
    }

    /// Whether evaluating needs each architecture's network: for a latency predicted network
    /// by network, the FLOPs proxy, or a size metric the search optimises or bounds.
    fn needs_networks(&self) -> bool {
        let size = |m: &Metric| matches!(m, Metric::Mflops | Metric::Mparams | Metric::MemoryMb);
        self.uses_energy()
            || self.latency.iter().any(LatencySource::needs_network)
            || self.accuracy.is_proxy()
            || self.objectives.iter().any(size)
            || self.constraints.iter().any(|c| size(&c.metric))
    }

    /// Whether the search optimises or bounds energy (only then is it predicted).
    pub fn uses_energy(&self) -> bool {
        let energy = |m: &Metric| matches!(m, Metric::Energy(_));
        self.objectives.iter().any(energy) || self.constraints.iter().any(|c| energy(&c.metric))
    }

    /// Each source's energy of a network, where the search uses energy (NaN elsewhere).
    fn energies(&self, net: Option<&Network>) -> Result<Vec<f64>, EvaluateError> {
        self.latency
            .iter()
            .map(|l| match net {
                Some(net) if self.uses_energy() && l.has_energy() => l
                    .energy_mj(net)
                    .map_err(|e| EvaluateError(format!("energy on `{}`: {e}", l.name()))),
                _ => Ok(f64::NAN),
            })
            .collect()
    }

    /// Every metric of a batch of genomes. The size metrics are NaN where no network had to
    /// be built ([`ArchProblem::complete`] fills them in).
    pub fn metrics(&self, genomes: &[Vec<u8>]) -> Result<Vec<Metrics>, EvaluateError> {
        let archs: Vec<String> = genomes.iter().map(|g| self.space.decode(g)).collect();
        let nets = if self.needs_networks() {
            archs
                .iter()
                .map(|a| self.space.network(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EvaluateError(e.to_string()))?
        } else {
            Vec::new()
        };
        let accuracy = self.accuracies(&archs, genomes, &nets)?;
        archs
            .into_iter()
            .zip(genomes)
            .zip(accuracy)
            .enumerate()
            .map(|(i, ((arch, genome), accuracy))| {
                let net = nets.get(i);
                let latency_ms = self
                    .latency
                    .iter()
                    .map(|l| {
                        l.latency_ms(&arch, genome, net)
                            .map_err(|e| EvaluateError(format!("latency on `{}`: {e}", l.name())))
                    })
                    .collect::<Result<_, _>>()?;
                let mut m = Metrics {
                    latency_ms,
                    energy_mj: self.energies(net)?,
                    accuracy,
                    mflops: f64::NAN,
                    mparams: f64::NAN,
                    memory_mb: f64::NAN,
                    arch,
                };
                if let Some(net) = net {
                    m.set_sizes(net);
                }
                Ok(m)
            })
            .collect()
    }

    /// Accuracies of a batch, through the journal where there is one.
    fn accuracies(
        &self,
        archs: &[String],
        genomes: &[Vec<u8>],
        nets: &[Network],
    ) -> Result<Vec<f64>, EvaluateError> {
        let evaluate = |archs: &[String], genomes: &[Vec<u8>], nets: &[Network]| {
            self.accuracy
                .evaluate(archs, genomes, nets)
                .map_err(|e| e.to_string())
        };
        let Some(journal) = &self.journal else {
            return evaluate(archs, genomes, nets).map_err(EvaluateError);
        };
        let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
        journal
            .accuracies(archs, |missing| {
                if missing.len() == archs.len() {
                    return evaluate(archs, genomes, nets);
                }
                let some_archs: Vec<String> = missing.iter().map(|i| archs[*i].clone()).collect();
                let some_genomes: Vec<Vec<u8>> =
                    missing.iter().map(|i| genomes[*i].clone()).collect();
                let some_nets: Vec<Network> = missing
                    .iter()
                    .filter_map(|i| nets.get(*i).cloned())
                    .collect();
                evaluate(&some_archs, &some_genomes, &some_nets)
            })
            .map_err(EvaluateError)
    }

    /// Fills in the size metrics an evaluation left out (see [`ArchProblem::metrics`]).
    pub fn complete(&self, m: &mut Metrics) -> Result<(), EvaluateError> {
        if m.mflops.is_nan() {
            let net = self
                .space
                .network(&m.arch)
                .map_err(|e| EvaluateError(e.to_string()))?;
            m.set_sizes(&net);
        }
        Ok(())
    }
}

impl Problem for ArchProblem<'_> {
    type Info = Metrics;

    fn genes(&self) -> Vec<Gene> {
        self.space.genes()
    }

    fn evaluate(
        &mut self,
        genomes: &[Vec<u8>],
    ) -> Result<Vec<(Evaluation, Metrics)>, EvaluateError> {
        Ok(self
            .metrics(genomes)?
            .into_iter()
            .map(|m| {
                let eval = Evaluation {
                    objectives: self.minimised(&m),
                    violation: self.constraints.iter().map(|c| c.violation(&m)).sum(),
                };
                (eval, m)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::nb201::Nb201;

    const CONVS: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    const SKIPS: &str = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";

    use crate::arch_table::temp_file as file;

    #[test]
    fn tables_give_accuracy_and_per_device_latency_and_constraints_bound_them() {
        let acc = file(&format!("arch,acc\n{CONVS},94\n{SKIPS},50\n"));
        let phone = file(&format!("arch,latency_ms\n{CONVS},30\n{SKIPS},3\n"));
        let pi = file(&format!("arch,latency_us\n{CONVS},90000\n{SKIPS},5000\n"));
        let space = Nb201;
        let latency = [&phone, &pi]
            .iter()
            .map(|f| LatencySource::table(f.path().to_str().unwrap(), &space).unwrap())
            .collect();
        let mut problem = ArchProblem {
            space: &space,
            accuracy: AccuracySource::parse(&format!("table:{}", acc.path().display()), &space, 1)
                .unwrap(),
            latency,
            objectives: vec![Metric::Accuracy, Metric::Latency(0), Metric::Latency(1)],
            // 50 ms on the second device: the conv cell is 80% over.
            constraints: vec![Constraint {
                metric: Metric::Latency(1),
                bound: 50.0,
            }],
            journal: None,
        };
        let genomes = vec![space.encode(CONVS).unwrap(), space.encode(SKIPS).unwrap()];
        let out = problem.evaluate(&genomes).unwrap();
        assert_eq!(out[0].0.objectives, vec![-94.0, 30.0, 90.0]);
        assert_eq!(out[1].0.objectives, vec![-50.0, 3.0, 5.0]);
        assert!((out[0].0.violation - 0.8).abs() < 1e-12);
        assert_eq!(out[1].0.violation, 0.0);
        // Tables need no network: the sizes come when asked for.
        assert!(out[0].1.mflops.is_nan());
        let (mut conv, mut skip) = (out[0].1.clone(), out[1].1.clone());
        problem.complete(&mut conv).unwrap();
        problem.complete(&mut skip).unwrap();
        assert!(conv.mflops > skip.mflops && skip.mparams > 0.0 && skip.memory_mb > 0.0);
        let other = space
            .encode(&CONVS.replace("nor_conv_3x3~2", "none~2"))
            .unwrap();
        let err = problem.evaluate(&[other]).unwrap_err();
        assert!(err.to_string().contains("is not in the table"), "{err}");
    }

    #[test]
    fn objectives_are_named_once_in_order_and_checked() {
        let none: &[LatencySource] = &[];
        let got = parse_objectives("mflops, accuracy,mflops,params", none).unwrap();
        assert_eq!(got, [Metric::Mflops, Metric::Accuracy, Metric::Mparams]);
        let err = |spec: &str| parse_objectives(spec, none).unwrap_err();
        assert!(err("accuracy,latency").contains("--model"));
        assert!(err("accuracy,latency:phone").contains("phone"));
        assert!(err("accuracy,speed").contains("unknown `speed`"));
        assert!(err("accuracy,accuracy").contains("at least two"));
    }
}
