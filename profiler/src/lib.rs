//! # hwnas-profiler
//!
//! How ops and networks are timed on a device.
//!
//! - A [`device::DeviceProfile`] (TOML) names the backend and its settings;
//!   [`backend::open`] opens it as a [`backend::Backend`]: ONNX Runtime in [`backend::ort`]
//!   (feature `ort`), a GPU through `hwnas_gpu` (feature `gpu`), a simulated device in
//!   [`backend::mock`].
//! - [`measure::measure_group`] is the one measurement loop: warm-up, interleaved rounds,
//!   adaptive repetition until the median's confidence interval is tight, each batch bracketed
//!   by the reference probe ([`measure::PROBE_KEY`]) that corrects for the machine's speed,
//!   giving a [`hwnas_core::backend::Measurement`] per kernel.
//! - [`profile::profile_ops`] runs it over a list of ops through a
//!   [`profile::GroupMeasurer`] — this process ([`profile::InProcess`]), or a
//!   [`worker::Worker`] process that is killed when a kernel hangs and that may run on another
//!   machine (a device profile's `[remote] command`) — and appends
//!   [`hwnas_core::table::Row`]s to a latency table, expressed at the probe's nominal time
//!   ([`profile::probe_nominal_us`]); [`networks`] times whole networks and users' ONNX files
//!   end to end on the same backends, at a table's probe speed ([`networks::Speed`]), through
//!   a [`networks::NetworkMeasurer`] (either of the two again); [`passes::in_passes`]
//!   measures again later the networks whose median is not yet precise.
//! - [`energy`] measures energy per run beside latency where the device keeps a counter
//!   (RAPL, NVML): [`energy::Metered`] puts a meter beside any backend.
//! - [`fuzzing`] holds the entry points the fuzz targets drive, across every layer.

pub mod backend;
pub mod device;
pub mod energy;
pub mod fuzzing;
pub mod measure;
pub mod networks;
pub mod passes;
pub mod profile;
pub mod worker;
