#!/usr/bin/env python3
"""MobileNetV4 fixtures from timm, for tests/mobilenet_v4_parity.rs.

    pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0
    python3 scripts/make_v4_fixtures.py [--full DIR]

Each case is a MobileNetV4 built the way timm's `_gen_mobilenet_v4` builds its models (timm's
`MobileNetV3` class with `decode_arch_def` of block strings, `head_bias=False`,
`head_norm=True`, BatchNorm defaults, the model's activation, layer scale 1e-5 for the
hybrids), on small tables of the same block kinds (ConvBnAct `cn`, EdgeResidual `er`, every
UIB form `uir`, mobile MQA `mqa` with and without key/value downsampling; ReLU, and GELU as in
Hybrid-Large), so that the
committed files stay small. Every parameter, BatchNorm statistic and layer scale is perturbed
away from its initial value (make_fixtures.py's `perturb`, and the layer scales drawn around
0.5). Per case: `<case>.safetensors` (the state_dict, as timm saves it) and
`<case>.io.safetensors` (a non-square `input` and timm's eval-mode `logits`,
`features`, and every `feature_info` tap `tap_<i>` from `forward_intermediates`; and
`small_1x1_*` and `small_5x7_*` `input` and `logits`, inputs smaller than the output stride). `manifest.json` lists each case's table as the strings and as the Rust test reads
it.

`full_size.json` lists the state_dict keys and shapes and the parameter counts of timm's
`mobilenetv4_conv_small`, `mobilenetv4_conv_medium`, `mobilenetv4_conv_large` and
`mobilenetv4_hybrid_medium` and `mobilenetv4_hybrid_large` (1000 classes), and their multiply-adds at 224x224 as torch's
`FlopCounterMode` counts them (halved), and their `feature_info` (module, channels, reduction).

`--full DIR` also writes conv_small, hybrid_medium and hybrid_large with timm's random
initialization and their logits to DIR (not committed: 15, 44 and 150 MB), for `MOBILENET_BURN_FULL_V4=DIR cargo test --release --test
mobilenet_v4_parity -- --ignored`.

Made with torch 2.15.0, timm 1.0.31, safetensors 0.8.0.
"""

import argparse
import importlib.util
import json
from functools import partial
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from timm.layers import LayerScale2d
from torch.utils.flop_counter import FlopCounterMode
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.mobilenetv3 import MobileNetV3

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "v4"

spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_fixtures)

# name, stem, stages (timm block strings), head channels, classes, layer scale, input shape,
# activation (timm's name: `relu` for all but Hybrid-Large, `gelu` for it)
CASES = [
    ("v4_tiny_conv", 16, [
        ["cn_r1_k3_s2_e1_c16", "cn_r1_k1_s1_e1_c16"],
        ["er_r1_k3_s2_e4_c24"],
        ["uir_r1_a5_k5_s2_e3_c32", "uir_r2_a0_k3_s1_e2_c32", "uir_r1_a3_k0_s1_e4_c32",
         "uir_r1_a0_k0_s1_e2_c32"],
        ["cn_r1_k1_s1_c64"],
    ], 128, 10, None, (2, 3, 67, 45), "relu"),
    ("v4_tiny_hybrid", 16, [
        ["er_r1_k3_s2_e4_c24"],
        ["uir_r1_a3_k5_s2_e4_c32", "mqa_r1_k3_h2_s1_v2_d16_c32", "uir_r1_a3_k0_s1_e4_c32"],
        ["uir_r1_a5_k5_s2_e6_c48", "mqa_r1_k3_h2_s1_d16_c48", "uir_r1_a0_k0_s1_e2_c48"],
        ["cn_r1_k1_s1_c96"],
    ], 128, 7, 1e-5, (1, 3, 64, 80), "relu"),
    # Hybrid-Large's block kinds and activation: GELU everywhere, 8 heads of 48 with downsampled
    # keys and values, then 64 without.
    ("v4_tiny_hybrid_gelu", 16, [
        ["er_r1_k3_s2_e4_c24"],
        ["uir_r1_a3_k5_s2_e4_c32", "mqa_r1_k3_h8_s1_v2_d12_c32", "uir_r1_a5_k3_s1_e4_c32"],
        ["uir_r1_a5_k5_s2_e4_c48", "mqa_r1_k3_h8_s1_d16_c48", "uir_r1_a5_k0_s1_e4_c48"],
        ["cn_r1_k1_s1_c96"],
    ], 128, 5, 1e-5, (2, 3, 72, 56), "gelu"),
]
# Sizes far below the output stride, each case also run on them ("small_HxW_*" tensors).
SMALL_INPUTS = [(1, 1), (5, 7)]
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": timm.layers.activations.GELU}


def build(stem, arch_def, head, classes, layer_scale, activation):
    """timm's `_gen_mobilenet_v4` model kwargs, the table and sizes as parameters."""
    return MobileNetV3(
        block_args=decode_arch_def(arch_def),
        num_classes=classes,
        head_bias=False,
        head_norm=True,
        num_features=head,
        stem_size=stem,
        fix_stem=False,
        round_chs_fn=partial(round_channels, multiplier=1.0),
        norm_layer=torch.nn.BatchNorm2d,
        act_layer=ACTIVATIONS[activation],
        layer_scale_init_value=layer_scale,
    )


def perturb(model, generator):
    make_fixtures.perturb(model, generator)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LayerScale2d):
                module.gamma.copy_(torch.rand(module.gamma.shape, generator=generator) * 0.5 + 0.25)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=Path)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"torch": torch.__version__, "timm": timm.__version__, "cases": []}
    for index, (name, stem, arch_def, head, classes, layer_scale, shape, activation) in enumerate(CASES):
        generator = torch.Generator().manual_seed(5000 + index)
        model = build(stem, arch_def, head, classes, layer_scale, activation)
        perturb(model, generator)
        model.eval()
        x = torch.randn(shape, generator=generator)
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model(x)
            # Every `feature_info` tap, as timm's `features_only` / `forward_intermediates`.
            taps = model.forward_intermediates(
                x, indices=len(model.feature_info), intermediates_only=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / f"{name}.safetensors")
        # Inputs smaller than the output stride (32): every map from stride 8 on is 1x1, keys
        # and values downsampled from one pixel.
        small = {}
        for rows, columns in SMALL_INPUTS:
            tiny = torch.randn((1, 3, rows, columns), generator=generator)
            with torch.no_grad():
                small[f"small_{rows}x{columns}_logits"] = model(tiny)
            small[f"small_{rows}x{columns}_input"] = tiny
        save_file({"input": x, "features": features, "logits": logits,
                   **{f"tap_{i}": t.contiguous() for i, t in enumerate(taps)}, **small},
                  OUT / f"{name}.io.safetensors")
        manifest["cases"].append({
            "name": name, "stem": stem, "stages": arch_def, "head": head, "num_classes": classes,
            "layer_scale": layer_scale, "input_shape": list(shape), "activation": activation,
            "params": sum(p.numel() for p in model.parameters()),
            "taps": len(taps),
        })
        print(f"{name}: {manifest['cases'][-1]['params']} params, logits max {logits.abs().max():.3f}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    full = {}
    for name in ["mobilenetv4_conv_small", "mobilenetv4_conv_medium", "mobilenetv4_conv_large",
                 "mobilenetv4_hybrid_medium", "mobilenetv4_hybrid_large"]:
        model = timm.create_model(name, pretrained=False).eval()
        # Multiply-adds of one 224x224 image: torch's FlopCounterMode (convolutions, the
        # classifier's addmm, and the attention's two matrix products), halved.
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
        full[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "macs_224": counter.get_total_flops() // 2,
            "feature_info": [[f["module"], f["num_chs"], f["reduction"]] for f in model.feature_info],
            "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
    (OUT / "full_size.json").write_text(json.dumps(full) + "\n")

    if args.full:
        args.full.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(["mobilenetv4_conv_small", "mobilenetv4_hybrid_medium",
                                      "mobilenetv4_hybrid_large"]):
            generator = torch.Generator().manual_seed(6000 + index)
            # timm's own initialization: perturbed statistics through 50 layers overflow the
            # logits' scale, and a checkpoint as a user would save one is what this checks.
            torch.manual_seed(6000 + index)
            model = timm.create_model(name, pretrained=False, num_classes=17)
            # Except where timm's initialization makes the logits vanish: its layer scales
            # start at 1e-5 and its classifier at zero. Scales around 0.1 keep the 36 residual
            # blocks well conditioned (around 0.5, timm's own float32 logits differ from its
            # float64 ones by 6e-4).
            with torch.no_grad():
                for module in model.modules():
                    if isinstance(module, LayerScale2d):
                        module.gamma.copy_(torch.rand(module.gamma.shape, generator=generator) * 0.1 + 0.05)
                model.classifier.weight.copy_(
                    torch.randn(model.classifier.weight.shape, generator=generator) * 0.05)
            model.eval()
            x = torch.randn((1, 3, 224, 192), generator=generator)
            with torch.no_grad():
                logits = model(x)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.full / f"{name}.safetensors")
            save_file({"input": x, "logits": logits}, args.full / f"{name}.io.safetensors")
            print(f"full {name} written, logits max {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
