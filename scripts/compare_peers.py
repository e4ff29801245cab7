#!/usr/bin/env python3
"""Times mobilenet-burn beside PyTorch eager, ONNX Runtime and tract on the same models, shapes
and thread count, in one run, and prints a markdown table of medians and ratios ours/theirs.

    python3 scripts/compare_peers.py [--threads 2] [--batch 1] [--runs 50] [--rounds 3]
                                     [--models v2,v3l,v3s,ssd,lraspp,lraspp_v3s,deeplabv3]
                                     [--memory] [--paired PAIRS]

Needs (pip): torch, torchvision, onnx, onnxscript, onnxruntime, tract (the Python bindings of
tract, the Rust ONNX runtime). Ours is `examples/latency.rs`, built here with
`cargo build --release --all-features --example latency` unless --no-build; it runs with
RAYON_NUM_THREADS=threads, once with the native CPU kernels (the default) and once with burn's
own operations (MOBILENET_BURN_KERNELS=burn). Every model has torchvision's architecture with
random weights (speed does not depend on the values), BatchNorm folded for inference: ours
with `fuse()`, ONNX Runtime and tract by their graph optimizers, PyTorch eager as it is (eval
mode; torch has no folding in eager).

`ssd` is torchvision's `ssdlite320_mobilenet_v3_large` network at 320x320 (always; `--size`
is for the classifiers): the backbone, its extra blocks and the two heads, up to the class
logits and box regressions of the 3,234 anchors. Not the resize/normalize transform nor the
box decoding and NMS, which run outside the network in every runtime (ours: `latency --model
ssd-v3l`).

`v4s`, `v4m`, `v4l`, `v4hm` and `v4hl` are timm's MobileNetV4 Conv-Small, Conv-Medium,
Conv-Large, Hybrid-Medium and Hybrid-Large (timm needed), at `--size` as the classifiers; the
hybrids with their layer scales set to 1 in every runtime (see `build_model`).

`lraspp`, `lraspp_v3s` and `deeplabv3` are torchvision's segmentation networks at 520x520
(always; the size its weights are evaluated at), 21 classes, up to `model(x)["out"]` (the
logits resized to the input): `lraspp_mobilenet_v3_large`, the same head on a dilated
MobileNetV3-Small (`_lraspp_mobilenetv3`, as torchvision builds any MobileNetV3), and
`deeplabv3_mobilenet_v3_large` without its auxiliary head (which inference does not run).

`--paired PAIRS` times ours against ONNX Runtime only, in alternating blocks of `--runs`
forwards: ours as one long-lived `latency --serve` process, ORT's session in this one, PAIRS
pairs of blocks (which one goes first alternating), a pause between blocks so that neither
runtime's spinning threads overlap the other's block. Each pair gives a ratio of block medians
taken seconds apart; the table gives the median and quartiles of those ratios. On a machine
whose speed drifts by 1.5x within a minute (a shared VM) these ratios hold where the best of
three rounds does not.

Versions used for docs/performance.md: torch 2.15.0, torchvision 0.29.2, onnxruntime 1.32.0,
tract 0.23.9, onnx 1.23.2, onnxscript 0.7.2, timm 1.0.31.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "v2": "mobilenet_v2",
    "v3l": "mobilenet_v3_large",
    "v3s": "mobilenet_v3_small",
    "ssd": "ssdlite320_mobilenet_v3_large",
    "v4s": "mobilenetv4_conv_small",
    "v4m": "mobilenetv4_conv_medium",
    "v4l": "mobilenetv4_conv_large",
    "v4hm": "mobilenetv4_hybrid_medium",
    "v4hl": "mobilenetv4_hybrid_large",
    "lraspp": "lraspp_mobilenet_v3_large",
    "lraspp_v3s": "lraspp_mobilenet_v3_small",
    "deeplabv3": "deeplabv3_mobilenet_v3_large",
}
# The key `examples/latency` knows each model by, where it differs.
OURS_KEY = {"ssd": "ssd-v3l", "lraspp_v3s": "lraspp-v3s"}
# The input size of the models that have one of their own.
FIXED_SIZE = {"ssd": 320, "lraspp": 520, "lraspp_v3s": 520, "deeplabv3": 520}


def build_model(key):
    """The torchvision network for `key`, random weights, eval mode, returning tensors only."""
    import torch
    import torchvision

    name = MODELS[key]
    if key in ("v2", "v3l", "v3s"):
        return getattr(torchvision.models, name)(weights=None).eval()
    if key.startswith("v4"):
        import timm
        from timm.layers import LayerScale2d

        model = timm.create_model(name, pretrained=False).eval()
        # Layer scales of 1, not timm's initial 1e-5, as examples/latency builds Hybrid-Medium:
        # at 1e-5 the blocks without a residual shrink the activations to ~1e-20 by the last
        # stage, where products go subnormal (a slowdown of its own, absent with trained weights).
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LayerScale2d):
                    module.gamma.fill_(1.0)
        return model
    if key != "ssd":
        from torchvision.models.segmentation import (
            deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large)
        from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

        if key == "lraspp":
            segmenter = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
        elif key == "lraspp_v3s":
            backbone = torchvision.models.mobilenet_v3_small(weights=None, dilated=True)
            segmenter = _lraspp_mobilenetv3(backbone, 21)
        else:
            segmenter = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None)

        class Segmenter(torch.nn.Module):
            # `model(x)["out"]`: a tensor, for the ONNX export.
            def __init__(self):
                super().__init__()
                self.model = segmenter

            def forward(self, x):
                return self.model(x)["out"]

        return Segmenter().eval()
    detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None).eval()

    class Network(torch.nn.Module):
        # SSD.forward without its transform and post-processing: what ours times.
        def __init__(self):
            super().__init__()
            self.backbone, self.head = detector.backbone, detector.head

        def forward(self, x):
            outputs = self.head(list(self.backbone(x).values()))
            return outputs["cls_logits"], outputs["bbox_regression"]

    return Network().eval()


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(run, runs, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def ours_command(model, args, runs):
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/examples/latency"
    return [str(binary), "--model", OURS_KEY.get(model, model), "--batch", str(args.batch),
            "--size", str(FIXED_SIZE.get(model, args.size)), "--runs", str(runs), "--warmup",
            str(args.warmup)]


def ours(model, args, kernels):
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), MOBILENET_BURN_KERNELS=kernels)
    output = subprocess.run(ours_command(model, args, args.runs), env=env, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["median_ms"]


def paired(key, args, session, feed, pairs):
    """Per-pair ratios ours/ORT of block medians, ours' and ORT's block medians."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    server = subprocess.Popen(ours_command(key, args, 1) + ["--serve"], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ours_block():
        server.stdin.write(f"{args.runs}\n")
        server.stdin.flush()
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"latency --serve for {key} ended early")
        return json.loads(line)["median_ms"]

    def ort_block():
        return median_ms(lambda: session.run(None, feed), args.runs, 0)

    # Warm both up, ORT as much as ours' own warm-up.
    ours_block()
    median_ms(lambda: session.run(None, feed), args.runs, args.warmup)
    ratios, ours_ms, ort_ms = [], [], []
    try:
        for index in range(pairs):
            blocks = [ours_block, ort_block] if index % 2 == 0 else [ort_block, ours_block]
            times = {}
            for block in blocks:
                # ORT's and rayon's idle workers spin a while before they sleep.
                time.sleep(0.05)
                times[block] = block()
            ours_ms.append(times[ours_block])
            ort_ms.append(times[ort_block])
            ratios.append(times[ours_block] / times[ort_block])
    finally:
        server.stdin.close()
        server.wait()
    return ratios, ours_ms, ort_ms


def quartiles(values):
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def peak_rss_mib(command, env=None):
    """Peak resident memory (`VmHWM`, in MiB) that a process running `command` reports as the
    last line of its output (JSON with `peak_rss_mib`). The process reads it itself: a child's
    `ru_maxrss` would include this big Python process, whose pages the fork copied."""
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss_mib"]


ORT_RUN = """
import sys, numpy as np, onnxruntime
path, threads, batch, size, runs = sys.argv[1], *map(int, sys.argv[2:])
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
x = np.random.randn(batch, 3, size, size).astype(np.float32)
for _ in range(runs):
    session.run(None, {"input": x})
PEAK
"""

# Prints the process's peak resident memory as JSON (Linux), as examples/latency does.
PEAK = """
import json
with open("/proc/self/status") as status:
    kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mib": kib / 1024}))
"""
ORT_RUN = ORT_RUN.replace("PEAK", PEAK)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="time every runtime this many times; report each one's best median")
    parser.add_argument("--models", default="v2,v3l,v3s")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--paired", type=int, default=0, metavar="PAIRS",
                        help="ours against ONNX Runtime only, in PAIRS alternating pairs of blocks")
    parser.add_argument("--memory", action="store_true",
                        help="also the peak RSS of a process running 20 forwards, ours vs ORT")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import torch
    import tract

    torch.set_num_threads(args.threads)
    if not args.no_build:
        print("building examples/latency (release)...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--all-features", "--example", "latency"],
                       cwd=ROOT, check=True)

    rows, memory, pair_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            name = MODELS[key]
            size = FIXED_SIZE.get(key, args.size)
            x = torch.randn(args.batch, 3, size, size)
            print(f"{name}: exporting and timing...", file=sys.stderr)
            model = build_model(key)
            onnx_path = Path(tmp) / f"{name}.onnx"
            with torch.inference_mode():
                torch.onnx.export(model, (x,), str(onnx_path), input_names=["input"],
                                  dynamo=False)

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = onnxruntime.InferenceSession(str(onnx_path), options,
                                                   providers=["CPUExecutionProvider"])
            feed = {"input": x.numpy()}

            if args.paired:
                ratios, ours_ms, ort_ms = paired(key, args, session, feed, args.paired)
                pair_rows.append((name, quartiles(ours_ms), quartiles(ort_ms),
                                  quartiles(ratios)))
                print(f"  ratios: " + ", ".join(f"{r:.2f}" for r in ratios), file=sys.stderr)
                continue

            # `into_runnable` declutters and optimizes the typed model (BatchNorm folded).
            runnable = tract.onnx().load(str(onnx_path)).into_model().into_runnable()
            tract_input = x.numpy().astype(np.float32)
            # Rounds, each timing every runtime once; the best median of each runtime is kept
            # (the round least disturbed by other work on the machine).
            best = [float("inf")] * 5
            for round_index in range(args.rounds):
                with torch.inference_mode():
                    eager = median_ms(lambda: model(x), args.runs, args.warmup)
                ort = median_ms(lambda: session.run(None, feed), args.runs, args.warmup)
                tract_ms = median_ms(lambda: runnable.run([tract_input]), args.runs, args.warmup)
                native = ours(key, args, "native")
                burn_ops = ours(key, args, "burn")
                medians = [native, burn_ops, eager, ort, tract_ms]
                print(f"  round {round_index + 1}: " + ", ".join(f"{m:.2f}" for m in medians),
                      file=sys.stderr)
                best = [min(b, m) for b, m in zip(best, medians)]
            native, burn_ops, eager, ort, tract_ms = best
            rows.append((name, native, burn_ops, eager, ort, tract_ms))
            if args.memory:
                env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
                ours_mib = peak_rss_mib(ours_command(key, args, 20), env)
                ort_mib = peak_rss_mib([sys.executable, "-c", ORT_RUN, str(onnx_path),
                                        str(args.threads), str(args.batch), str(size), "20"])
                memory.append((name, ours_mib, ort_mib))

    if args.paired:
        print(f"\n{cpu_name()}, {os.cpu_count()} logical CPUs; {args.threads} threads; "
              f"batch {args.batch}, {args.size}x{args.size} (ssdlite320: 320x320, "
              f"segmentation: 520x520); {args.paired} alternating pairs of blocks of "
              f"{args.runs} forwards; onnxruntime {onnxruntime.__version__}\n")
        print("| model | ours, block medians (q1 / median / q3) | ONNX Runtime, same | "
              "ours / ORT per pair (q1 / median / q3) |")
        print("|---|---:|---:|---:|")
        for name, ours_q, ort_q, ratio_q in pair_rows:
            print(f"| {name} | {' / '.join(f'{v:.2f}' for v in ours_q)} ms | "
                  f"{' / '.join(f'{v:.2f}' for v in ort_q)} ms | "
                  f"{' / '.join(f'{v:.2f}x' for v in ratio_q)} |")
        return

    print(f"\n{cpu_name()}, {os.cpu_count()} logical CPUs; "
          f"{args.threads} threads; batch {args.batch}, {args.size}x{args.size} "
          f"(ssdlite320: 320x320, segmentation: 520x520); "
          f"best of {args.rounds} rounds of the median of {args.runs} runs "
          f"after {args.warmup} warm-up; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"tract {tract.version()}\n")
    print("| model | ours (flex + native kernels) | ours (burn ops) | PyTorch eager | "
          "ONNX Runtime | tract | ours / ORT | ours / PyTorch | ours / tract |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, native, burn_ops, eager, ort, tract_ms in rows:
        print(f"| {name} | {native:.2f} ms | {burn_ops:.2f} ms | {eager:.2f} ms | {ort:.2f} ms | "
              f"{tract_ms:.2f} ms | {native / ort:.2f}x | {native / eager:.2f}x | "
              f"{native / tract_ms:.2f}x |")
    if memory:
        # The interpreter with numpy and onnxruntime imported, before any session: the part of
        # ORT's figure that is Python's.
        baseline = peak_rss_mib([sys.executable, "-c", "import numpy, onnxruntime\n" + PEAK])
        print(f"\nPeak RSS of a process running 20 forwards at batch {args.batch} (MiB; the "
              f"Python process of ORT holds {baseline:.0f} MiB before its session):\n")
        print("| model | ours | ONNX Runtime | ORT less Python's baseline | ours / (ORT less baseline) |")
        print("|---|---:|---:|---:|---:|")
        for name, ours_mib, ort_mib in memory:
            print(f"| {name} | {ours_mib:.0f} | {ort_mib:.0f} | {ort_mib - baseline:.0f} | "
                  f"{ours_mib / max(ort_mib - baseline, 1):.2f}x |")


if __name__ == "__main__":
    main()
