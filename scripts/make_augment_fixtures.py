#!/usr/bin/env python3
"""Records torchvision's automatic augmentations and batch mixing for the Rust tests
(`tests/data_augment.rs`):

- every operation of `_apply_op` on PIL images (as the reference recipe runs them), at fixed
  magnitudes, with NEAREST and BILINEAR sampling, on two small 8-bit images;
- `TrivialAugmentWide` and `AutoAugment(IMAGENET)` end to end under seeds: every draw made from
  torch's generator (kind, arguments, value), the operations chosen, and the output image;
- `MixUp`, `CutMix` and `RandomChoice` between them (transforms.v2) on a small batch: draws,
  mixed images and soft targets.

    python3 scripts/make_augment_fixtures.py   # writes tests/fixtures/augment/{cases.json,images.bin}

Images are raw RGB bytes in images.bin at the offsets cases.json gives.
Versions used: torch 2.15.0, torchvision 0.29.2, Pillow 13.0.0, numpy.
"""

import json
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode, autoaugment
from torchvision.transforms import v2

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "augment"

record = []
_uniform, _randint, _rand, _multinomial = torch.Tensor.uniform_, torch.randint, torch.rand, torch.multinomial
_beta_sample = torch.distributions.Beta.sample


def randint(*args, **kwargs):
    out = _randint(*args, **kwargs)
    low, high = (0, args[0]) if len(args) == 1 or isinstance(args[1], (tuple, list)) else (args[0], args[1])
    for value in out.flatten().tolist():
        record.append({"kind": "randint", "low": int(low), "high": int(high), "value": int(value)})
    return out


def rand(*args, **kwargs):
    out = _rand(*args, **kwargs)
    for value in out.flatten().tolist():
        record.append({"kind": "rand", "value": value})
    return out


def multinomial(p, n, *args, **kwargs):
    out = _multinomial(p, n, *args, **kwargs)
    record.append({"kind": "choice", "n": int(p.numel()), "value": int(out.item())})
    return out


def beta_sample(self, shape=torch.Size()):
    out = _beta_sample(self, shape)
    record.append({"kind": "beta", "alpha": float(self.concentration1.flatten()[0]), "value": float(out.flatten()[0])})
    return out


torch.randint, torch.rand, torch.multinomial = randint, rand, multinomial
torch.distributions.Beta.sample = beta_sample

applied = []
_apply_op = autoaugment._apply_op


def apply_op(img, op_name, magnitude, interpolation, fill):
    applied.append([op_name, magnitude])
    return _apply_op(img, op_name, magnitude, interpolation, fill)


autoaugment._apply_op = apply_op

blob = bytearray()


def store(image: Image.Image):
    data = np.asarray(image.convert("RGB"), dtype=np.uint8)
    offset = len(blob)
    blob.extend(data.tobytes())
    return {"offset": offset, "width": image.width, "height": image.height}


def test_images():
    rng = np.random.default_rng(7)
    # A: 23x17, gradients plus noise in a narrow range (autocontrast and equalize have work).
    y, x = np.mgrid[0:17, 0:23]
    base = np.stack([40 + 6 * x, 50 + 8 * y, 120 + 3 * (x - y)], axis=-1).astype(np.float64)
    a = np.clip(base + rng.integers(-25, 26, base.shape), 30, 215).astype(np.uint8)
    # B: 16x16 square, full range noise with a bright block (exact 90-degree rotations).
    b = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    b[2:6, 9:14] = 250
    return {"a": Image.fromarray(a, "RGB"), "b": Image.fromarray(b, "RGB")}


OPS = {
    "Identity": [0.0], "ShearX": [0.3, -0.99, 0.066], "ShearY": [0.3, -0.5],
    "TranslateX": [5.0, -10.666666984558105, 32.0], "TranslateY": [-7.0, 21.333332061767578],
    "Rotate": [30.0, -13.5, 90.0, -90.0, 180.0, 135.0, 0.0, -0.0, 450.0],
    "Brightness": [0.5, -0.66, 0.99, -0.99], "Color": [0.9, -0.33, -0.99],
    "Contrast": [0.6, -0.8, 0.99], "Sharpness": [0.9, -0.99, 0.33],
    "Posterize": [2.0, 4.0, 7.0, 8.0], "Solarize": [255.0, 127.5, 85.0, 0.0],
    "AutoContrast": [0.0], "Equalize": [0.0], "Invert": [0.0],
}
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def op_cases(images):
    cases = []
    for name, image in images.items():
        for op, magnitudes in OPS.items():
            modes = [InterpolationMode.NEAREST, InterpolationMode.BILINEAR] if op in GEOMETRIC else [InterpolationMode.NEAREST]
            for magnitude in magnitudes:
                for mode in modes:
                    out = _apply_op(image, op, magnitude, interpolation=mode, fill=None)
                    cases.append({"image": name, "op": op, "magnitude": magnitude,
                                  "interpolation": mode.value, "output": store(out)})
    return cases


def policy_cases(images):
    cases = []
    policies = {
        "ta_wide": lambda mode: autoaugment.TrivialAugmentWide(interpolation=mode),
        "imagenet": lambda mode: autoaugment.AutoAugment(autoaugment.AutoAugmentPolicy.IMAGENET, interpolation=mode),
    }
    for policy, make in policies.items():
        for index in range(48):
            mode = InterpolationMode.BILINEAR if index % 2 else InterpolationMode.NEAREST
            name = "a" if index % 3 else "b"
            torch.manual_seed(1000 + index)
            record.clear()
            applied.clear()
            out = make(mode)(images[name])
            cases.append({"policy": policy, "image": name, "interpolation": mode.value,
                          "draws": list(record), "ops": list(applied), "output": store(out)})
    return cases


def magnitude_tables():
    ta = autoaugment.TrivialAugmentWide()._augmentation_space(31)
    aa = autoaugment.AutoAugment()._augmentation_space(10, (17, 23))
    table = lambda space: {op: [float(v) for v in mags.flatten().tolist()] for op, (mags, _) in space.items() if mags.ndim > 0}
    return {"ta_wide": table(ta), "imagenet_23x17": table(aa)}


def mix_cases():
    cases = []
    generator = torch.Generator().manual_seed(5)
    for index in range(24):
        kind = ["mixup", "cutmix", "choice"][index % 3]
        alpha = [1.0, 0.2, 0.8][index % 3 if index < 12 else (index + 1) % 3]
        n, channels, height, width = [(4, 3, 6, 5), (3, 2, 8, 8), (5, 1, 7, 3)][index % 3]
        classes = 4
        images = torch.rand(n, channels, height, width, generator=generator)
        labels = torch.randint(0, classes, (n,), generator=generator)
        record.clear()
        if kind == "mixup":
            transform = v2.MixUp(alpha=alpha, num_classes=classes)
        elif kind == "cutmix":
            transform = v2.CutMix(alpha=alpha, num_classes=classes)
        else:
            transform = v2.RandomChoice([v2.MixUp(alpha=alpha, num_classes=classes), v2.CutMix(alpha=alpha, num_classes=classes)])
        torch.manual_seed(2000 + index)
        # Inputs were drawn before `record.clear()` from their own generator (not recorded).
        record.clear()
        out_images, targets = transform(images, labels)
        cases.append({"kind": kind, "alpha": alpha, "classes": classes, "shape": [n, channels, height, width],
                      "images": images.flatten().tolist(), "labels": labels.tolist(), "draws": list(record),
                      "mixed": out_images.flatten().tolist(), "targets": targets.flatten().tolist()})
    return cases


def main():
    images = test_images()
    fixtures = {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                "images": {name: store(image) for name, image in images.items()},
                "ops": op_cases(images), "policies": policy_cases(images),
                "magnitudes": magnitude_tables(), "mix": mix_cases()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "images.bin").write_bytes(bytes(blob))
    (OUT / "cases.json").write_text(json.dumps(fixtures) + "\n")
    print(f"wrote {OUT} ({len(blob)} bytes of images, {len(fixtures['ops'])} op cases)")


if __name__ == "__main__":
    main()
