//! Facts about the machine a table is measured on, for provenance: what it is ([`Machine`]),
//! and how busy and fast it is now ([`MachineState`]). A remote worker reports its own, so a
//! table records the device, not the host that drove it.

use serde::{Deserialize, Serialize};

/// What a table records of the machine that measured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub os: String,
    pub hostname: String,
}

impl Machine {
    /// The machine this process runs on.
    pub fn this() -> Machine {
        Machine {
            cpu: cpu_model(),
            logical_cpus: cpu_count(),
            os: os(),
            hostname: hostname(),
        }
    }
}

/// A machine's load and clock at one moment, recorded beside each row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub load1: Option<f64>,
    pub cpu_mhz: Option<f64>,
}

impl MachineState {
    /// This machine's state now.
    pub fn now() -> MachineState {
        MachineState {
            load1: load_average(),
            cpu_mhz: cpu_mhz().map(|mhz| mhz.round()),
        }
    }
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), or empty.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The CPU model name (`/proc/cpuinfo` on Linux), or the architecture when unreadable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Logical CPUs available to this process.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The operating system and kernel release.
pub fn os() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} {}", std::env::consts::OS, release.trim())
        .trim()
        .to_string()
}

/// 1-minute load average, when readable: a busy machine gives noisy timings.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPUs' mean current clock in MHz, where readable: cpufreq's `scaling_cur_freq` (what
/// the governor set now), else `/proc/cpuinfo` (on VMs often the nominal clock). A clock that
/// moves between rows is frequency scaling or thermal throttling, and their times disagree.
pub fn cpu_mhz() -> Option<f64> {
    let mut khz = Vec::new();
    for cpu in 0.. {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq");
        match std::fs::read_to_string(path) {
            Ok(text) => khz.extend(text.trim().parse::<f64>().ok()),
            Err(_) => break,
        }
    }
    if !khz.is_empty() {
        return Some(khz.iter().sum::<f64>() / khz.len() as f64 / 1e3);
    }
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse().ok())
        .collect();
    (!mhz.is_empty()).then(|| mhz.iter().sum::<f64>() / mhz.len() as f64)
}

/// CPU time consumed so far by the calling thread (Linux and other Unixes), where readable.
/// A run timed by it does not count the time the OS gave another process on the core.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The current UTC time as RFC 3339 (`2026-11-28T06:43:42Z`).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formatting() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_utc(1_795_851_822), "2026-11-28T07:43:42Z");
    }
}
