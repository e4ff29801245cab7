#!/usr/bin/env python3
"""Checks, on the PyTorch side, a model saved by mobilenet-burn's `save_torchvision`: torchvision
builds the architecture, `load_state_dict(..., strict=True)` loads the file, and its eval logits
on the input stored beside it must equal the logits mobilenet-burn computed (within 1e-4
relative to their scale).

    cargo run --release --example transfer -- --model v3s --width 0.5 --classes 3 --out /tmp/ft.safetensors
    python3 scripts/check_save_torchvision.py /tmp/ft.safetensors --model mobilenet_v3_small --width 0.5 --classes 3

`examples/transfer.rs` writes `<out>.check.safetensors` (an input and our logits on it).
Verified with torch 2.15.0 and torchvision 0.29.2.
"""

import argparse
import pathlib

import torch
import torchvision
from safetensors.torch import load_file


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_file")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=3)
    args = parser.parse_args()

    model = getattr(torchvision.models, args.model)(width_mult=args.width, num_classes=args.classes)
    state_dict = load_file(args.model_file)
    result = model.load_state_dict(state_dict, strict=True)
    print(f"load_state_dict(strict=True): {result}")
    model.eval()

    check = load_file(str(pathlib.Path(args.model_file).with_suffix(".check.safetensors")))
    with torch.no_grad():
        logits = model(check["input"])
    diff = (logits - check["logits"]).abs().max().item()
    scale = max(check["logits"].abs().max().item(), 1.0)
    print(f"logits: max |torchvision - mobilenet-burn| = {diff:.3e} (scale {scale:.3f})")
    if diff > 1e-4 * scale:
        raise SystemExit("logits differ")
    print("ok")


if __name__ == "__main__":
    main()
