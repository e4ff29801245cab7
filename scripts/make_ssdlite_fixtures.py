#!/usr/bin/env python3
"""Random-weight SSDLite320 fixtures from torchvision, for tests/ssdlite_parity.rs.

The MobileNetV2 case has no torchvision builder: its InvertedResidual's `conv` Sequential is
aliased as `block` so that torchvision's own `_mobilenet_extractor` splits it.

    pip install torch==2.15.0 torchvision==0.29.2 safetensors==0.8.0 pillow
    python3 scripts/make_ssdlite_fixtures.py

Each case is built the way `torchvision.models.detection.ssdlite320_mobilenet_v3_large` builds
its model (that function's body, with the backbone's width and family as parameters, since it
fixes them): BatchNorm eps 1e-3 / momentum 0.03, reduced tail, the backbone split at the C4
expansion by `_mobilenet_extractor`, `DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)`, the
SSDLite head, and the SSD defaults (score 0.001, NMS 0.55, 300 detections, 300 candidates,
mean/std 0.5). BatchNorm running statistics are randomized so that folding them matters; the
initialization differs from torchvision's training init (see `main`) so that class scores
differ enough for no exact tie to decide a suppression.

Per case it writes `<case>.safetensors` (the state_dict) and `<case>.io.safetensors`, for the
photo assets/chelsea.png read as a [0, 1] tensor: the transformed batch (first case only) (`transformed`, 320x320, [-1, 1]),
the head outputs (`cls_logits`, `bbox_regression`), the anchors (`anchors`, xyxy pixels of
the 320x320 image) and the final detections in photo pixels (`boxes`, `scores`, `labels`).
Made with torch 2.15.0, torchvision 0.29.2, safetensors 0.8.0.
"""

import json
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor
from torchvision.transforms.functional import pil_to_tensor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "ssdlite"
CASES = [
    # name, backbone builder, width, num_classes
    ("ssdlite_v3l_w050", mobilenet_v3_large, 0.5, 5),
    ("ssdlite_v3s_w075", mobilenet_v3_small, 0.75, 4),
    ("ssdlite_v2_w050", mobilenet_v2, 0.5, 3),
]


def build(backbone_fn, width_mult, num_classes):
    """torchvision's ssdlite320_mobilenet_v3_large, with the backbone as a parameter."""
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    if backbone_fn is mobilenet_v2:
        backbone = backbone_fn(weights=None, norm_layer=norm_layer, width_mult=width_mult)
        # `_mobilenet_extractor` reads V3's `block` attribute; V2 calls the same Sequential
        # `conv`. A plain attribute alias (not a registered submodule, so no duplicate keys)
        # lets torchvision's own extractor split V2 the same way.
        for layer in backbone.features:
            if isinstance(getattr(layer, "conv", None), nn.Sequential):
                object.__setattr__(layer, "block", layer.conv)
    else:
        backbone = backbone_fn(weights=None, norm_layer=norm_layer, reduced_tail=True,
                               width_mult=width_mult)
    backbone = _mobilenet_extractor(backbone, 6, norm_layer)
    size = (320, 320)
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, size)
    num_anchors = anchor_generator.num_anchors_per_location()
    defaults = {
        "score_thresh": 0.001,
        "nms_thresh": 0.55,
        "detections_per_img": 300,
        "topk_candidates": 300,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    return SSD(backbone, anchor_generator, size, num_classes,
               head=SSDLiteHead(out_channels, num_anchors, num_classes, norm_layer), **defaults)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    image = pil_to_tensor(Image.open(ROOT / "assets" / "chelsea.png").convert("RGB")).float() / 255
    manifest = []
    for index, (name, backbone_fn, width_mult, num_classes) in enumerate(CASES):
        torch.manual_seed(index)
        model = build(backbone_fn, width_mult, num_classes)
        # torchvision's detection init (N(0, 0.03), zero bias, `_normal_init`) and identity
        # BatchNorm statistics let activations vanish layer by layer in an untrained network, so
        # that every location gives the same class scores and exact ties would decide NMS. The
        # extra blocks and heads get Kaiming's init instead, the predictions are widened, and the
        # BatchNorm statistics are calibrated on the photo and noise (as a trained network's
        # would be), then perturbed so that folding them matters.
        for module in list(model.backbone.extra.modules()) + list(model.head.modules()):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
        for block in model.head.classification_head.module_list:
            block[1].weight.data.normal_(0.0, 0.05)
            block[1].bias.data.uniform_(-1.0, 1.0)
        for block in model.head.regression_head.module_list:
            block[1].weight.data.normal_(0.0, 0.05)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            images, _ = model.transform([image])
            # The photo and three noisier copies, in one batch (train-mode BatchNorm needs more
            # than one value per channel, and the last map is 1x1).
            batch = torch.cat([images.tensors + 0.5 * step * torch.randn_like(images.tensors)
                               for step in range(4)])
            model.head(list(model.backbone(batch).values()))
        for norm in norms:
            norm.momentum = 0.03
            norm.running_mean.add_(torch.empty_like(norm.running_mean).uniform_(-0.05, 0.05))
            norm.running_var.mul_(torch.empty_like(norm.running_var).uniform_(0.9, 1.1))
            norm.weight.data.uniform_(0.8, 1.2)
            norm.bias.data.uniform_(-0.1, 0.1)
        model.eval()
        with torch.no_grad():
            images, _ = model.transform([image])
            features = list(model.backbone(images.tensors).values())
            head = model.head(features)
            anchors = model.anchor_generator(images, features)[0]
            detections = model([image])[0]
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(OUT / f"{name}.safetensors"))
        # The transformed photo is the same for every case: stored with the first only.
        transformed = {"transformed": images.tensors.contiguous()} if index == 0 else {}
        save_file({
            **transformed,
            "cls_logits": head["cls_logits"].contiguous(),
            "bbox_regression": head["bbox_regression"].contiguous(),
            "anchors": anchors.contiguous(),
            "boxes": detections["boxes"].contiguous(),
            "scores": detections["scores"].contiguous(),
            "labels": detections["labels"].to(torch.int32).contiguous(),
        }, str(OUT / f"{name}.io.safetensors"))
        manifest.append({
            "name": name,
            "backbone": backbone_fn.__name__,
            "width_mult": width_mult,
            "num_classes": num_classes,
            "feature_shapes": [list(f.shape) for f in features],
            "num_anchors": anchors.shape[0],
            "distinct_scores": int(detections["scores"].unique().numel()),
            "max_score": float(detections["scores"].max()),
            "detections": detections["boxes"].shape[0],
            "params": sum(p.numel() for p in model.parameters()),
        })
        print(name, manifest[-1])
    (OUT / "manifest.json").write_text(json.dumps({"cases": manifest}, indent=1) + "\n")


if __name__ == "__main__":
    main()
