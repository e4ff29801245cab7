#!/usr/bin/env python3
"""Writes tests/fixtures/timm_feature_info.json: timm's feature taps (channels, reduction,
module) and the tapped tensors' shapes on a 1x3x224x224 input, for the models this crate
builds, so that tests/feature_taps.rs can compare without Python.

    pip install timm==1.0.31 torch==2.15.0
    python3 scripts/make_feature_info_fixture.py

Made with timm 1.0.31 and torch 2.15.0. `mobilenetv3_small_100` with
`feature_location="expansion"` raises KeyError('hook_type') in timm 1.0.31 (its stride-2 tap is
the stem, which has no hook type); that case is recorded with its error instead of taps.
"""

import json
from pathlib import Path

import timm
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "timm_feature_info.json"
CASES = [
    # (timm model, ours, feature_location, output_stride)
    ("mobilenetv3_large_100", "v3_large", "", 32),
    ("mobilenetv3_large_100", "v3_large", "expansion", 32),
    ("mobilenetv3_large_100", "v3_large", "", 16),
    ("mobilenetv3_large_100", "v3_large", "", 8),
    ("mobilenetv3_small_100", "v3_small", "", 32),
    ("mobilenetv3_small_100", "v3_small", "expansion", 32),
    ("mobilenetv3_small_100", "v3_small", "", 16),
    ("mobilenetv3_small_100", "v3_small", "", 8),
    ("mobilenetv2_100", "v2", "", 32),
    ("mobilenetv2_100", "v2", "expansion", 32),
]


def main():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    cases = []
    for timm_name, ours, location, output_stride in CASES:
        case = {"timm": timm_name, "model": ours, "location": location or "block_output",
                "output_stride": output_stride}
        try:
            # `feature_location=""` is not the default path in timm 1.0.31: leave it out.
            extra = {"feature_location": location} if location else {}
            model = timm.create_model(timm_name, pretrained=False, features_only=True,
                                      output_stride=output_stride, **extra)
        except Exception as error:  # noqa: BLE001 - recorded for the test to skip knowingly
            case["error"] = f"{type(error).__name__}: {error}"
            cases.append(case)
            continue
        model.eval()
        with torch.no_grad():
            outputs = model(x)
        case["taps"] = [
            {"module": info["module"], "channels": info["num_chs"],
             "reduction": info["reduction"], "shape": list(output.shape)}
            for info, output in zip(model.feature_info.get_dicts(), outputs)
        ]
        cases.append(case)
    OUT.write_text(json.dumps({"timm": timm.__version__, "torch": torch.__version__,
                               "input_shape": list(x.shape), "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
