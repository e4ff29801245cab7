#!/usr/bin/env python3
"""Times one training step of mobilenet-burn beside PyTorch eager's, same models, batch, image
size and threads, in one run, and prints a markdown table: images/s, peak memory, and ratios.

    python3 scripts/compare_training.py [--threads 2] [--batch 32] [--size 224] [--steps 3]
                                        [--rounds 3] [--models v2,v3l,v3s[,v4s,v4m]]
                                        [--backends flex,ndarray]

A step is forward in training mode, cross entropy, backward, and SGD (momentum 0.9, weight
decay 1e-4), on torchvision's architecture with random weights and dropout 0.2. Each model runs
in its own process, so peak resident memory (VmHWM) is that model's. Ours is
`examples/train_step.rs`, built with `cargo build --release --all-features --example
train_step` unless --no-build, run with RAYON_NUM_THREADS=threads; PyTorch with
torch.set_num_threads(threads). Each figure is the median of --steps steps after one warm-up,
the best of --rounds rounds (each round runs every model on every runtime in turn, so a noisy
moment costs each runtime alike); peak memory is the largest of the rounds.

`v4s` and `v4m` are timm's MobileNetV4 Conv-Small and Conv-Medium (timm's default dropout, 0).

Needs (pip): torch, torchvision (and timm for v4s / v4m). Versions used for docs/training.md:
torch 2.15.0, torchvision 0.29.2, timm 1.0.31.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"v2": "mobilenet_v2", "v3l": "mobilenet_v3_large", "v3s": "mobilenet_v3_small",
          "v4s": "mobilenetv4_conv_small", "v4m": "mobilenetv4_conv_medium"}

TORCH_STEP = r"""
import json, statistics, sys, time, torch, torchvision
model_name, batch, size, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
if model_name.startswith("mobilenetv4"):
    import timm
    model = timm.create_model(model_name)
else:
    model = getattr(torchvision.models, model_name)()
model.train()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
x = torch.randn(batch, 3, size, size)
y = torch.arange(batch) * 37 % 1000
times = []
for index in range(1 + steps):
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    elapsed = time.perf_counter() - start
    print(f"{model_name} step {index}: {elapsed:.3f} s", file=sys.stderr)
    if index >= 1:
        times.append(elapsed)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
step_s = statistics.median(times)
print(json.dumps({"step_s": step_s, "images_per_s": batch / step_s, "peak_rss_mib": peak / 1024}))
"""


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{text}")


def torch_step(model, args):
    command = [sys.executable, "-c", TORCH_STEP, MODELS[model], str(args.batch), str(args.size), str(args.steps), str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return last_json_line(result.stdout)


def ours_step(model, backend, args):
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "examples" / "train_step"
    command = [str(binary), "--model", model, "--backend", backend, "--batch", str(args.batch), "--size", str(args.size), "--steps", str(args.steps)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return last_json_line(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="v2,v3l,v3s")
    parser.add_argument("--backends", default="flex,ndarray")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--all-features", "--example", "train_step"], cwd=ROOT, check=True)

    import torch  # noqa: F401  (fail early, before the long runs, if it is missing)

    backends = args.backends.split(",")
    models = args.models.split(",")
    best = {}

    def keep(model, runtime, result):
        previous = best.get((model, runtime))
        if previous is None:
            best[(model, runtime)] = dict(result)
        else:
            if result["images_per_s"] > previous["images_per_s"]:
                previous["images_per_s"] = result["images_per_s"]
            previous["peak_rss_mib"] = max(previous["peak_rss_mib"], result["peak_rss_mib"])

    for round_index in range(args.rounds):
        for model in models:
            keep(model, "torch", torch_step(model, args))
            for backend in backends:
                keep(model, backend, ours_step(model, backend, args))
            print(json.dumps({"round": round_index, "model": model,
                              **{runtime: best[(model, runtime)]["images_per_s"] for runtime in ["torch", *backends]}}),
                  file=sys.stderr)
    rows = [{"model": model, "torch": best[(model, "torch")], **{b: best[(model, b)] for b in backends}} for model in models]

    print(f"\nTraining step, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads "
          f"(median of {args.steps} steps, best of {args.rounds} rounds): images/s and peak RSS (MiB)\n")
    header = "| model | PyTorch eager |" + "".join(f" {b} | {b} / PyTorch speed | {b} / PyTorch memory |" for b in backends)
    print(header)
    print("|---|---:|" + "---:|---:|---:|" * len(backends))
    for row in rows:
        reference = row["torch"]
        cells = [f"{reference['images_per_s']:.2f} img/s, {reference['peak_rss_mib']:.0f} MiB"]
        for backend in backends:
            ours = row[backend]
            cells.append(f"{ours['images_per_s']:.2f} img/s, {ours['peak_rss_mib']:.0f} MiB")
            cells.append(f"{ours['images_per_s'] / reference['images_per_s']:.2f}x")
            cells.append(f"{ours['peak_rss_mib'] / reference['peak_rss_mib']:.2f}x")
        print(f"| {row['model']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
