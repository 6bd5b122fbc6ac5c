"""libtorch's CPU kernels on the compression sweeps' batches, two ways each, through PyTorch
(the same libtorch as the svcca binary): max pooling by `max_pool2d` against two
elementwise maxima, of row pairs then of column pairs (`src/model/ops.rs` without a
gradient; NCHW, channels-last, and NCHW on the quickstart's 600 x 16 x 32 x 32 probe
layers), and ReLU out of place against in place; a conv and the layers above the
convnet's c3 (c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits, random weights) on NCHW against
channels-last input. Checks that each pair gives the same numbers, then prints
milliseconds per call (median of REPEATS) and the ratio.

The script reruns itself under the svcca binary's allocator settings
(`src/device.rs`: blocks up to 64 MiB from the heap, no trimming, one arena), which
decide what a fresh output costs: under glibc's defaults each large output is mapped and
zeroed afresh. `--default-allocator` keeps glibc's defaults.

Usage: .venv/bin/python scripts/bench_layouts.py [--batch 5000] [--width 16] [--repeats 7] [--default-allocator]
"""

import argparse
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def two_maxima(x):
    """2 x 2 max pooling as src/model/ops.rs `max_pool` computes it without a gradient: the
    maximum of each pair of rows, then of each pair of columns of that (either layout)."""
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    rows = torch.maximum(x[:, :, 0:h:2], x[:, :, 1:h:2])
    return torch.maximum(rows[:, :, :, 0:w:2], rows[:, :, :, 1:w:2])


# The svcca binary's glibc allocator settings (src/device.rs `reuse_freed_host_memory`).
BINARY_ALLOCATOR = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
    "MALLOC_TOP_PAD_": str(256 << 20),
    "MALLOC_ARENA_MAX": "1",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--default-allocator", action="store_true", help="keep glibc's allocator defaults")
    args = parser.parse_args()
    if not args.default_allocator and any(os.environ.get(k) != v for k, v in BINARY_ALLOCATOR.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **BINARY_ALLOCATOR})
    torch.manual_seed(0)
    w = args.width
    c4, c5, bn2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w)
    fc1, bn3, fc2, bn4, logits = nn.Linear(w * 49, 128), nn.BatchNorm1d(128), nn.Linear(128, 64), nn.BatchNorm1d(64), nn.Linear(64, 10)
    for bn in (bn2, bn3, bn4):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.eval()

    def above(x):
        # As the svcca binary runs them without a gradient: ReLU in place, two maxima.
        x = bn2(c5(c4(x).relu_()).relu_())
        x = two_maxima(x).flatten(1)
        return logits(bn4(fc2(bn3(fc1(x).relu_())).relu_()))

    allocator = "glibc's defaults" if args.default_allocator else "the svcca binary's settings"
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; allocator: {allocator}")
    print(f"batch {args.batch} x {w} x 14 x 14 float32 (the Fashion-MNIST convnet's c3 output, stacked maps)")
    x = torch.randn(args.batch, w, 14, 14).relu()
    last = x.contiguous(memory_format=torch.channels_last)
    probe = torch.randn(600, 16, 32, 32).relu()
    rows = []
    with torch.no_grad():
        for what, t in [("NCHW", x), ("channels-last", last), ("NCHW, 600 x 16 x 32 x 32", probe)]:
            assert torch.equal(F.max_pool2d(t, 2), two_maxima(t)), f"pooling, {what}: different numbers"
            pooled = (timed(lambda: F.max_pool2d(t, 2), args.repeats), timed(lambda: two_maxima(t), args.repeats))
            rows.append((f"max pooling 2 x 2, {what}", *pooled, "max_pool2d", "two maxima"))
        y = x.clone()
        rows.append(("ReLU", timed(lambda: y.relu(), args.repeats), timed(lambda: y.relu_(), args.repeats), "out of place", "in place"))
        same = torch.equal(F.conv2d(x, c4.weight, c4.bias, padding=1), F.conv2d(last, c4.weight, c4.bias, padding=1))
        rows.append(("one 3 x 3 conv", timed(lambda: c4(x), args.repeats), timed(lambda: c4(last), args.repeats), "NCHW", "channels-last"))
        same_above = torch.equal(above(x), above(last))
        rows.append(("layers above c3", timed(lambda: above(x), args.repeats), timed(lambda: above(last), args.repeats), "NCHW", "channels-last"))
    print(f"same numbers: conv {same}, layers above c3 {same_above}")
    print("| what | first | ms | second | ms | first / second |")
    print("|---|---|---:|---|---:|---:|")
    for what, a, b, na, nb in rows:
        print(f"| {what} | {na} | {a:.1f} | {nb} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
