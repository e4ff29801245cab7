#!/usr/bin/env python3
"""One training step of a small MobileNetV4 (Hybrid) in PyTorch, for tests/mobilenet_v4_training.rs.

    pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0
    python3 scripts/make_v4_training_fixture.py

The model is `v4_tiny_hybrid` of scripts/make_v4_fixtures.py (timm's blocks: FusedIB, UIB of
three forms, mobile MQA with and without key/value downsampling, layer scales), perturbed the
same way, dropout 0. From its checkpoint, in training mode on one seeded batch of 4 images
(BatchNorm on batch statistics): `train_logits`, `loss` (cross entropy, mean), `grad.<key>` for
every parameter (the layer scales included), then `sgd.<key>`: every parameter and running
statistic after one `SGD(lr=0.1)` step, and `eval_logits` on a second input after it. Every
reference is computed in float64 and stored as float32; `torch_float32_error` is how far
PyTorch's own float32 run is from each (largest absolute error per tensor).

Writes tests/fixtures/v4/v4_train.safetensors (checkpoint), v4_train.record.safetensors and
v4_train.json. Made with torch 2.15.0, timm 1.0.31, safetensors 0.8.0.
"""

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "v4"
spec = importlib.util.spec_from_file_location("v4", ROOT / "scripts" / "make_v4_fixtures.py")
v4 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(v4)

LR = 0.1


def run(checkpoint, case, batch, dtype):
    _, stem, arch_def, head, classes, layer_scale, _ = case
    model = v4.build(stem, arch_def, head, classes, layer_scale)
    model.load_state_dict(checkpoint)
    model = model.to(dtype).train()
    images, labels, eval_input = batch
    logits = model(images.to(dtype))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    out = {"train_logits": logits.detach(), "loss": loss.detach().reshape(1)}
    out.update({f"grad.{k}": p.grad.detach().clone() for k, p in model.named_parameters()})
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    out.update({f"sgd.{k}": v.detach().clone() for k, v in model.state_dict().items()
                if not k.endswith("num_batches_tracked")})
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(eval_input.to(dtype))
    return out


def main():
    case = next(c for c in v4.CASES if c[0] == "v4_tiny_hybrid")
    name, stem, arch_def, head, classes, layer_scale, _ = case
    generator = torch.Generator().manual_seed(7000)
    model = v4.build(stem, arch_def, head, classes, layer_scale)
    v4.perturb(model, generator)
    checkpoint = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn((4, 3, 64, 64), generator=generator)
    labels = torch.randint(0, classes, (4,), generator=generator)
    eval_input = torch.randn((2, 3, 64, 48), generator=generator)
    batch = (images, labels, eval_input)
    reference = run(checkpoint, case, batch, torch.float64)
    float32 = run(checkpoint, case, batch, torch.float32)
    errors = {k: (float32[k].double() - reference[k]).abs().max().item() for k in reference}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, OUT / "v4_train.safetensors")
    record = {k: v.float().contiguous() for k, v in reference.items()}
    record.update({"input": images, "labels": labels.to(torch.int64), "eval_input": eval_input})
    save_file(record, OUT / "v4_train.record.safetensors")
    (OUT / "v4_train.json").write_text(json.dumps({
        "case": name, "stem": stem, "stages": arch_def, "head": head, "num_classes": classes,
        "layer_scale": layer_scale, "lr": LR, "torch_float32_error": errors,
    }, indent=1) + "\n")
    print(f"loss {reference['loss'].item():.4f}, worst torch float32 error "
          f"{max(errors.values()):.2e} ({max(errors, key=errors.get)})")


if __name__ == "__main__":
    main()
