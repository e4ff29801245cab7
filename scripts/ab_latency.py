#!/usr/bin/env python3
"""Same-run A/B of two builds or two settings of `examples/latency`, in alternating blocks.

    python3 scripts/ab_latency.py --model v2 [--threads 1] [--batch 1] [--runs 8] [--pairs 12]
        [--a-bin PATH] [--b-bin PATH] [--a-env K=V ...] [--b-env K=V ...]

Starts two `latency --serve` processes (A and B: two binaries, e.g. a copy of the one built
before a change, or one binary under two environments, e.g. `MOBILENET_BURN_KERNELS=burn`),
warms both up, then runs PAIRS pairs of blocks of RUNS forwards, A first in even pairs and B
first in odd ones, with a pause between blocks so that one's idle threads are asleep before the
other starts. Prints each side's median block median and the median and quartiles of the
per-pair ratios B/A: on a shared VM whose speed drifts by 1.5x within minutes, a ratio of two
blocks taken a second apart holds where two separate runs' times do not.

Needs only Python's standard library; build the example first (`cargo build --release
--all-features --example latency`). The binaries default to
`$CARGO_TARGET_DIR/release/examples/latency` (or `target/...`).
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def server(binary, model, batch, size, threads, assignments):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        env[key] = value
    command = [binary, "--model", model, "--batch", str(batch), "--serve"]
    if size:
        command += ["--size", str(size)]
    return subprocess.Popen(command, env=env, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def block(process, runs):
    process.stdin.write(f"{runs}\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("a latency --serve process ended early (run it alone to see why)")
    return json.loads(line)["median_ms"]


def main():
    default = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/examples/latency"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="v2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=0, help="input size (the example's default)")
    parser.add_argument("--runs", type=int, default=8, help="forwards per block")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--a-bin", default=str(default))
    parser.add_argument("--b-bin", default=str(default))
    parser.add_argument("--a-env", nargs="*", default=[], metavar="K=V")
    parser.add_argument("--b-env", nargs="*", default=[], metavar="K=V")
    args = parser.parse_args()

    sides = [server(binary, args.model, args.batch, args.size, args.threads, env)
             for binary, env in ((args.a_bin, args.a_env), (args.b_bin, args.b_env))]
    try:
        for side in sides:
            block(side, args.runs)
        a_ms, b_ms, ratios = [], [], []
        for index in range(args.pairs):
            order = sides if index % 2 == 0 else sides[::-1]
            times = {}
            for side in order:
                time.sleep(0.05)
                times[id(side)] = block(side, args.runs)
            a, b = times[id(sides[0])], times[id(sides[1])]
            a_ms.append(a)
            b_ms.append(b)
            ratios.append(b / a)
    finally:
        for side in sides:
            side.stdin.close()
            side.wait()
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, {args.pairs} pairs of "
          f"{args.runs} forwards: A {statistics.median(a_ms):.2f} ms, B "
          f"{statistics.median(b_ms):.2f} ms; B/A per pair {median:.3f} (quartiles {q1:.3f}, "
          f"{q3:.3f})")


if __name__ == "__main__":
    main()
