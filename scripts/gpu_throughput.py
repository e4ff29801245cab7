#!/usr/bin/env python3
"""Throughput on a GPU: mobilenet-burn on wgpu beside PyTorch on CUDA, same models, same batch.

    python3 scripts/gpu_throughput.py --ours PATH/TO/latency [--models v2,v3l,v3s]
                                      [--batches 64,256] [--runs 20] [--warmup 5]
                                      [--json results.json] [--check]

Ours is `examples/latency.rs` built with the `wgpu` feature (`cargo build --release
--all-features --example latency`) and run with `--backend wgpu`: BatchNorm folded (`fuse()`),
f32, each forward timed until its logits are read back. PyTorch is torchvision's model in eval
mode under `torch.inference_mode()`, f32, `cudnn.benchmark` on, timed with CUDA events around
each forward, twice: with TF32 off (strict f32, as ours computes) and with PyTorch's default
for convolutions (cuDNN may use TF32 tensor cores). Every model has random weights: speed does
not depend on their values. Each cell is the median of `--runs` forwards after `--warmup`
(during which cuDNN and burn's autotuner pick their kernels), as images per second.

`--check` first verifies that ours computes what torchvision does on that GPU, at the largest
batch: for each model, torchvision's with seeded random weights and BatchNorm statistics moved
off their defaults (so that folding them matters) is saved as a checkpoint; ours loads it
(`latency --weights`), runs the same input (`--input`) and writes its logits (`--save-output`),
which are compared with PyTorch's (TF32 off): the largest difference relative to the largest
logit, and whether every image's top-1 class agrees.

Needs torch and torchvision with CUDA. Results are printed as they come and written to
`--json` after each one, so that a run cut short keeps what it measured.

Versions used for docs/performance.md: torch 2.11.0+cu130, torchvision 0.26.0, NVIDIA driver
580.159 (the GPU machine's image).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

TORCHVISION = {"v2": "mobilenet_v2", "v3l": "mobilenet_v3_large", "v3s": "mobilenet_v3_small"}


def torch_throughput(name, batch, size, runs, warmup, tf32, device):
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    model = getattr(torchvision.models, TORCHVISION[name])().eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                torch.cuda.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                begin = time.perf_counter()
                model(x)
                elapsed = (time.perf_counter() - begin) * 1e3
            if i >= warmup:
                times.append(elapsed)
    del model, x
    if device == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(times)


def ours_throughput(binary, name, batch, size, runs, warmup, timeout):
    command = [binary, "--backend", "wgpu", "--model", name, "--batch", str(batch),
               "--size", str(size), "--runs", str(runs), "--warmup", str(warmup)]
    begin = time.time()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    line = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(line)["median_ms"], time.time() - begin


def check(binary, name, batch, size, workdir, timeout):
    """Ours on wgpu against torchvision on CUDA, on one checkpoint and one input."""
    import torch
    import torchvision

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = getattr(torchvision.models, TORCHVISION[name])().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    weights, inputs, outputs = (f"{workdir}/{name}.{ext}" for ext in ("pth", "in.bin", "out.bin"))
    torch.save(model.state_dict(), weights)
    x = torch.randn(batch, 3, size, size)
    x.numpy().astype("<f4").tofile(inputs)
    with torch.inference_mode():
        expected = model.cuda()(x.cuda()).cpu()
    command = [binary, "--backend", "wgpu", "--model", name, "--batch", str(batch), "--size",
               str(size), "--runs", "1", "--warmup", "0", "--weights", weights, "--input", inputs,
               "--save-output", outputs]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    ours = torch.from_file(outputs, size=expected.numel(), dtype=torch.float32).reshape(expected.shape)
    relative = ((ours - expected).abs().max() / expected.abs().max()).item()
    top1 = (ours.argmax(1) == expected.argmax(1)).float().mean().item()
    return {"model": name, "batch": batch, "max_relative_difference": relative,
            "top1_agreement": top1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", help="path of the latency example built with wgpu")
    parser.add_argument("--models", default="v2,v3l,v3s")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=240, help="seconds for one run of ours")
    parser.add_argument("--torch-device", default="cuda", help="cpu only to try the script")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--check", action="store_true",
                        help="first compare ours with torchvision on the GPU (needs --ours)")
    args = parser.parse_args()
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    results = {"size": args.size, "runs": args.runs, "warmup": args.warmup, "cells": []}

    try:
        import torch
        import torchvision

        results["torch"] = torch.__version__
        results["torchvision"] = torchvision.__version__
        if args.torch_device == "cuda":
            results["gpu"] = torch.cuda.get_device_name(0)
    except ImportError as error:
        print(f"no torch: {error}", file=sys.stderr)

    def record(cell):
        results["cells"].append(cell)
        print(json.dumps(cell), flush=True)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(results, out, indent=1)

    if args.check and args.ours:
        import tempfile

        results["checks"] = []
        with tempfile.TemporaryDirectory() as workdir:
            for name in models:
                try:
                    outcome = check(args.ours, name, max(batches), args.size, workdir, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"check {name}: {error}", file=sys.stderr, flush=True)
                    continue
                results["checks"].append(outcome)
                print(json.dumps(outcome), flush=True)
    if "torch" in results:
        for name in models:
            for batch in batches:
                for tf32 in (False, True):
                    ms = torch_throughput(name, batch, args.size, args.runs, args.warmup, tf32,
                                          args.torch_device)
                    record({"runtime": "torch-tf32" if tf32 else "torch-f32", "model": name,
                            "batch": batch, "median_ms": ms, "images_per_s": batch / ms * 1e3})
    if args.ours:
        for name in models:
            for batch in batches:
                try:
                    ms, wall = ours_throughput(args.ours, name, batch, args.size, args.runs,
                                               args.warmup, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"ours {name} b{batch}: {error}", file=sys.stderr, flush=True)
                    continue
                record({"runtime": "ours-wgpu", "model": name, "batch": batch, "median_ms": ms,
                        "images_per_s": batch / ms * 1e3, "wall_s": round(wall, 1)})

    cells = {(c["runtime"], c["model"], c["batch"]): c for c in results["cells"]}
    print("\n| model | batch | ours wgpu (img/s) | PyTorch f32 | PyTorch TF32 | ours / f32 | ours / TF32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in models:
        for batch in batches:
            ours, f32, tf32 = (cells.get((r, name, batch)) for r in ("ours-wgpu", "torch-f32", "torch-tf32"))
            rate = lambda c: f"{c['images_per_s']:.0f}" if c else "-"
            ratio = lambda a, b: f"{a['images_per_s'] / b['images_per_s']:.2f}x" if a and b else "-"
            print(f"| {name} | {batch} | {rate(ours)} | {rate(f32)} | {rate(tf32)} | "
                  f"{ratio(ours, f32)} | {ratio(ours, tf32)} |")


if __name__ == "__main__":
    main()
