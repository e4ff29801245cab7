#!/usr/bin/env python3
"""Generates the torchvision reference fixtures under tests/fixtures/.

Each case builds a torchvision MobileNet with random weights, perturbed so that nothing is
tested at a trivial value: BatchNorm weights, biases and running statistics drawn away from
1/0, every bias non-zero. It saves the model's state_dict (zip .pth, legacy .pth or
.safetensors) and a `<case>.io.safetensors` file with a seeded input and torchvision's logits and
`features` output in eval mode. `manifest.json` lists the cases with their options.

`full_size_shapes.json` lists the state_dict keys and shapes of the full-size 1000-class models
and their parameter counts, so that tests can check that real ImageNet checkpoints will load.

Run from the repository root:

    python3 -m venv /tmp/fixtures-env
    /tmp/fixtures-env/bin/pip install torch==2.15.0 torchvision==0.29.2 safetensors==0.8.0
    /tmp/fixtures-env/bin/python scripts/make_fixtures.py

The committed fixtures were made with torch 2.15.0 and torchvision 0.29.2 (CPU).
"""

import json
import pathlib

import torch
import torchvision
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# name, builder, kwargs, input shape (batch, channels, height, width), checkpoint format
CASES = [
    ("v2_w035", "mobilenet_v2", dict(width_mult=0.35, num_classes=10), (2, 3, 67, 61), "pth"),
    ("v2_w025_legacy", "mobilenet_v2", dict(width_mult=0.25, num_classes=7), (1, 3, 32, 40), "legacy"),
    ("v3l_w035", "mobilenet_v3_large", dict(width_mult=0.35, num_classes=10), (1, 3, 96, 80), "pth"),
    (
        "v3l_w050_reduced_dilated",
        "mobilenet_v3_large",
        dict(width_mult=0.5, num_classes=5, reduced_tail=True, dilated=True),
        (2, 3, 65, 63),
        "pth",
    ),
    (
        "v3s_w050_dilated_legacy",
        "mobilenet_v3_small",
        dict(width_mult=0.5, num_classes=10, dilated=True),
        (1, 3, 57, 71),
        "legacy",
    ),
    (
        "v3s_w125_reduced",
        "mobilenet_v3_small",
        dict(width_mult=1.25, num_classes=10, reduced_tail=True),
        (1, 3, 33, 47),
        "safetensors",
    ),
    ("v3s_w050_reduced", "mobilenet_v3_small", dict(width_mult=0.5, num_classes=3, reduced_tail=True), (3, 3, 50, 50), "pth"),
]

FULL_SIZE = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Moves every parameter and BatchNorm statistic away from its trivial initial value."""

    def normal(tensor, std):
        return torch.randn(tensor.shape, generator=generator) * std

    def uniform(tensor, low, high):
        return torch.rand(tensor.shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight, 0.5, 1.5))
                module.bias.copy_(normal(module.bias, 0.2))
                module.running_mean.copy_(normal(module.running_mean, 0.2))
                module.running_var.copy_(uniform(module.running_var, 0.5, 2.0))
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight, (2.0 / fan_in) ** 0.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias, 0.2))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cases": [],
    }
    for index, (name, builder, kwargs, input_shape, fmt) in enumerate(CASES):
        generator = torch.Generator().manual_seed(1000 + index)
        model = getattr(torchvision.models, builder)(**kwargs)
        perturb(model, generator)
        model.eval()
        image = torch.randn(input_shape, generator=generator)
        with torch.no_grad():
            features = model.features(image)
            logits = model(image)

        state_dict = model.state_dict()
        if fmt == "safetensors":
            checkpoint = f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in state_dict.items()}, OUT / checkpoint)
        else:
            checkpoint = f"{name}.pth"
            torch.save(state_dict, OUT / checkpoint, _use_new_zipfile_serialization=(fmt == "pth"))
        save_file(
            {"input": image, "features": features, "logits": logits},
            OUT / f"{name}.io.safetensors",
        )
        manifest["cases"].append(
            {
                "name": name,
                "model": builder,
                "width_mult": kwargs.get("width_mult", 1.0),
                "num_classes": kwargs.get("num_classes", 1000),
                "reduced_tail": kwargs.get("reduced_tail", False),
                "dilated": kwargs.get("dilated", False),
                "checkpoint": checkpoint,
                "format": fmt,
                "input_shape": list(input_shape),
                "params": sum(p.numel() for p in model.parameters()),
            }
        )
        print(f"{name}: {manifest['cases'][-1]['params']} params, logits max {logits.abs().max():.3f}")

    with open(OUT / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)

    full_size = {}
    for builder in FULL_SIZE:
        model = getattr(torchvision.models, builder)()
        full_size[builder] = {
            "params": sum(p.numel() for p in model.parameters()),
            "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
        print(f"{builder}: {full_size[builder]['params']} params")
    with open(OUT / "full_size_shapes.json", "w") as f:
        json.dump(full_size, f, indent=0)


if __name__ == "__main__":
    main()
