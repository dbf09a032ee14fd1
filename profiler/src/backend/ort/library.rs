//! Finding and loading the ONNX Runtime library, and what it offers.

use super::*;

/// Where an ONNX Runtime library was looked for, in order. An explicit path may be the library
/// itself or a Python virtual environment holding an ONNX Runtime wheel (`.venv-openvino`).
pub fn library_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_dir() {
            wheel_libraries(p)
        } else {
            vec![p.to_path_buf()]
        };
    }
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH")
        && !p.is_empty()
    {
        out.push(PathBuf::from(p));
    }
    // The set-up script installs the `onnxruntime` wheel into ./.venv.
    out.extend(wheel_libraries(Path::new(".venv")));
    out
}

/// The ONNX Runtime libraries of the wheels (onnxruntime, onnxruntime-openvino, ...) installed in
/// a virtual environment: `lib/python*/site-packages/onnxruntime/capi/libonnxruntime.so.*`.
fn wheel_libraries(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        for py in entries.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            if let Ok(files) = std::fs::read_dir(&capi) {
                let mut libs: Vec<PathBuf> = files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with("libonnxruntime.so.") || n == "libonnxruntime.dylib"
                        })
                    })
                    .collect();
                libs.sort();
                out.extend(libs);
            }
        }
    }
    out
}

/// Find the ONNX Runtime shared library: the explicit path (a `--ort-library` flag or the
/// profile's `ort.library`), else `$ORT_DYLIB_PATH`, else the `onnxruntime` wheel in `./.venv`.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, BackendError> {
    let candidates = library_candidates(explicit);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried = if candidates.is_empty() {
        "nothing: $ORT_DYLIB_PATH is unset and ./.venv has no onnxruntime wheel".to_string()
    } else {
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(BackendError::Unavailable(format!(
        "no ONNX Runtime library found (tried {tried}). Run scripts/setup.sh to install the \
         onnxruntime wheel into ./.venv, or pass --ort-library / set ORT_DYLIB_PATH to a \
         libonnxruntime.so.1.x file"
    )))
}

/// Load the library and create the environment once per process: ONNX Runtime allows one
/// environment and cannot be unloaded, so a later request for another library is an error.
pub(super) fn load(path: &Path) -> Result<Environment, BackendError> {
    static LOADED: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((env, first)) = loaded.as_ref() {
        if first != path {
            return Err(BackendError::Unavailable(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                first.display(),
                path.display()
            )));
        }
        return Ok(env.clone());
    }
    let builder = ort::init_from(path).map_err(|e| {
        BackendError::Unavailable(format!(
            "cannot load ONNX Runtime from {}: {e}",
            path.display()
        ))
    })?;
    let env = builder.with_name("hwnas").build().map_err(|e| {
        BackendError::Unavailable(format!("cannot create the ONNX Runtime environment: {e}"))
    })?;
    *loaded = Some((env.clone(), path.to_path_buf()));
    Ok(env)
}

/// The library's version, from its build info (`git-branch=rel-1.31.1`) or its file name.
pub(super) fn library_version(path: &Path) -> String {
    let info = ort::info();
    if let Some(v) = info
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
    {
        return v.to_string();
    }
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so."))
        .map_or_else(|| "unknown".to_string(), |(_, v)| v.to_string())
}

/// The execution providers compiled into the loaded library, as ORT names them.
pub fn available_providers() -> Result<Vec<String>, BackendError> {
    let api = ort::api();
    let mut names: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut count: std::ffi::c_int = 0;
    // SAFETY: ORT fills `names` with `count` NUL-terminated strings that stay valid until
    // ReleaseAvailableProviders, which is called below after they are copied.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut names, &mut count);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Err(BackendError::Unavailable(
                "GetAvailableProviders failed".into(),
            ));
        }
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let s = std::ffi::CStr::from_ptr(*names.add(i));
            out.push(s.to_string_lossy().into_owned());
        }
        let status = (api.ReleaseAvailableProviders)(names, count);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
        }
        Ok(out)
    }
}

/// The ORT name of a device profile's `execution_provider`.
pub fn provider_name(short: &str) -> String {
    match short.to_ascii_lowercase().as_str() {
        "cpu" => "CPUExecutionProvider".into(),
        "cuda" => "CUDAExecutionProvider".into(),
        "tensorrt" => "TensorrtExecutionProvider".into(),
        "openvino" => "OpenVINOExecutionProvider".into(),
        "qnn" => "QNNExecutionProvider".into(),
        "coreml" => "CoreMLExecutionProvider".into(),
        "nnapi" => "NnapiExecutionProvider".into(),
        "directml" | "dml" => "DmlExecutionProvider".into(),
        "xnnpack" => "XnnpackExecutionProvider".into(),
        "rocm" => "ROCMExecutionProvider".into(),
        "migraphx" => "MIGraphXExecutionProvider".into(),
        "cann" => "CANNExecutionProvider".into(),
        "vitis" | "vitisai" => "VitisAIExecutionProvider".into(),
        "webgpu" => "WebGpuExecutionProvider".into(),
        _ => short.to_string(),
    }
}
