#!/usr/bin/env bash
# Idempotent set-up for hwnas on Debian/Ubuntu with Rust installed. Source it (run.sh and
# test.sh do): it installs what is missing and exports the environment hwnas needs.
#   - ONNX Runtime: the `onnxruntime` PyPI wheel in ./.venv; its libonnxruntime.so is what the
#     `ort` crate loads at run time (load-dynamic), exported as ORT_DYLIB_PATH.
#   - A second ONNX Runtime build with an NPU/accelerator execution provider: the
#     `onnxruntime-openvino` wheel (ORT 1.24.1 + Intel OpenVINO) in ./.venv-openvino, which
#     device_profiles/openvino-cpu.toml loads. Skip with HWNAS_SKIP_OPENVINO=1.
#   - Mesa's Vulkan driver (lavapipe), for the wgpu GPU backend on machines without a GPU.
#   - The `onnx` wheel in ./.venv, for the ONNX Model Zoo networks it ships (real third-party
#     files the tests import), exported as HWNAS_ONNX_ZOO.
#   - pymoo in ./.venv: the anchor the search is compared with (scripts/compare_search.py).
#   - maturin and pytest in ./.venv: scripts/python_package.sh builds the `hwnas` Python package
#     (python/) into a wheel and installs it there; python/tests are its tests.
#   - OpenSSH's server and client: the remote-device tests start their own sshd on 127.0.0.1
#     (a throw-away key; the system's sshd is not touched).
#   - Slurm's controller, node daemon and client: the farm test starts a one-node cluster of
#     its own (temporary configuration, free ports, auth/none) and runs examples/slurm/.
# The installs run in a strict subshell, so sourcing this leaves the caller's shell options alone.

HWNAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORT_PYPI_VERSION="${ORT_PYPI_VERSION:-1.31.1}"
ORT_OPENVINO_PYPI_VERSION="${ORT_OPENVINO_PYPI_VERSION:-1.24.1}"
ONNX_PYPI_VERSION="${ONNX_PYPI_VERSION:-1.23.2}"
PYMOO_PYPI_VERSION="${PYMOO_PYPI_VERSION:-0.6.2}"
MATURIN_PYPI_VERSION="${MATURIN_PYPI_VERSION:-1.16.0}"
PYTEST_PYPI_VERSION="${PYTEST_PYPI_VERSION:-9.2.0}"

hwnas_find_ort() {
    ls "$HWNAS_ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1
}

hwnas_find_onnx_zoo() {
    ls -d "$HWNAS_ROOT"/.venv/lib/python3*/site-packages/onnx/backend/test/data/light 2>/dev/null | head -n1
}

hwnas_install() (
    set -euo pipefail
    as_root() {
        if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
            echo "setup: need root for: $*" >&2; return 1; fi
    }
    apt_updated=""
    apt_install() {
        command -v apt-get >/dev/null || { echo "setup: no apt-get; install $* by hand" >&2; return 1; }
        if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    }

    command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

    if [ -z "$(hwnas_find_ort)" ]; then
        echo "setup: installing onnxruntime==$ORT_PYPI_VERSION into $HWNAS_ROOT/.venv" >&2
        if ! python3 -m venv "$HWNAS_ROOT/.venv" 2>/dev/null; then
            apt_install python3-venv python3-pip
            python3 -m venv "$HWNAS_ROOT/.venv"
        fi
        "$HWNAS_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==$ORT_PYPI_VERSION"
    fi
    [ -n "$(hwnas_find_ort)" ] || { echo "setup: onnxruntime wheel installed but no libonnxruntime.so found" >&2; exit 1; }

    if [ -z "$(hwnas_find_onnx_zoo)" ]; then
        echo "setup: installing onnx==$ONNX_PYPI_VERSION (its model-zoo test networks) into $HWNAS_ROOT/.venv" >&2
        "$HWNAS_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "onnx==$ONNX_PYPI_VERSION"
    fi
    [ -n "$(hwnas_find_onnx_zoo)" ] || { echo "setup: onnx wheel installed but it has no backend/test/data/light models" >&2; exit 1; }

    if ! "$HWNAS_ROOT/.venv/bin/python" -c "import pymoo" 2>/dev/null; then
        echo "setup: installing pymoo==$PYMOO_PYPI_VERSION (the search anchor) into $HWNAS_ROOT/.venv" >&2
        "$HWNAS_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "pymoo==$PYMOO_PYPI_VERSION"
    fi

    if ! "$HWNAS_ROOT/.venv/bin/python" -c "import maturin, pytest" 2>/dev/null; then
        echo "setup: installing maturin==$MATURIN_PYPI_VERSION and pytest==$PYTEST_PYPI_VERSION (the Python package's build and tests) into $HWNAS_ROOT/.venv" >&2
        "$HWNAS_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "maturin==$MATURIN_PYPI_VERSION" "pytest==$PYTEST_PYPI_VERSION"
    fi

    if [ "${HWNAS_SKIP_OPENVINO:-0}" != 1 ] && ! ls "$HWNAS_ROOT"/.venv-openvino/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1; then
        echo "setup: installing onnxruntime-openvino==$ORT_OPENVINO_PYPI_VERSION into $HWNAS_ROOT/.venv-openvino" >&2
        python3 -m venv "$HWNAS_ROOT/.venv-openvino"
        "$HWNAS_ROOT/.venv-openvino/bin/pip" install --quiet --disable-pip-version-check "onnxruntime-openvino==$ORT_OPENVINO_PYPI_VERSION"
    fi

    if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
        echo "setup: installing Mesa's Vulkan driver (lavapipe)" >&2
        apt_install mesa-vulkan-drivers libvulkan1
    fi

    if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null || ! command -v pkill >/dev/null; then
        echo "setup: installing OpenSSH (the remote-device tests run the worker through a real sshd on 127.0.0.1) and procps" >&2
        apt_install openssh-server openssh-client procps
    fi

    if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] || ! command -v sbatch >/dev/null; then
        echo "setup: installing Slurm (the farm test starts its own controller and node on this machine)" >&2
        apt_install slurmctld slurmd slurm-client
    fi
)

if hwnas_install; then
    ORT_DYLIB_PATH="$(hwnas_find_ort)"
    export ORT_DYLIB_PATH
    HWNAS_ONNX_ZOO="$(hwnas_find_onnx_zoo)"
    export HWNAS_ONNX_ZOO
    export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
    # Mesa complains loudly without a private runtime directory.
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/hwnas-xdg-$(id -u)}"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
else
    echo "setup: failed (see above)" >&2
    return 1 2>/dev/null || exit 1
fi
