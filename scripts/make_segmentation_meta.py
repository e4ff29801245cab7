#!/usr/bin/env python3
"""torchvision's segmentation weights metadata and evaluation transform, for the `pretrained`
feature.

Writes:
- tests/fixtures/segmentation/weights_meta.json: the `LRASPP_MobileNet_V3_Large_Weights` and
  `DeepLabV3_MobileNet_V3_Large_Weights` entries (URL, hash prefix, mIoU, pixel accuracy,
  parameter count, GFLOPS, file size, categories, the transform's resize size, mean and std),
  compared with the Rust tables by tests/pretrained_tables.rs.
- tests/fixtures/segmentation/chelsea_resized.png: assets/chelsea.png after the transform's
  resize step (`F.resize(image, [520])` on the PIL image: Pillow's bilinear, the shorter side
  to 520), and chelsea_transform.json: the transform's output shape and 2,000 of its values
  at seeded positions (`weights.transforms()(image)`, the whole transform), for
  tests/segmentation_transform.rs.

    pip install torch==2.15.0 torchvision==0.29.2 pillow==13.0.0
    python3 scripts/make_segmentation_meta.py
"""

import json
import pathlib

import torch
import torchvision
from PIL import Image
from torchvision.models.segmentation import (
    DeepLabV3_MobileNet_V3_Large_Weights,
    LRASPP_MobileNet_V3_Large_Weights,
)
from torchvision.transforms import functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "segmentation"


def main() -> None:
    meta = {"torchvision": torchvision.__version__, "enums": {}}
    for enum in [LRASPP_MobileNet_V3_Large_Weights, DeepLabV3_MobileNet_V3_Large_Weights]:
        entries = []
        for weights in enum:
            file_name = weights.url.rsplit("/", 1)[1]
            transform = weights.transforms()
            metrics = weights.meta["_metrics"]["COCO-val2017-VOC-labels"]
            entries.append({
                "name": weights.name,
                "url": weights.url,
                "sha256_prefix": file_name.rsplit("-", 1)[1].split(".")[0],
                "num_params": weights.meta["num_params"],
                "miou": metrics["miou"],
                "pixel_acc": metrics["pixel_acc"],
                # torchvision's "GFLOPS": multiply-adds of one 520x520 image, in billions.
                "gflops": weights.meta["_ops"],
                "file_size_mb": weights.meta["_file_size"],
                "categories": weights.meta["categories"],
                "resize_size": transform.resize_size,
                "mean": list(transform.mean),
                "std": list(transform.std),
                "interpolation": str(transform.interpolation),
                "antialias": transform.antialias,
            })
        meta["enums"][enum.__name__] = {"default": enum.DEFAULT.name, "entries": entries}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "weights_meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    image = Image.open(ROOT / "assets" / "chelsea.png").convert("RGB")
    transform = LRASPP_MobileNet_V3_Large_Weights.DEFAULT.transforms()
    resized = F.resize(image, transform.resize_size, interpolation=transform.interpolation,
                       antialias=transform.antialias)
    resized.save(OUT / "chelsea_resized.png")
    output = transform(image)
    # The resize step is the whole difference from a plain normalization.
    again = F.normalize(F.pil_to_tensor(resized).float() / 255.0, transform.mean, transform.std)
    assert torch.equal(output, again)
    generator = torch.Generator().manual_seed(520)
    positions = torch.randint(0, output.numel(), (2000,), generator=generator)
    (OUT / "chelsea_transform.json").write_text(json.dumps({
        "shape": list(output.shape),
        "positions": positions.tolist(),
        "values": output.flatten()[positions].tolist(),
    }) + "\n")
    print(f"transform output {list(output.shape)}")


if __name__ == "__main__":
    main()
