#!/usr/bin/env python3
"""Writes the checkpoint layouts people actually have on disk, all holding the weights of
`tests/fixtures/training/v3s_w025.pth` (torchvision MobileNetV3-Small, width 0.25, 3 classes),
for `tests/wrapped_checkpoints.rs`:

- reference.pth: torchvision's reference scripts, `{"model", "optimizer", "lr_scheduler",
  "epoch", "args"}` (args an `argparse.Namespace`);
- lightning.pth: PyTorch Lightning, `{"state_dict": {"model.<key>": ...}, "epoch", ...}`;
- dataparallel.pth / dataparallel.safetensors: `nn.DataParallel`'s `module.` prefix;
- compiled.safetensors: `torch.compile`'s `_orig_mod.` prefix;
- bfloat16.pth, bfloat16.safetensors, float16.safetensors: the state dict in half precision;
- unrelated.pth: another network's weights (for the error's hint).

    python3 scripts/make_wrapped_checkpoints.py

Versions used: torch 2.15.0, safetensors 0.8.0.
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUT = ROOT / "wrapped"


def main():
    sd = torch.load(ROOT / "training" / "v3s_w025.pth", weights_only=True)
    OUT.mkdir(parents=True, exist_ok=True)
    params = [k for k, v in sd.items() if v.is_floating_point() and not k.endswith(("running_mean", "running_var"))]
    generator = torch.Generator().manual_seed(0)
    optimizer = {
        "state": {i: {"momentum_buffer": torch.randn(sd[k].shape, generator=generator)} for i, k in enumerate(params)},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 4e-5,
                          "nesterov": False, "params": list(range(len(params)))}],
    }
    torch.save({"model": sd, "optimizer": optimizer, "lr_scheduler": {"last_epoch": 3, "_step_count": 4},
                "epoch": 3, "args": argparse.Namespace(lr=0.1, model="mobilenet_v3_small")},
               OUT / "reference.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1, "global_step": 10,
                "pytorch-lightning_version": "2.4.0"}, OUT / "lightning.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, OUT / "dataparallel.pth")
    save_file({f"module.{k}": v.contiguous() for k, v in sd.items()}, OUT / "dataparallel.safetensors")
    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in sd.items()}, OUT / "compiled.safetensors")
    half = lambda dtype: {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    torch.save(half(torch.bfloat16), OUT / "bfloat16.pth")
    save_file(half(torch.bfloat16), OUT / "bfloat16.safetensors")
    save_file(half(torch.float16), OUT / "float16.safetensors")
    torch.save({"encoder.layer1.weight": torch.zeros(4, 3), "encoder.layer1.bias": torch.zeros(4),
                "decoder.head.weight": torch.zeros(2, 4)}, OUT / "unrelated.pth")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
