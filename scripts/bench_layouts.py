"""libtorch's CPU kernels on the compression sweeps' batches, two ways each, through PyTorch
(the same libtorch as the svcca binary): max pooling by `max_pool2d` against the largest
of four strided views (NCHW, and over the NHWC view of a channels-last tensor), and ReLU
out of place against in place (`src/model/ops.rs` without a gradient); a conv and the layers above the
convnet's c3 (c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits, random weights) on NCHW against
channels-last input. Checks that each pair gives the same numbers, then prints
milliseconds per call (median of REPEATS) and the ratio. PyTorch's allocator returns
large buffers to the system, so an out-of-place op here also pays for fresh pages, which
the svcca binary's allocator settings avoid (`src/device.rs`): the in-place ReLU gains
less there.

Usage: .venv/bin/python scripts/bench_layouts.py [--batch 5000] [--width 16] [--repeats 7]
"""

import argparse
import os
import platform
import statistics
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


def strided_pool(x, nhwc=False):
    """The largest of the four strided views (src/model/ops.rs `max_pool` on NCHW), taken
    over the NHWC view with `nhwc` (a channels-last tensor's channels innermost)."""
    v = x.permute(0, 2, 3, 1) if nhwc else x
    r = 1 if nhwc else 2
    h, w = v.shape[r] // 2 * 2, v.shape[r + 1] // 2 * 2

    def view(i, j):
        return v.narrow(r, i, h - i).narrow(r + 1, j, w - j)[(slice(None),) * r + (slice(None, None, 2), slice(None, None, 2))]

    pooled = torch.maximum(torch.maximum(view(0, 0), view(0, 1)), torch.maximum(view(1, 0), view(1, 1)))
    return pooled.permute(0, 3, 1, 2) if nhwc else pooled


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    w = args.width
    c4, c5, bn2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w)
    fc1, bn3, fc2, bn4, logits = nn.Linear(w * 49, 128), nn.BatchNorm1d(128), nn.Linear(128, 64), nn.BatchNorm1d(64), nn.Linear(64, 10)
    for bn in (bn2, bn3, bn4):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.eval()

    def above(x):
        x = bn2(F.relu(c5(F.relu(c4(x)))))
        x = F.max_pool2d(x, 2).flatten(1)
        return logits(bn4(F.relu(fc2(bn3(F.relu(fc1(x)))))))

    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"batch {args.batch} x {w} x 14 x 14 float32 (the Fashion-MNIST convnet's c3 output, stacked maps)")
    x = torch.randn(args.batch, w, 14, 14).relu()
    last = x.contiguous(memory_format=torch.channels_last)
    rows = []
    with torch.no_grad():
        assert torch.equal(F.max_pool2d(x, 2), strided_pool(x)), "pooling: different numbers"
        rows.append(("max pooling 2 x 2, NCHW", timed(lambda: F.max_pool2d(x, 2), args.repeats), timed(lambda: strided_pool(x), args.repeats), "max_pool2d", "strided maximum"))
        assert torch.equal(F.max_pool2d(last, 2), strided_pool(last, nhwc=True)), "pooling, channels-last: different numbers"
        rows.append(("max pooling 2 x 2, channels-last", timed(lambda: F.max_pool2d(last, 2), args.repeats), timed(lambda: strided_pool(last, nhwc=True), args.repeats), "max_pool2d", "strided maximum (NHWC)"))
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
