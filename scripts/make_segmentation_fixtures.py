#!/usr/bin/env python3
"""Random-weight LR-ASPP and DeepLabV3 fixtures from torchvision, for tests/segmentation_parity.rs.

    pip install torch==2.15.0 torchvision==0.29.2 safetensors==0.8.0 pillow
    python3 scripts/make_segmentation_fixtures.py [--full DIR]

Each case is built by torchvision's own `_lraspp_mobilenetv3` / `_deeplabv3_mobilenetv3` on
`mobilenet_v3_{large,small}(width_mult=..., dilated=True)`: the builders
`lraspp_mobilenet_v3_large` and `deeplabv3_mobilenet_v3_large` are these two calls with the
width fixed at 1.0. The small widths (and, for DeepLabV3, ASPP at 32 channels instead of 256,
made with torchvision's `ASPP(in_channels, (12, 24, 36), out_channels=32)` in its
`DeepLabHead` layout) keep the committed files small; every key and layer kind is the same.
Every parameter and BatchNorm statistic is perturbed away from its initial value
(make_fixtures.py's `perturb`), and the models run in eval mode.

Per case it writes `<case>.pth` (the state_dict) and `<case>.io.safetensors`: `input`
(normalized, non-square), `out` (torchvision's `model(x)["out"]`) and, with an auxiliary head,
`aux`. The `photo` entries are the same for assets/chelsea.png, resized with Pillow's bilinear
to 150x100 and normalized with ImageNet's mean and std (torchvision's SemanticSegmentation
transform, at a smaller size). The `small_1x1` and `small_5x7` entries (`_input`, `_out`,
`_aux`) are inputs smaller than the output stride.

`full_size.json` lists the state_dict keys and shapes and the parameter counts of the
full-size builders (21 classes; DeepLabV3 with and without `aux_loss`), so that tests can
check that torchvision's checkpoints will load.

`--full DIR` also writes full-size random-weight models (not committed: 13 and 44 MB) with
inputs and outputs to DIR, for `MOBILENET_BURN_FULL_SEGMENTATION=DIR cargo test --release
--test segmentation_parity -- --ignored`.

Made with torch 2.15.0, torchvision 0.29.2, safetensors 0.8.0, Pillow 13.0.0.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large
from torchvision.models.segmentation.deeplabv3 import ASPP, _deeplabv3_mobilenetv3
from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3
from torchvision.transforms.functional import normalize, pil_to_tensor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "segmentation"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_fixtures)
perturb = make_fixtures.perturb

# name, head, backbone builder, width, classes, aux head, ASPP channels, input shape
CASES = [
    ("lraspp_v3l_w035", "lraspp", mobilenet_v3_large, 0.35, 5, False, None, (1, 3, 67, 45)),
    ("lraspp_v3s_w050", "lraspp", mobilenet_v3_small, 0.5, 3, False, None, (2, 3, 40, 56)),
    ("deeplabv3_v3l_w035_aux", "deeplabv3", mobilenet_v3_large, 0.35, 4, True, 32, (1, 3, 57, 43)),
    ("deeplabv3_v3s_w050", "deeplabv3", mobilenet_v3_small, 0.5, 3, False, 24, (1, 3, 33, 70)),
]

# Sizes far below the output stride, each case also run on them ("small_HxW_*" tensors).
SMALL_INPUTS = [(1, 1), (5, 7)]


def build(head, backbone_fn, width, classes, aux, aspp_channels):
    backbone = backbone_fn(weights=None, width_mult=width, dilated=True)
    if head == "lraspp":
        return _lraspp_mobilenetv3(backbone, classes)
    model = _deeplabv3_mobilenetv3(backbone, classes, aux)
    if aspp_channels is not None:
        # DeepLabHead with every 256 replaced by `aspp_channels`: the same modules and keys.
        in_channels = model.classifier[0].convs[0][0].in_channels
        model.classifier = nn.Sequential(
            ASPP(in_channels, (12, 24, 36), out_channels=aspp_channels),
            nn.Conv2d(aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(),
            nn.Conv2d(aspp_channels, classes, 1),
        )
    return model


def photo():
    image = Image.open(ROOT / "assets" / "chelsea.png").convert("RGB").resize((150, 100), Image.BILINEAR)
    x = pil_to_tensor(image).float() / 255.0
    return normalize(x, MEAN, STD).unsqueeze(0).contiguous()


def run(model, x):
    with torch.no_grad():
        result = model(x)
    return {key: value.contiguous() for key, value in result.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=Path, help="also write full-size models here")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": []}
    for index, (name, head, backbone_fn, width, classes, aux, aspp, shape) in enumerate(CASES):
        generator = torch.Generator().manual_seed(3000 + index)
        model = build(head, backbone_fn, width, classes, aux, aspp)
        perturb(model, generator)
        model.eval()
        x = torch.randn(shape, generator=generator)
        tensors = {"input": x, **run(model, x)}
        tensors.update({f"photo_{k}": v for k, v in run(model, photo()).items()})
        tensors["photo_input"] = photo()
        # Inputs smaller than the output stride (16): the heads' maps (strides 8 and 16) are
        # 1x1, the dilated taps read padding alone, and the resizes upsample from one pixel.
        for rows, columns in SMALL_INPUTS:
            small = torch.randn((1, 3, rows, columns), generator=generator)
            tensors[f"small_{rows}x{columns}_input"] = small
            tensors.update({f"small_{rows}x{columns}_{k}": v for k, v in run(model, small).items()})
        torch.save(model.state_dict(), OUT / f"{name}.pth")
        save_file(tensors, OUT / f"{name}.io.safetensors")
        manifest["cases"].append({
            "name": name,
            "head": head,
            "backbone": backbone_fn.__name__,
            "width_mult": width,
            "num_classes": classes,
            "aux": aux,
            "aspp_channels": aspp,
            "input_shape": list(shape),
            "params": sum(p.numel() for p in model.parameters()),
        })
        print(f"{name}: {manifest['cases'][-1]['params']} params, out max {tensors['out'].abs().max():.3f}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1))

    full = {}
    builders = {
        "lraspp_mobilenet_v3_large": lambda: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
        "deeplabv3_mobilenet_v3_large": lambda: deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None),
        "deeplabv3_mobilenet_v3_large_aux": lambda: deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, aux_loss=True),
    }
    for key, builder in builders.items():
        model = builder()
        full[key] = {
            "params": sum(p.numel() for p in model.parameters()),
            "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
    (OUT / "full_size.json").write_text(json.dumps(full))

    if args.full:
        args.full.mkdir(parents=True, exist_ok=True)
        for index, key in enumerate(["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]):
            generator = torch.Generator().manual_seed(4000 + index)
            model = builders[key]()
            perturb(model, generator)
            model.eval()
            x = torch.randn((1, 3, 97, 130), generator=generator)
            torch.save(model.state_dict(), args.full / f"{key}.pth")
            save_file({"input": x, **run(model, x)}, args.full / f"{key}.io.safetensors")
            print(f"full {key} written")


if __name__ == "__main__":
    main()
