#!/usr/bin/env python3
"""Records torchvision's training-transform sampling: for each case, every draw that
`RandomResizedCrop.get_params`, `RandomHorizontalFlip` and `RandomErasing` make from torch's
generator (kind, arguments, value, in order) and what they chose with them. The Rust tests
(`tests/data_transforms.rs`) replay the same draws and must choose the same crop box, flip and
erased region.

    python3 scripts/make_transform_fixtures.py   # writes tests/fixtures/transforms/draws.json

Versions used: torch 2.15.0, torchvision 0.29.2.
"""

import json
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transforms" / "draws.json"

record = []
_uniform = torch.Tensor.uniform_
_randint = torch.randint
_rand = torch.rand


def uniform_(self, a=0.0, b=1.0, *, generator=None):
    out = _uniform(self, a, b, generator=generator)
    record.append({"kind": "uniform", "low": float(a), "high": float(b), "value": out.item()})
    return out


def randint(*args, **kwargs):
    out = _randint(*args, **kwargs)
    low, high = (0, args[0]) if len(args) == 1 or isinstance(args[1], (tuple, list)) else (args[0], args[1])
    record.append({"kind": "randint", "low": int(low), "high": int(high), "value": int(out.item())})
    return out


def rand(*args, **kwargs):
    out = _rand(*args, **kwargs)
    record.append({"kind": "rand", "value": out.item()})
    return out


torch.Tensor.uniform_ = uniform_
torch.randint = randint
torch.rand = rand


def crop_cases():
    sizes = [(500, 375), (375, 500), (224, 224), (64, 48), (20, 300), (300, 20), (7, 5), (1000, 30)]
    settings = [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (0.2, 0.3)), ((0.08, 1.0), (3.0, 4.0))]
    cases = []
    for index in range(64):
        width, height = sizes[index % len(sizes)]
        scale, ratio = settings[(index // len(sizes)) % len(settings)]
        torch.manual_seed(index)
        record.clear()
        image = torch.zeros(3, height, width)
        top, left, h, w = T.RandomResizedCrop.get_params(image, list(scale), list(ratio))
        cases.append({"width": width, "height": height, "scale": scale, "ratio": ratio,
                      "draws": list(record), "box": [top, left, h, w]})
    return cases


def flip_cases():
    cases = []
    flip = T.RandomHorizontalFlip(0.5)
    for index in range(16):
        torch.manual_seed(100 + index)
        record.clear()
        image = torch.arange(6.0).reshape(1, 2, 3)
        flipped = not torch.equal(flip(image), image)
        cases.append({"p": 0.5, "draws": list(record), "flipped": flipped})
    return cases


def erasing_cases():
    shapes = [(3, 224, 224), (3, 10, 10), (3, 4, 40), (1, 2, 2), (3, 31, 17)]
    cases = []
    for index in range(40):
        channels, height, width = shapes[index % len(shapes)]
        p = 1.0 if index % 2 == 0 else 0.5
        erasing = T.RandomErasing(p=p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)
        torch.manual_seed(200 + index)
        record.clear()
        image = torch.ones(channels, height, width)
        out = erasing(image)
        zeros = (out[0] == 0).nonzero()
        box = None
        if len(zeros):
            top, left = zeros.min(0).values.tolist()
            bottom, right = zeros.max(0).values.tolist()
            box = [top, left, bottom - top + 1, right - left + 1]
        cases.append({"shape": [channels, height, width], "p": p, "draws": list(record), "box": box})
    return cases


IMAGE_TREE = [
    "a_cats/10.png", "a_cats/9.png", "a_cats/x.txt", "a_cats/z/1.png", "a_cats/a b/2.JPG",
    "a_cats/a b/c/3.Png", "a_cats/a_b/4.bmp", "b_dogs/sub/deeper/3.webp", "b_dogs/\u00c4.png",
    "b_dogs/B.tiff", "b_dogs/a.TIF", "b_dogs/noext", "C_upper/k.jpeg", "C_upper/k.jpg.bak",
    "C_upper/.hidden.png", "d_more/x.ppm", "d_more/y.pgm", "d_more/z.gif",
]


def image_folder_case():
    """torchvision's ImageFolder order on IMAGE_TREE (empty files: nothing is decoded)."""
    import tempfile
    from torchvision.datasets import ImageFolder
    with tempfile.TemporaryDirectory() as root:
        for relative in IMAGE_TREE:
            path = Path(root) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        dataset = ImageFolder(root, loader=lambda path: path)
        samples = [[str(Path(path).relative_to(root)), label] for path, label in dataset.samples]
        return {"tree": IMAGE_TREE, "classes": dataset.classes, "samples": samples}


def main():
    fixtures = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "random_resized_crop": crop_cases(), "horizontal_flip": flip_cases(),
                "random_erasing": erasing_cases(), "image_folder": image_folder_case()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixtures, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
