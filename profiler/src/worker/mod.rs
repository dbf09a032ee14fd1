//! Measuring in a worker process, so a kernel that hangs or crashes its runtime costs one op,
//! not the run — and so the device can be another machine.
//!
//! ONNX Runtime checks its terminate flag only between nodes, and a lone op is one node: a
//! kernel that never returns cannot be stopped from inside the process, and an execution
//! provider that aborts takes the process with it. So the profiler measures through a
//! [`Worker`]: a child process (the CLI's hidden `hwnas worker`) that runs [`serve`] over a
//! backend, reading one [`Request`] per line on stdin and answering [`Message`]s on stdout.
//! While it prepares and runs kernels it sends a heartbeat at least every `beat_ms`. When no
//! heartbeat comes within the timeout, the parent kills the child; a group of ops is then
//! measured again one op at a time (each in a fresh child when needed), so exactly the op that
//! hangs is recorded failed and the others are measured.
//!
//! The pipe may cross machines: a [`Launch`] is either this executable, or a device profile's
//! `[remote] command` (ssh, `adb shell -T`, ...) with `hwnas worker` appended. Nothing but the
//! pipe is shared, so the child opens its backend from the profile the parent sends
//! ([`Request::Open`]), whole networks and users' ONNX files travel in the requests
//! ([`WireFile`]), and the child reports its own machine ([`Ready`]) for the table's
//! provenance. Both sides say their [`Hello`] first and refuse a peer of another build.
//!
//! The conversation:
//! ```text
//! child  → Hello{protocol, version}
//! parent → Open{hello, profile, ort_library, beat_ms}
//! child  → Ready{provenance, machine, ...}   | Fatal(why)
//! parent → Ops | Networks | Files | FileNodes          (repeated)
//! child  → Beat* Done* then Results | Times | Nodes
//! ```

mod client;
mod files;
mod serve;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::device::DeviceProfile;
use crate::measure::MeasureConfig;
use crate::networks::{NetworkTime, Speed};
use hwnas_core::backend::{Measurement, NodeTime};
use hwnas_core::host::{Machine, MachineState};
use hwnas_core::network::Network;

pub use client::{Launch, Worker, WorkerError};
pub use files::WireFile;
pub use serve::serve;

/// The version of the messages below; bumped whenever any of them changes.
pub const PROTOCOL: u32 = 2;

/// Marks the protocol's lines on the child's stdout; anything else there (a runtime's own
/// chatter, a remote shell's banner) is passed on to stderr.
pub const TAG: &str = "hwnas-worker ";

/// Which build is speaking: both sides must be the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
}

impl Hello {
    /// This build's.
    pub fn this() -> Hello {
        Hello {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn is_this(&self) -> bool {
        *self == Hello::this()
    }
}

impl std::fmt::Display for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hwnas {} (worker protocol {})",
            self.version, self.protocol
        )
    }
}

/// What the parent asks, one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The first request: open this profile's backend (its `[remote]` section removed; the
    /// library, when given, overrides the profile's) and beat every `beat_ms` while working.
    Open {
        hello: Hello,
        profile: Box<DeviceProfile>,
        ort_library: Option<PathBuf>,
        beat_ms: u64,
    },
    /// Measure these ops (keys) together: answered by [`Message::Results`].
    Ops {
        ops: Vec<String>,
        measure: MeasureConfig,
    },
    /// Time these networks end to end: a [`Message::Done`] each, then [`Message::Times`].
    Networks {
        networks: Vec<Network>,
        measure: MeasureConfig,
        speed: Speed,
    },
    /// Time these ONNX files end to end, as `Networks`.
    Files {
        files: Vec<WireFile>,
        measure: MeasureConfig,
        speed: Speed,
    },
    /// The runtime's node-by-node profile of one file: answered by [`Message::Nodes`].
    FileNodes { file: WireFile, runs: usize },
}

/// The child's backend is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The backend's provenance, for the table's header.
    pub provenance: Vec<(String, String)>,
    /// The machine the worker runs on, and its load and clock now (none for a simulated device).
    pub machine: Machine,
    pub state: Option<MachineState>,
    pub simulated: bool,
    pub default_provider: String,
    /// What a user should know before trusting the device's times.
    pub notes: Vec<String>,
}

/// What the child says, one per line after [`TAG`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// The child's first line: which build it is.
    Hello(Hello),
    Ready(Ready),
    /// The backend could not be opened, a request could not be read, or the builds differ.
    Fatal(String),
    /// Still working.
    Beat,
    /// One more network (or file) of the request is timed.
    Done,
    /// One result per requested op, in order, and the machine's state after them (none for a
    /// simulated device).
    Results {
        results: Vec<Result<Measurement, String>>,
        state: Option<MachineState>,
    },
    Times(Result<Vec<NetworkTime>, String>),
    Nodes(Result<Option<Vec<NodeTime>>, String>),
}

fn send(out: &mut dyn std::io::Write, message: &Message) -> std::io::Result<()> {
    let json = serde_json::to_string(message).map_err(std::io::Error::other)?;
    writeln!(out, "{TAG}{json}")?;
    out.flush()
}

#[cfg(test)]
mod tests;
