#!/usr/bin/env bash
# The whole GPU check in one run, on any machine with a GPU (or, with --smoke, on lavapipe):
# the wgpu kernels' conformance against ONNX Runtime on the real adapter; nb201 and mbv3
# profiled, fitted and validated on wgpu and on ONNX Runtime's CUDA EP (ORT's CPU EP stands in
# where there is no NVIDIA GPU, named so); energy through NVML where the GPU has it; then one
# table (summary.md): conformance, throughput per op kind against the GPU's peak, wgpu against
# ORT per kind and per network, validation accuracy, energy.
#
#   scripts/gpu_check.sh [--smoke] [--out DIR] [--baseline DIR2] [--budget-s S]
#                                                     (default DIR: runs/gpu-check)
#
# --budget-s: no check starts after S seconds; those left are reported skipped (a lease that
# ends at a fixed time still gets its table).
# --baseline: an earlier run's folder (tests/data/h200 is an H200's); the table then compares
# each wgpu op kind's time with it, to time a kernel change on the same GPU.
#
# A check that fails is reported and the others go on; the exit status is the number that
# failed. Everything goes to DIR: each step's log, the tables, models, validation reports.
#
# Where hwnas is built: a machine with cargo builds it (scripts/setup.sh installs ORT and the
# Vulkan loader when they are missing). A machine without a toolchain or network takes a
# bundle built elsewhere (scripts/gpu_bundle.sh: the hwnas binary, the conformance tests, the
# ORT library) through HWNAS_BUNDLE=DIR. The CUDA EP needs ORT's GPU build: HWNAS_CUDA_ORT=
# path/to/libonnxruntime.so (the `onnxruntime-gpu` wheel's), else .venv-gpu, else pip
# installs it there when the network allows.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
out=runs/gpu-check
baseline=""
budget_s=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --out) out="$2"; shift ;;
        --baseline) baseline=$(realpath "$2"); shift ;;
        --budget-s) budget_s="$2"; shift
            [[ "$budget_s" =~ ^[0-9]+([.][0-9]+)?$ ]] ||
                { echo "--budget-s: seconds, such as 420 or 0.5, not '$budget_s'" >&2; exit 2; } ;;
        *) echo "usage: scripts/gpu_check.sh [--smoke] [--out DIR] [--baseline DIR2] [--budget-s S]" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
out=$(realpath "$out")
: >"$out/steps.tsv"
failed=0

began=$(date +%s%N)
budget_ns=$(awk -v s="$budget_s" 'BEGIN { printf "%.0f", s * 1e9 }')

# skipped NAME: past the budget, records NAME as skipped (and succeeds).
skipped() {
    [ "$budget_ns" -gt 0 ] && [ $(($(date +%s%N) - began)) -ge "$budget_ns" ] || return 1
    printf '%s\tskipped\t0\n' "$1" >>"$out/steps.tsv"
    echo "the check's --budget-s $budget_s was spent before it started" >"$out/$1.log"
    echo "skipped $1 (over --budget-s $budget_s)"
}

# step NAME CMD...: runs CMD with its output in NAME.log; records its status and time. Past the
# budget it runs nothing, records NAME as skipped and fails, so the steps chained on it do not
# run either.
step() {
    local name=$1 start rc
    shift
    skipped "$name" && return 1
    start=$(date +%s%N)
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((($(date +%s%N) - start) / 1000000))" >>"$out/steps.tsv"
    if [ $rc -eq 0 ]; then
        echo "ok      $name"
    else
        failed=$((failed + 1))
        echo "FAILED  $name (exit $rc; $out/$name.log ends:)"
        tail -n 4 "$out/$name.log" | sed 's/^/          /'
    fi
    return $rc
}

# What is unavailable here is recorded as such (not a failure).
not_here() {
    printf '%s\tn/a\t0\n' "$1" >>"$out/steps.tsv"
    echo "$2" >"$out/$1.log"
    echo "n/a     $1: $2"
}

# --- hwnas, ORT and the Vulkan loader -------------------------------------------------------
if [ -n "${HWNAS_BUNDLE:-}" ]; then
    bundle=$(realpath "$HWNAS_BUNDLE")
    hwnas="$bundle/hwnas"
    conformance=("$bundle/gpu_conformance")
    export ORT_DYLIB_PATH
    ORT_DYLIB_PATH=$(ls "$bundle"/libonnxruntime.so* | head -n1)
    if ! ldconfig -p | grep -q libvulkan.so.1 && [ -d .gl ]; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
else
    # shellcheck source=setup.sh
    HWNAS_SKIP_OPENVINO=1 source scripts/setup.sh
    if [ $smoke -eq 1 ]; then
        # The smoke test reuses the debug build the test suite made.
        step build cargo build --quiet --bin hwnas
        hwnas=target/debug/hwnas
        conformance=(cargo test --quiet --workspace --test gpu_conformance)
    else
        step build cargo build --release --quiet --bin hwnas
        hwnas=target/release/hwnas
        conformance=(cargo test --release --quiet --workspace --test gpu_conformance)
    fi
fi
hwnas=$(realpath "$hwnas")
# Some GPU machines mount the NVIDIA driver outside the Vulkan loader's search path (its ICD
# under /usr/local/nvidia); without it wgpu would find no GPU adapter.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ] &&
    ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=$nvidia_icd
fi
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    nvidia=1
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader \
        >"$out/gpu.txt" 2>&1
    # The clocks and power through the whole check, a line a second: a GPU that never left its
    # idle clocks, or throttled, shows here.
    nvidia-smi dmon -s pc -d 1 >"$out/dmon.txt" 2>&1 &
    dmon=$!
    trap 'kill $dmon 2>/dev/null' EXIT
else
    nvidia=0
    echo "no NVIDIA GPU (nvidia-smi absent or found none)" >"$out/gpu.txt"
fi
step devices "$hwnas" devices

# --- conformance on the adapter wgpu picks (the best: discrete first) -----------------------
step conformance "${conformance[@]}"

# --- the two devices ------------------------------------------------------------------------
if [ $smoke -eq 1 ]; then
    spaces=(nb201)
    calibrate=4
    samples=4
    energy_networks=4
    measure=$'[measure]\nwarmup_runs = 2\nmin_runs = 5\nmax_ms = 30.0\ntarget_ci = 0.1\nround_ms = 5.0\n'
else
    spaces=(nb201 mbv3)
    calibrate=30
    samples=30
    # NVML's counter updates every 100 ms on an H200, so an energy window is >= 1 s: 30 + 30
    # networks took over 6 minutes there; 10 + 10 keep the check within its 8.
    energy_networks=10
    measure=""
fi
if [ $smoke -eq 1 ]; then
    printf 'name = "wgpu"\nbackend = "wgpu"\n[wgpu]\ntimeout_ms = 60000\n%sprobe_runs = 0\n' "$measure" >"$out/wgpu.toml"
else
    sed 's/^name = .*/name = "wgpu"/' device_profiles/gpu.toml >"$out/wgpu.toml"
fi
ort_args=()
if [ $nvidia -eq 1 ]; then
    cuda_ort="${HWNAS_CUDA_ORT:-$(ls .venv-gpu/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)}"
    if [ -z "$cuda_ort" ] && python3 -m venv .venv-gpu >/dev/null 2>&1 &&
        .venv-gpu/bin/pip install -q --retries 0 --timeout 10 onnxruntime-gpu >"$out/ort-gpu-install.log" 2>&1; then
        cuda_ort=$(ls .venv-gpu/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)
    fi
    if [ -n "$cuda_ort" ]; then
        # The CUDA and cuDNN libraries the wheel's EP loads: the nvidia-* wheels beside it or
        # in the system's Python, where they are.
        nv_libs=$(find "$(dirname "$cuda_ort")/../.." /opt /usr/local/lib -path '*site-packages/nvidia/*/lib' -type d 2>/dev/null | tr '\n' ':')
        export LD_LIBRARY_PATH="${nv_libs}${LD_LIBRARY_PATH:-}"
        ort_name=cuda
        sed '/^library/d' device_profiles/cuda.toml >"$out/ort.toml"
        ort_args=(--ort-library "$cuda_ort")
    fi
fi
if [ ${#ort_args[@]} -eq 0 ]; then
    ort_name=ort-cpu
    printf 'name = "ort-cpu"\ndescription = "ONNX Runtime CPU EP, standing in for the CUDA EP (no NVIDIA GPU or no onnxruntime-gpu here)"\nbackend = "ort"\n%s' "$measure" >"$out/ort.toml"
fi
sed -i "s/^name = .*/name = \"$ort_name\"/" "$out/ort.toml"
echo "$ort_name" >"$out/ort-name.txt"

# on_both SPACE: SPACE profiled, fitted and validated on wgpu and on ORT.
on_both() {
    local space=$1 dev base extra
    for dev in wgpu ort; do
        extra=()
        [ "$dev" = ort ] && extra=("${ort_args[@]}")
        base="$out/$dev-$space"
        step "profile-$dev-$space" "$hwnas" profile --device "$out/$dev.toml" --space "$space" \
            --out "$base.csv" "${extra[@]}" &&
            step "fit-$dev-$space" "$hwnas" fit --table "$base.csv" --device "$out/$dev.toml" \
                --calibrate "$calibrate" --out "$base.model.json" "${extra[@]}" &&
            step "validate-$dev-$space" "$hwnas" validate --model "$base.model.json" \
                --device "$out/$dev.toml" --samples "$samples" --repeat 0 --out "$base.validate" "${extra[@]}"
    done
}

# Energy through NVML, where the GPU has it.
energy() {
    if [ $nvidia -eq 1 ]; then
        local base="$out/energy-wgpu-nb201"
        step energy-profile "$hwnas" profile --device "$out/wgpu.toml" --space nb201 --energy \
            --out "$base.csv" &&
            step energy-fit "$hwnas" fit --table "$base.csv" --device "$out/wgpu.toml" \
                --calibrate "$energy_networks" --out "$base.model.json" &&
            step energy-validate "$hwnas" validate --model "$base.model.json" \
                --device "$out/wgpu.toml" --samples "$energy_networks" --repeat 0 --out "$base.validate"
    elif ! skipped energy; then
        local why
        why=$("$hwnas" profile --device "$out/wgpu.toml" --op gap-in:1x64x8x8 --energy \
            --out "$out/energy-refused.csv" 2>&1 | tail -n 1)
        not_here energy "$why"
    fi
}

# The first space, then energy, then the rest: a run cut short keeps the most telling checks.
on_both "${spaces[0]}"
energy
for space in "${spaces[@]:1}"; do
    on_both "$space"
done

python3 scripts/gpu_report.py "$out" ${baseline:+"$baseline"} | tee "$out/summary.md"
echo "$failed checks failed; everything is in $out"
exit "$failed"
