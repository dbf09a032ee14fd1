#!/usr/bin/env python3
"""Write real `torch.onnx.export` files of torchvision models, structure only, for hwnas's tests.

Each model is built by torchvision (random weights, seeded: no download), exported by torch's
exporter, and stripped of its float weights: every float initializer of more than 64 values
keeps its name, type and dims but no values. hwnas reads only shapes, and seeds its own weights
before it runs such a file (`hwnas_onnx::weights`). The small initializers (shape constants,
biases) stay, so the graph is exactly what the exporter wrote.

Also written: `manifest.json`, per file the model, resolution, torchvision's published
multiply-adds (`weights.meta["_ops"]`, GFLOPS as torchvision counts them: multiply-adds, at
the weights' own resolution) and the versions that made it.

Transformers: torchvision's vit_b_16, and two of our own (see OWN), DeiT-Tiny's configuration
also at opsets 16 and 20 and at 18 and 21 by the dynamo exporter (variants/).

Usage: scripts/export_torchvision.py OUT_DIR [MODEL ...]   (in a venv with torch, torchvision
onnx and onnxscript, e.g. `python3 -m venv .venv-torch && .venv-torch/bin/pip install torch
torchvision onnx onnxscript`; naming models exports only those, and replaces only their entries
in the manifest, whose versions must then be this environment's)
"""

import json
import sys
import warnings
from pathlib import Path

import onnx
import torch
import torchvision
from torchvision import models

SEED = 20261202
OPSET = 17

# (builder, weights enum, resolutions). The first resolution is the one torchvision publishes
# its GFLOPS at; a second one checks another input size.
CLASSIFICATION = [
    ("alexnet", "AlexNet_Weights", [224]),
    ("resnet18", "ResNet18_Weights", [224, 160]),
    ("resnet50", "ResNet50_Weights", [224]),
    ("resnext50_32x4d", "ResNeXt50_32X4D_Weights", [224]),
    ("mobilenet_v2", "MobileNet_V2_Weights", [224, 160]),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", [224, 160]),
    ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", [224]),
    ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights", [224, 160]),
    ("squeezenet1_1", "SqueezeNet1_1_Weights", [224]),
    ("densenet121", "DenseNet121_Weights", [224]),
    ("googlenet", "GoogLeNet_Weights", [224]),
    ("inception_v3", "Inception_V3_Weights", [299]),
    ("efficientnet_b0", "EfficientNet_B0_Weights", [224, 160]),
    ("mnasnet1_0", "MNASNet1_0_Weights", [224]),
    ("regnet_y_400mf", "RegNet_Y_400MF_Weights", [224]),
    ("vgg11", "VGG11_Weights", [224]),
    ("vit_b_16", "ViT_B_16_Weights", [224]),
    ("convnext_tiny", "ConvNeXt_Tiny_Weights", [224]),
]
SEGMENTATION = [
    ("deeplabv3_mobilenet_v3_large", "DeepLabV3_MobileNet_V3_Large_Weights", [520, 256]),
    ("lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights", [520, 256]),
]
# Models hwnas maps only in part today (Swin's shifted windows: Roll, window partitions and
# masks), for the tests of the refusal of partial models. Written under partial/, not in the
# manifest.
PARTIAL = [
    ("swin_t", "Swin_T_Weights", [224]),
]
KEEP_VALUES = 64
# Transformers of our own (no published weights or multiply-adds): DeiT-Tiny's configuration
# of torchvision's VisionTransformer, and a hybrid: a CNN stem whose 14x14 map becomes tokens
# for four pre-norm encoder blocks, mean-pooled. DeiT-Tiny is also exported at other opsets (16
# writes LayerNorm out: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) and by the
# dynamo exporter, under variants/, to check that every form maps to the same ops. And torch's
# own nn.TransformerEncoder with its default post-norm layers.
OWN = ["vit_tiny", "hybrid_vit", "post_norm_vit"]
VARIANTS = [(16, False), (20, False), (18, True), (21, True)]


def build(name, weights_enum, segmentation):
    builder = getattr(models.segmentation if segmentation else models, name)
    kwargs = {"weights": None}
    if segmentation:
        kwargs["weights_backbone"] = None
        kwargs["aux_loss"] = False
        kwargs["num_classes"] = 21
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    model = builder(**kwargs).eval()
    weights = getattr(models.segmentation if segmentation else models, weights_enum).DEFAULT
    return model, weights.meta


def strip(model):
    """Drop the values of every float initializer with more than KEEP_VALUES elements."""
    dropped = 0
    for t in model.graph.initializer:
        numel = 1
        for d in t.dims:
            numel *= d
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) and numel > KEEP_VALUES:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("int32_data")
            dropped += 1
    return dropped


class HybridViT(torch.nn.Module):
    """Conv-BN-ReLU x4 (stride 16 in all) to 192 channels, the pixels as tokens plus a position
    embedding, four torchvision EncoderBlocks (4 heads, MLP 384), LayerNorm, mean, Linear."""

    def __init__(self):
        super().__init__()
        from functools import partial
        from torchvision.models.vision_transformer import EncoderBlock

        layers, c = [], 3
        for w in (32, 64, 128, 192):
            layers += [torch.nn.Conv2d(c, w, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(w), torch.nn.ReLU()]
            c = w
        self.stem = torch.nn.Sequential(*layers)
        self.pos = torch.nn.Parameter(torch.randn(1, 196, 192) * 0.02)
        norm = partial(torch.nn.LayerNorm, eps=1e-6)
        self.blocks = torch.nn.Sequential(*[EncoderBlock(4, 192, 384, 0.0, 0.0, norm) for _ in range(4)])
        self.norm = norm(192)
        self.head = torch.nn.Linear(192, 1000)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))


class PostNormViT(torch.nn.Module):
    """A 16x16 patch embedding, torch's own nn.TransformerEncoder (4 layers, width 192, 3 heads,
    MLP 768, GELU) with its default post-norm layers (norm_first=False: the LayerNorm after
    each residual Add), mean over the tokens, Linear."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 192, 16, 16)
        layer = torch.nn.TransformerEncoderLayer(
            192, 3, 768, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.head = torch.nn.Linear(192, 1000)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


def build_own(name):
    if name == "vit_tiny":
        from torchvision.models.vision_transformer import VisionTransformer
        return VisionTransformer(224, 16, 12, 3, 192, 768).eval()
    if name == "post_norm_vit":
        return PostNormViT().eval()
    return HybridViT().eval()


def export(model, path, res=224, opset=OPSET, dynamo=False):
    """Export at `res` x `res`, strip the weights, save; returns (nodes, weights dropped)."""
    x = torch.randn(1, 3, res, res)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), opset_version=opset, dynamo=dynamo,
            input_names=["input"], output_names=["output"],
        )
    m = onnx.load(str(path))
    dropped = strip(m)
    # The dynamo exporter annotates every node with its Python stack (90% of the bytes) and
    # writes the weights to a side file: neither is structure.
    for n in m.graph.node:
        n.ClearField("metadata_props")
    onnx.save(m, str(path))
    Path(str(path) + ".data").unlink(missing_ok=True)
    print(f"{path.name}: {len(m.graph.node)} nodes, {path.stat().st_size} bytes", flush=True)
    return len(m.graph.node), dropped


class Logits(torch.nn.Module):
    """Segmentation models return a dict; export its `out` tensor."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)["out"]


def main():
    out = Path(sys.argv[1])
    only = set(sys.argv[2:])
    (out / "partial").mkdir(parents=True, exist_ok=True)
    manifest = []
    for segmentation, table in ((False, CLASSIFICATION), (True, SEGMENTATION), (False, PARTIAL)):
        for name, weights_enum, resolutions in table:
            if only and name not in only:
                continue
            torch.manual_seed(SEED)
            model, meta = build(name, weights_enum, segmentation)
            if segmentation:
                model = Logits(model)
            for res in resolutions:
                partial = table is PARTIAL
                path = out / ("partial" if partial else "") / f"{name}-{res}.onnx"
                nodes, dropped = export(model, path, res)
                if partial:
                    continue
                manifest.append({
                    "file": path.name,
                    "model": name,
                    "task": "segmentation" if segmentation else "classification",
                    "resolution": res,
                    "published_gmacs": meta["_ops"],
                    "published_resolution": resolutions[0],
                    "nodes": nodes,
                    "weights_dropped": dropped,
                })
    (out / "variants").mkdir(exist_ok=True)
    for name in OWN:
        if only and name not in only:
            continue
        torch.manual_seed(SEED)
        model = build_own(name)
        nodes, dropped = export(model, out / f"{name}-224.onnx")
        manifest.append({
            "file": f"{name}-224.onnx", "model": name, "task": "classification",
            "resolution": 224, "published_gmacs": None, "published_resolution": 224,
            "nodes": nodes, "weights_dropped": dropped,
        })
        if name == "vit_tiny":
            for opset, dynamo in VARIANTS:
                kind = "dynamo" if dynamo else "torchscript"
                export(model, out / "variants" / f"{name}-opset{opset}-{kind}-224.onnx", 224, opset, dynamo)
    versions = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "opset": OPSET,
        "seed": SEED,
        "exporter": "torch.onnx.export(dynamo=False): the TorchScript exporter",
    }
    if only:
        old = json.loads((out / "manifest.json").read_text())
        if any(old.get(k) != v for k, v in versions.items()):
            sys.exit(f"the manifest was written with other versions than these {versions}: export all")
        names = {m["file"] for m in manifest}
        manifest = [m for m in old["models"] if m["file"] not in names] + manifest
    (out / "manifest.json").write_text(json.dumps({**versions, "models": manifest}, indent=1) + "\n")


if __name__ == "__main__":
    main()
