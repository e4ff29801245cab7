#!/usr/bin/env python3
"""timm's metadata for the MobileNetV4 ImageNet-1k checkpoints, and its evaluation transform on
the photo, for `tests/pretrained_tables.rs` and `tests/data_transforms.rs`.

    pip install torch==2.15.0 torchvision==0.29.2 timm==1.0.31 safetensors==0.8.0 pillow
    python3 scripts/make_v4_meta.py --results PATH/TO/results-imagenet.csv

Writes:
- tests/fixtures/v4/pretrained_meta.json: in timm's order (each architecture's default first), for
  every ImageNet-1k checkpoint timm 1.0.31 publishes
  for `mobilenetv4_{conv_small, conv_medium, conv_large, hybrid_medium, hybrid_large}` (the
  `.in1k` and `.in12k_ft_in1k` tags): its Hugging Face hub id, `pretrained_cfg` (input and test
  input size, crop_pct, interpolation, mean, std), the resize and crop of the transform
  `timm.data.create_transform(**resolve_data_config(...))` builds from it, the parameter count,
  and top-1 / top-5 at both sizes from timm's `results/results-imagenet.csv` (given with
  `--results`: the file of the pytorch-image-models repository, commit recorded in the JSON).
- tests/fixtures/v4/chelsea_timm.safetensors: timm's eval transform of assets/chelsea.png for
  three checkpoints (a 224 crop of a 256 bicubic resize, 256 of 269, 384 of 404 — the last an
  upscale): the resized and center-cropped 8-bit pixels (`crop_<tag>`, HWC uint8), and the first
  3000 normalized values (`values_<tag>`).

The Hugging Face files' SHA-256 is not here: this script runs without access to the hub.
"""

import argparse
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision
from PIL import Image
from safetensors.numpy import save_file
from timm.models import get_pretrained_cfg
from timm.models._registry import _model_default_cfgs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "v4"
PHOTO = ROOT / "assets" / "chelsea.png"
ARCHITECTURES = [
    "mobilenetv4_conv_small",
    "mobilenetv4_conv_medium",
    "mobilenetv4_conv_large",
    "mobilenetv4_hybrid_medium",
    "mobilenetv4_hybrid_large",
]
PHOTO_CASES = [
    "mobilenetv4_conv_small.e2400_r224_in1k",
    "mobilenetv4_conv_medium.e500_r256_in1k",
    "mobilenetv4_hybrid_large.e600_r384_in1k",
]


def transform_of(cfg, test):
    """timm's eval transform for `cfg` (at its test size if `test`), and its resize and crop."""
    cfg = dict(cfg)
    if test:
        cfg["input_size"] = cfg["test_input_size"]
        cfg["crop_pct"] = cfg["test_crop_pct"]
    config = timm.data.resolve_data_config({}, pretrained_cfg=cfg)
    transform = timm.data.create_transform(**config)
    resize, crop = transform.transforms[0], transform.transforms[1]
    assert isinstance(resize, torchvision.transforms.Resize), transform
    assert isinstance(crop, torchvision.transforms.CenterCrop), transform
    assert isinstance(resize.size, int) or len(resize.size) == 1, resize
    size = resize.size if isinstance(resize.size, int) else resize.size[0]
    return transform, {
        "input_size": config["input_size"][1],
        "crop_pct": config["crop_pct"],
        "interpolation": config["interpolation"],
        "mean": list(config["mean"]),
        "std": list(config["std"]),
        "resize_size": size,
        "crop_size": list(crop.size)[0],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=Path, required=True,
                        help="results-imagenet.csv of huggingface/pytorch-image-models")
    parser.add_argument("--results-commit", default="",
                        help="the commit of pytorch-image-models the CSV is from")
    args = parser.parse_args()
    scores = {}
    with open(args.results) as f:
        for row in csv.DictReader(f):
            scores[(row["model"], int(row["img_size"]))] = (float(row["top1"]), float(row["top5"]))

    entries = []
    # timm's own order of each architecture's tags: the first is what `pretrained=True` loads.
    names = [f"{architecture}.{tag}" for architecture in ARCHITECTURES
             for tag in _model_default_cfgs[architecture].tags]
    for name in names:
        architecture, tag = name.split(".", 1)
        if not tag.endswith("in1k"):
            continue
        cfg = get_pretrained_cfg(name).to_dict()
        model = timm.create_model(architecture, pretrained=False)
        _, transform = transform_of(cfg, test=False)
        # Some checkpoints have no separate test size (no entry of their own in the CSV either).
        test_transform = transform_of(cfg, test=True)[1] if cfg.get("test_input_size") else None
        size = transform["input_size"]
        test_scores = scores[(name, test_transform["input_size"])] if test_transform else (None, None)
        entries.append({
            "name": name,
            "architecture": architecture,
            "tag": tag,
            "default": tag == _model_default_cfgs[architecture].tags[0],
            "hf_hub_id": cfg["hf_hub_id"],
            "num_classes": cfg["num_classes"],
            "license": cfg.get("license"),
            "params": sum(p.numel() for p in model.parameters()),
            "transform": transform,
            "test_transform": test_transform,
            "top1": scores[(name, size)][0],
            "top5": scores[(name, size)][1],
            "test_top1": test_scores[0],
            "test_top5": test_scores[1],
        })
        print(name, transform["resize_size"], transform["crop_size"], scores[(name, size)])
    meta = {
        "timm": timm.__version__,
        "torch": torch.__version__,
        "results_csv_commit": args.results_commit,
        "entries": entries,
    }
    (OUT / "pretrained_meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    image = Image.open(PHOTO).convert("RGB")
    tensors = {}
    for name in PHOTO_CASES:
        transform, _ = transform_of(get_pretrained_cfg(name).to_dict(), test=False)
        resize, crop = transform.transforms[0], transform.transforms[1]
        tag = name.replace("mobilenetv4_", "").replace(".", "_")
        tensors[f"crop_{tag}"] = np.asarray(crop(resize(image)), dtype=np.uint8).copy()
        tensors[f"values_{tag}"] = transform(image).numpy().reshape(-1)[:3000].copy()
    save_file(tensors, OUT / "chelsea_timm.safetensors")
    print({k: v.shape for k, v in tensors.items()})


if __name__ == "__main__":
    main()
