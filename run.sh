#!/usr/bin/env bash
# The main job: set up what is missing; then, for both built-in search spaces (and FBNet's,
# from its space file, further down), profile this
# machine's CPU through ONNX Runtime, fit a latency model calibrated on networks measured end to
# end, and validate it on other networks measured end to end; the same for nb201 in int8 (QDQ);
# treat the CPU as a device timed only whole (20 suggested networks, the int8 table as prior);
# profile, fit and validate nb201 on the GPU through wgpu (and, with an NVIDIA GPU, the whole
# scripts/gpu_check.sh); energy per op where the CPU keeps a RAPL counter; map real ONNX CNNs (torchvision exports, the
# ONNX Model Zoo) to ops, profile, predict and measure them; the transformer space and real ViT
# exports, profiled, fitted, validated and searched; predict a
# few networks; search
# both spaces for the Pareto front of accuracy vs latency on this CPU and re-measure the front;
# build the Python package and time predict_batch from Python.
# Results go to runs/latest/ (override with HWNAS_OUT=dir); an interrupted run continues where
# it stopped (delete the folder to measure again from scratch).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh

cargo build --release --quiet
hwnas=target/release/hwnas
out="${HWNAS_OUT:-runs/latest}"
mkdir -p "$out"

$hwnas devices
for space in nb201 mbv3; do
    echo
    echo "== profiling the $space search space on this CPU"
    $hwnas profile --device device_profiles/cpu.toml --space "$space" --out "$out/cpu-$space.csv" --resume
done
for space in nb201 mbv3; do
    echo
    $hwnas table show "$out/cpu-$space.csv"
done

# A second execution provider: Intel's OpenVINO (its own ORT build, from ./.venv-openvino).
if [[ "${HWNAS_SKIP_OPENVINO:-0}" != 1 ]]; then
    echo
    echo "== profiling nb201 through the OpenVINO execution provider, compared with ORT's CPU EP"
    $hwnas profile --device device_profiles/openvino-cpu.toml --space nb201 --out "$out/openvino-nb201.csv" --resume
    $hwnas table compare "$out/cpu-nb201.csv" "$out/openvino-nb201.csv"
fi

# The GPU that device_profiles/gpu.toml picks (without a GPU: lavapipe, Mesa's Vulkan on the CPU,
# whose times only show that the kernels run; the table says so).
echo
echo "== profiling nb201 on the GPU through wgpu, then a model calibrated and validated on networks run there"
$hwnas profile --device device_profiles/gpu.toml --space nb201 --out "$out/gpu-nb201.csv" --resume
$hwnas table show "$out/gpu-nb201.csv"
$hwnas fit --table "$out/gpu-nb201.csv" --device device_profiles/gpu.toml --calibrate 20 --out "$out/gpu-nb201.model.json"
$hwnas validate --model "$out/gpu-nb201.model.json" --device device_profiles/gpu.toml --samples 20
# On a machine with an NVIDIA GPU, the whole GPU check: wgpu against ORT's CUDA EP, energy (NVML).
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo
    echo "== the GPU check (scripts/gpu_check.sh): wgpu and the CUDA EP on nb201 and mbv3, energy through NVML"
    scripts/gpu_check.sh --out "$out/gpu-check" || echo "some GPU checks failed: see $out/gpu-check/summary.md"
fi
# Energy where this machine has a counter (RAPL): otherwise `--energy` says why there is none.
echo
echo "== energy per op on this CPU, where it keeps a counter"
if $hwnas profile --device device_profiles/cpu.toml --space nb201 --energy --out "$out/cpu-nb201-energy.csv" --resume; then
    $hwnas table show "$out/cpu-nb201-energy.csv" | grep energy
fi

for space in nb201 mbv3; do
    echo
    echo "== fitting the $space latency model (calibrated on 60 networks measured end to end)"
    $hwnas fit --table "$out/cpu-$space.csv" --device device_profiles/cpu.toml --out "$out/cpu-$space.model.json"
    echo
    echo "== validating it on 100 other $space networks measured end to end"
    $hwnas validate --model "$out/cpu-$space.model.json" --device device_profiles/cpu.toml --samples 100
done

echo
echo "== nb201 in int8 (QuantizeLinear/DequantizeLinear graphs, as NPUs take them) on this CPU: profiled, compared with fp32, fitted and validated"
$hwnas profile --device device_profiles/cpu.toml --space nb201 --precision int8 --out "$out/cpu-nb201-int8.csv" --resume
$hwnas table compare "$out/cpu-nb201.csv" "$out/cpu-nb201-int8.csv"
$hwnas fit --table "$out/cpu-nb201-int8.csv" --device device_profiles/cpu.toml --calibrate 30 --out "$out/cpu-nb201-int8.model.json"
$hwnas validate --model "$out/cpu-nb201-int8.model.json" --device device_profiles/cpu.toml --samples 40 --repeat 10

echo
echo "== this CPU as a device timed only whole: 20 suggested nb201 networks timed end to end, a model"
echo "   learned from them on the int8 table as prior, scored on 100 other networks timed whole"
$hwnas fit --table "$out/cpu-nb201-int8.csv" --calibrate 0 --out "$out/cpu-nb201-int8.prior.json"
$hwnas fit --space nb201 --prior "$out/cpu-nb201-int8.prior.json" --suggest 20 --suggest-out "$out/few-shot-nb201.txt"
$hwnas measure --device device_profiles/cpu.toml --space nb201 --archs "$out/few-shot-nb201.txt" --out "$out/few-shot-nb201.csv"
$hwnas measure --device device_profiles/cpu.toml --space nb201 --samples 100 --seed 9 \
    --speed-of "$out/few-shot-nb201.csv" --out "$out/few-shot-nb201-held.csv"
$hwnas fit --space nb201 --networks "$out/few-shot-nb201.csv" --prior "$out/cpu-nb201-int8.prior.json" \
    --name cpu-timed-whole --out "$out/few-shot-nb201.model.json"
$hwnas validate --model "$out/few-shot-nb201.model.json" --networks "$out/few-shot-nb201-held.csv"

echo
echo "== predicted latency of a few networks on this CPU"
$hwnas predict --model "$out/cpu-nb201.model.json" --space nb201 \
    --arch '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|' \
    --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|' \
    --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
$hwnas predict --model "$out/cpu-mbv3.model.json" --space mbv3 \
    --arch r160-d22222-k33333333333333333333-e33333333333333333333 \
    --arch r224-d44444-k77777777777777777777-e66666666666666666666

echo
echo "== your own ONNX models: real torchvision exports and ONNX Model Zoo files, every layer mapped,"
echo "   profiled, predicted with a calibration on the reference networks, and measured end to end"
tv=tests/data/torchvision
onnx="--onnx $tv/mobilenet_v3_large-224.onnx --onnx $tv/resnet50-224.onnx --onnx $tv/shufflenet_v2_x1_0-224.onnx"
onnx="$onnx --onnx $tv/deeplabv3_mobilenet_v3_large-256.onnx --onnx $tv/efficientnet_b0-224.onnx"
onnx="$onnx --onnx $HWNAS_ONNX_ZOO/light_inception_v1.onnx --onnx $HWNAS_ONNX_ZOO/light_densenet121.onnx"
$hwnas profile --device device_profiles/cpu.toml --reference $onnx --out "$out/cpu-real-onnx.csv" --resume
$hwnas predict --table "$out/cpu-real-onnx.csv" --onnx "$tv/mobilenet_v3_large-224.onnx"
$hwnas fit --table "$out/cpu-real-onnx.csv" --device device_profiles/cpu.toml --calibrate-reference --out "$out/cpu-real-onnx.model.json"
$hwnas validate --model "$out/cpu-real-onnx.model.json" --device device_profiles/cpu.toml $onnx --repeat 7
echo "(a model only partly mapped is refused; --allow-unmapped predicts the mapped part and says so:)"
$hwnas predict --model "$out/cpu-real-onnx.model.json" --onnx "$tv/partial/swin_t-224.onnx" --allow-unmapped \
    > "$out/swin-partial.txt" 2>/dev/null
head -n 2 "$out/swin-partial.txt"

echo
echo "== transformers: the vit space (AutoFormer-Tiny-like), three real ViT exports (torchvision's"
echo "   vit_b_16, DeiT-Tiny, a hybrid CNN with attention) and torchvision's ConvNeXt-Tiny profiled"
echo "   together, a model calibrated on 30 vit networks, validated on 30 others and on the exports"
echo "   run end to end; a search under 55 ms"
vits="--onnx $tv/vit_b_16-224.onnx --onnx $tv/vit_tiny-224.onnx --onnx $tv/hybrid_vit-224.onnx"
vits="$vits --onnx $tv/convnext_tiny-224.onnx"
$hwnas profile --device device_profiles/cpu.toml --space vit $vits --out "$out/cpu-vit.csv" --resume
$hwnas fit --table "$out/cpu-vit.csv" --space vit --device device_profiles/cpu.toml --calibrate 30 --out "$out/cpu-vit.model.json"
$hwnas validate --model "$out/cpu-vit.model.json" --device device_profiles/cpu.toml --space vit --samples 30
$hwnas validate --model "$out/cpu-vit.model.json" --device device_profiles/cpu.toml $vits --repeat 3 --anchors 6
$hwnas search --space vit --model "$out/cpu-vit.model.json" --accuracy proxy --max-latency-ms 55 \
    --max-evaluations 2000 --out "$out/search-vit"

# NAS-Bench-201's CIFAR-10 accuracies, where the shared data set is present.
nb201_acc=../shared/data/nb201/cifar10_test_acc.csv
if [[ -f $nb201_acc ]]; then accuracy="table:$nb201_acc"; else accuracy=proxy; fi
echo
echo "== nb201: the true front (all 15,625 cells), then NSGA-II with 1,000 evaluations against it"
$hwnas search --space nb201 --model "$out/cpu-nb201.model.json" --accuracy "$accuracy" \
    --exhaustive --out "$out/search-nb201-exhaustive"
$hwnas search --space nb201 --model "$out/cpu-nb201.model.json" --accuracy "$accuracy" \
    --max-evaluations 1000 --seed 1 --compare "$out/search-nb201-exhaustive/front.json" \
    --verify --device device_profiles/cpu.toml --out "$out/search-nb201"
if [[ -f $nb201_acc ]]; then
    echo
    echo "== the search against pymoo's NSGA-II (the shared anchor), 20 seeds each, one sitting"
    .venv/bin/python scripts/compare_search.py nb201 --model "$out/cpu-nb201.model.json" \
        --hwnas "$hwnas" --seeds 20 --out "$out/compare-search-nb201"
    .venv/bin/python scripts/compare_search.py mbv3 --model "$out/cpu-mbv3.model.json" \
        --hwnas "$hwnas" --seeds 20 --out "$out/compare-search-mbv3"
fi
echo
echo "== mbv3 under 10 ms on this CPU (accuracy: the FLOPs proxy), front re-measured"
$hwnas search --space mbv3 --model "$out/cpu-mbv3.model.json" --max-latency-ms 10 \
    --max-evaluations 3000 --seed 1 --verify --verify-max 20 --device device_profiles/cpu.toml \
    --out "$out/search-mbv3"
echo
echo "== a space from a file: FBNet's (spaces/fbnet.toml), profiled, fitted, validated and searched under 8 ms"
$hwnas space check spaces/fbnet.toml
$hwnas profile --device device_profiles/cpu.toml --space spaces/fbnet.toml --out "$out/cpu-fbnet.csv" --resume
$hwnas fit --table "$out/cpu-fbnet.csv" --device device_profiles/cpu.toml --out "$out/cpu-fbnet.model.json"
$hwnas validate --model "$out/cpu-fbnet.model.json" --device device_profiles/cpu.toml --samples 100
$hwnas search --space spaces/fbnet.toml --model "$out/cpu-fbnet.model.json" --max-latency-ms 8 \
    --max-evaluations 3000 --seed 1 --verify --verify-max 20 --device device_profiles/cpu.toml \
    --out "$out/search-fbnet"
$hwnas lut export --model "$out/cpu-fbnet.model.json" --space spaces/fbnet.toml --out "$out/cpu-fbnet.lut.json"
echo
echo "== both models as latency tables for differentiable (one-shot) search"
$hwnas lut export --model "$out/cpu-mbv3.model.json" --space mbv3 --resolution 224 --out "$out/cpu-mbv3.lut-224.json"
$hwnas lut export --model "$out/cpu-nb201.model.json" --space nb201 --out "$out/cpu-nb201.lut.json"
echo
echo "== the Python package: built into ./.venv, then predict_batch from Python with this CPU's mbv3 model"
bash scripts/python_package.sh
.venv/bin/python scripts/bench_python.py "$out/cpu-mbv3.model.json"
echo
echo "results in $out/: latency tables (cpu-*.csv, openvino-nb201.csv, gpu-nb201.csv, cpu-real-onnx.csv), models (*.model.json), validation reports and plots"
echo "(*.validate-*.json, *.svg), search fronts (search-*/front.csv, front.json, front.svg), one-shot latency tables (*.lut*.json)"
