#!/usr/bin/env python3
"""GPU check for `svcca compare`, run on a machine with a CUDA device (one prepared call).

Usage, from the repository root, with target/release/svcca built elsewhere and carried:
    export LD_LIBRARY_PATH=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
    python3 scripts/gpu_check.py [--big 50000x4096] [--out DIR] [--no-timings]

scripts/gpu_session.sh runs it (correctness, then timings at small sizes); `--gpu cpu` is a
dry run of the script on a machine without a GPU (cpu against cpu).

1. Correctness first: every dense fixture, every method, and the conv fixtures with
   --conv dft, --device cuda against --device cpu (1e-6 on the mean and on each
   correlation). The last line of this part reads
   "correctness: worst <device>-vs-cpu difference X -> OK|FAIL".
2. Then timings (left out with --no-timings): the example pair at --big (float32, shared low-rank signal), SVCCA at
   99%, and --conv dft at N=2000, 64 channels, 16x16 (numpy-generated), on cuda and cpu.
3. A short table last.
"""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "svcca")
FIX = os.path.join(ROOT, "tests", "fixtures", "svcca_ref")
CASES = [("case1_A.npy", "case1_B.npy"), ("case2_A.npy", "case2_B.npy"),
         ("case6_A.npy", "case6_B.npy"), ("case7_A_dead.npy", "case7_B.npy")]
CONV_CASES = [("case5_A_nhwc.npy", "case5_B_nhwc.npy"), ("case5_A_nhwc.npy", "case5b_B_pooled_nhwc.npy")]


def conv_pair(d, n, c=64, h=16, w=16):
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, c, h, w), dtype=np.float32)
    b = np.maximum(np.roll(a, 1, axis=2) + 0.5 * np.roll(a, -1, axis=3), 0)
    b = b + 0.5 * rng.standard_normal(b.shape, dtype=np.float32)
    pa, pb = os.path.join(d, "conv_a.npy"), os.path.join(d, "conv_b.npy")
    np.save(pa, a)
    np.save(pb, b.astype(np.float32))
    return pa, pb


def compare(a, b, *flags):
    out = subprocess.run([BIN, "compare", a, b, "--json", *flags], check=True,
                         capture_output=True, text=True, env={**os.environ, "SVCCA_LOG": "warn"})
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--big", default="50000x4096")
    p.add_argument("--conv-datapoints", type=int, default=2000)
    p.add_argument("--out", default=None, help="folder for the table (e.g. $OUT)")
    p.add_argument("--gpu", default="cuda", help="device under test (cpu: a dry run of this script)")
    p.add_argument("--no-timings", action="store_true", help="correctness only")
    args = p.parse_args()
    gpu_device = args.gpu
    rows = []
    worst = 0.0
    for a, b in CASES:
        for method in ["svcca", "cca", "pwcca", "cka"]:
            paths = (os.path.join(FIX, a), os.path.join(FIX, b))
            cpu = compare(*paths, "--method", method, "--device", "cpu")
            gpu = compare(*paths, "--method", method, "--device", gpu_device)
            assert gpu["device"].startswith(gpu_device), gpu["device"]
            diff = max([abs(cpu["mean"] - gpu["mean"])] +
                       [abs(x - y) for x, y in zip(cpu["correlations"], gpu["correlations"])])
            assert len(cpu["correlations"]) == len(gpu["correlations"]), (a, method)
            worst = max(worst, diff)
            print(f"{a} {method}: cpu {cpu['mean']:.9f} {gpu_device} {gpu['mean']:.9f} max|diff| {diff:.2e}", flush=True)
    for a, b in CONV_CASES:
        for method in ["cca", "svcca"]:
            paths = (os.path.join(FIX, a), os.path.join(FIX, b))
            flags = ("--conv", "dft", "--layout", "nhwc", "--method", method)
            cpu = compare(*paths, *flags, "--device", "cpu")
            gpu = compare(*paths, *flags, "--device", gpu_device)
            assert gpu["device"].startswith(gpu_device), gpu["device"]
            diff = max([abs(cpu["mean"] - gpu["mean"])] +
                       [abs(x - y) for x, y in zip(cpu["correlations"], gpu["correlations"])])
            assert len(cpu["correlations"]) == len(gpu["correlations"]), (a, b, method)
            worst = max(worst, diff)
            print(f"{a} vs {b} dft {method}: cpu {cpu['mean']:.9f} {gpu_device} {gpu['mean']:.9f} max|diff| {diff:.2e}", flush=True)
    ok = worst <= 1e-6
    print(f"correctness: worst {gpu_device}-vs-cpu difference {worst:.2e} -> {'OK' if ok else 'FAIL'}", flush=True)
    if args.no_timings:
        sys.exit(0 if ok else 1)

    n, p_ = (int(x) for x in args.big.split("x"))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([BIN, "example", d, "--datapoints", str(n), "--neurons-a", str(p_),
                        "--neurons-b", str(p_), "--rank", "64", "--noise", "1.0"], check=True,
                       capture_output=True)
        a, b = os.path.join(d, "a.npy"), os.path.join(d, "b.npy")
        for device in [gpu_device, "cpu"]:
            best = None
            for _ in range(2):
                t = time.time()
                r = compare(a, b, "--device", device, "--memory-budget", "16G")
                wall = time.time() - t
                best = wall if best is None else min(best, wall)
            rows.append((f"{n}x{p_} vs {n}x{p_}", device, best, r["seconds"], r["kept_a"], r["kept_b"], r["mean"]))
        a, b = conv_pair(d, args.conv_datapoints)
        for device in [gpu_device, "cpu"]:
            best = None
            for _ in range(2):
                t = time.time()
                r = compare(a, b, "--conv", "dft", "--method", "cca", "--device", device)
                wall = time.time() - t
                best = wall if best is None else min(best, wall)
            rows.append((f"dft {args.conv_datapoints}x64x16x16", device, best, r["seconds"], r["kept_a"], r["kept_b"], r["mean"]))
    table = ["| pair | device | wall s (process) | compute s (reported) | kept a/b | mean |",
             "|---|---|---|---|---|---|"]
    for pair, dev, wall, sec, ka, kb, mean in rows:
        table.append(f"| {pair} | {dev} | {wall:.2f} | {sec:.2f} | {ka}/{kb} | {mean:.6f} |")
    table.append(f"\n{gpu_device} vs cpu on the fixtures: worst difference {worst:.2e} ({'OK' if ok else 'FAIL'})")
    text = "\n".join(table)
    print(text)
    if args.out:
        with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
            f.write(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
