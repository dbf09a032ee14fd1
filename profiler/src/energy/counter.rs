//! Energy counters a device keeps: RAPL through Linux's powercap files, and NVIDIA's NVML.
//!
//! A counter is read as one cumulative value per zone, in microjoules; a zone may wrap to 0 at
//! a known value (RAPL's `max_energy_range_uj`), so energies are always taken as differences
//! between two readings, zone by zone ([`energy_between`]).

use std::path::{Path, PathBuf};

/// A cumulative energy counter.
pub trait Counter {
    /// The value of each zone now, in microjoules.
    fn read(&mut self) -> Result<Vec<u64>, String>;
    /// Per zone, the value at which it wraps back to 0 (`None`: it does not wrap).
    fn wraps(&self) -> Vec<Option<u64>>;
    /// What is read, for the table's provenance and errors.
    fn describe(&self) -> String;
}

/// The energy between two readings of the same zones, each zone's wrap-around undone (a zone
/// is assumed to wrap at most once between them: windows stay shorter than a wrap).
pub fn energy_between(before: &[u64], after: &[u64], wraps: &[Option<u64>]) -> u64 {
    before
        .iter()
        .zip(after)
        .zip(wraps.iter().chain(std::iter::repeat(&None)))
        .map(|((&a, &b), wrap)| match wrap {
            Some(range) if b < a => range - a + b,
            _ => b.saturating_sub(a),
        })
        .sum()
}

/// RAPL as Linux's powercap class exposes it: every CPU package (`intel-rapl:N`, named
/// `package-N`, on AMD too) and the DRAM zone under it where there is one. The core and
/// uncore sub-zones are parts of the package and are not added again; `psys` (the whole
/// platform) would count the packages twice and is left out; `intel-rapl-mmio` repeats the
/// package.
pub struct Powercap {
    root: PathBuf,
    zones: Vec<Zone>,
}

struct Zone {
    name: String,
    energy: PathBuf,
    range: Option<u64>,
}

impl Powercap {
    /// The packages (and their DRAM) under `root`, usually `/sys/class/powercap`.
    pub fn open(root: &Path) -> Result<Powercap, String> {
        let entries = std::fs::read_dir(root).map_err(|e| {
            format!(
                "{} cannot be read ({e}): this machine exposes no RAPL counter \
                 (a VM, or a kernel without intel_rapl)",
                root.display()
            )
        })?;
        let mut packages: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_zone(p, 1) && zone_name(p).is_some_and(|n| n.starts_with("package")))
            .collect();
        packages.sort();
        if packages.is_empty() {
            return Err(format!(
                "{} has no RAPL package zone (intel-rapl:N named package-N)",
                root.display()
            ));
        }
        let mut zones = Vec::new();
        for package in &packages {
            zones.push(Zone::open(package)?);
            let mut dram: Vec<PathBuf> = std::fs::read_dir(package)
                .map_err(|e| format!("{} cannot be read: {e}", package.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_zone(p, 2) && zone_name(p).as_deref() == Some("dram"))
                .collect();
            dram.sort();
            for d in dram {
                zones.push(Zone::open(&d)?);
            }
        }
        let mut counter = Powercap {
            root: root.to_path_buf(),
            zones,
        };
        counter.read()?;
        Ok(counter)
    }
}

/// `intel-rapl:0` has depth 1, `intel-rapl:0:2` depth 2.
fn is_zone(path: &Path, depth: usize) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("intel-rapl:"))
        .is_some_and(|rest| {
            rest.split(':').count() == depth && rest.split(':').all(|p| p.parse::<u32>().is_ok())
        })
}

fn zone_name(path: &Path) -> Option<String> {
    std::fs::read_to_string(path.join("name"))
        .ok()
        .map(|s| s.trim().to_string())
}

impl Zone {
    fn open(dir: &Path) -> Result<Zone, String> {
        let range = std::fs::read_to_string(dir.join("max_energy_range_uj"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|r| *r > 0);
        Ok(Zone {
            name: zone_name(dir).unwrap_or_else(|| dir.display().to_string()),
            energy: dir.join("energy_uj"),
            range,
        })
    }

    fn read(&self) -> Result<u64, String> {
        let text = std::fs::read_to_string(&self.energy).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (since Linux 5.10 only root may read RAPL: run as root, or \
                 `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`)"
            } else {
                ""
            };
            format!("cannot read {}: {e}{hint}", self.energy.display())
        })?;
        text.trim().parse().map_err(|e| {
            format!(
                "{} holds `{}`, not a count of microjoules: {e}",
                self.energy.display(),
                text.trim()
            )
        })
    }
}

impl Counter for Powercap {
    fn read(&mut self) -> Result<Vec<u64>, String> {
        self.zones.iter().map(Zone::read).collect()
    }

    fn wraps(&self) -> Vec<Option<u64>> {
        self.zones.iter().map(|z| z.range).collect()
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        format!("rapl:{} ({})", self.root.display(), names.join(" + "))
    }
}

/// An NVIDIA GPU's total-energy counter (Volta and later), through NVML loaded at run time:
/// the build needs no NVIDIA library, and a machine without the driver gets an error.
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    index: u32,
    name: String,
}

impl Nvml {
    pub fn open(index: u32) -> Result<Nvml, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            format!("NVML (libnvidia-ml.so.1, the NVIDIA driver's) did not load: {e}")
        })?;
        let name = nvml
            .device_by_index(index)
            .and_then(|d| d.name())
            .map_err(|e| format!("NVML has no GPU {index}: {e}"))?;
        let mut counter = Nvml { nvml, index, name };
        counter.read()?;
        Ok(counter)
    }
}

impl Counter for Nvml {
    fn read(&mut self) -> Result<Vec<u64>, String> {
        let mj = self
            .nvml
            .device_by_index(self.index)
            .and_then(|d| d.total_energy_consumption())
            .map_err(|e| format!("NVML's energy counter of GPU {}: {e}", self.index))?;
        Ok(vec![mj * 1000])
    }

    fn wraps(&self) -> Vec<Option<u64>> {
        vec![None]
    }

    fn describe(&self) -> String {
        format!("nvml:{} ({})", self.index, self.name)
    }
}
