//! The `hwnas` binary end to end, one module per subject (as ripgrep's tests are): real ONNX
//! Runtime on the CPU, the mock device, wgpu on lavapipe, OpenVINO, users' ONNX models, and the
//! errors a user meets. Needs ORT and lavapipe (`./test.sh` installs them and sets
//! ORT_DYLIB_PATH).
//!
//! These are scenario tests that read top to bottom like a user's session; they may run longer
//! than the 120 lines library functions are held to.
#![allow(clippy::too_many_lines)]

mod anchors;
mod drift;
mod energy;
mod farm;
mod few_shot;
mod golden;
mod gpu;
mod hostile;
mod onnx;
mod openvino;
mod pipeline;
mod precision;
mod real_models;
mod remote;
mod resume;
mod search;
mod slurm;
mod spaces;
mod sshd;
mod transformers;
mod util;
