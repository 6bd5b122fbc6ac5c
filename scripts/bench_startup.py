#!/usr/bin/env python3
"""Start-up cost of `svcca compare` on a small pair, one binary against another.

Usage, from the repository root:
    .venv/bin/python scripts/bench_startup.py --before OLD_BINARY [--repeats 10] [--out FILE]

OLD_BINARY is typically a build that links libtorch_cuda.so at start (before lazy CUDA
loading); the binary measured as "after" is target/release/svcca. Both compare the pair
that `svcca example` writes (5000x128 vs 5000x96, float32), with `--device cpu` and with
`--device auto` (the default), alternating runs, under GNU time: median whole-process wall
time, CPU time and max peak RSS of each, and the ratios before/after. On a machine without an NVIDIA
driver `auto` stays on the CPU, so all four commands compute the same thing.
"""
import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

import bench_common as bc


def run(cmd):
    """Wall s, CPU s (user + system) and peak RSS MiB of cmd, from GNU time, and its SVCCA mean."""
    with tempfile.NamedTemporaryFile("r") as timing:
        proc = subprocess.run([bc.TIME, "-f", "%e %U %S %M", "-o", timing.name, *map(str, cmd)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        fields = timing.read().split()[-4:]
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {cmd}")
    mean = bc.parse_json(proc.stdout, cmd)["mean"]
    return float(fields[0]), float(fields[1]) + float(fields[2]), float(fields[3]) / 1024, mean


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", type=Path, required=True, help="the binary to compare against")
    p.add_argument("--repeats", type=int, default=10)
    args = bc.parse_args(p)
    head = bc.header("Start-up: `svcca compare` on a small pair, before and after lazy CUDA loading",
                     [f"load average {bc.load_average()} at start"])
    with tempfile.TemporaryDirectory() as d:
        bc.run_measured([bc.SVCCA, "example", f"{d}/ex"])
        a, b = f"{d}/ex/a.npy", f"{d}/ex/b.npy"
        cmds = {}
        for device in ["cpu", "auto"]:
            for tag, binary in [("before", args.before), ("after", bc.SVCCA)]:
                cmds[f"{tag} {device}"] = [binary, "compare", a, b, "--json", "--device", device]
        runs = {k: [] for k in cmds}
        for r in range(args.repeats):
            for name, cmd in cmds.items():
                runs[name].append(run(cmd))
                w, c, m, _ = runs[name][-1]
                bc.log(f"[startup] repeat {r + 1}/{args.repeats} {name}: {w:.2f} s wall, {c:.2f} s CPU, {m:.0f} MiB peak")
    wall = {k: statistics.median(x[0] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in runs.items()}
    peak = {k: max(x[2] for x in v) for k, v in runs.items()}
    means = {x[3] for v in runs.values() for x in v}
    lines = head + [
        f"- Before: `{args.before}`; after: `{bc.SVCCA}`",
        f"- Data: `svcca example` (5000x128 vs 5000x96, float32), SVCCA 99%; median wall time of "
        f"{args.repeats} alternating runs per command (whole process), median CPU time (user + "
        f"system), max peak RSS (GNU time `%e`, `%U`+`%S`, `%M`)",
        f"- Same answer (SVCCA mean) from every run: {'yes' if len(means) == 1 else 'NO: ' + str(sorted(means))}",
        "",
        "| --device | wall s before | after | before/after | CPU s before | after | before/after | peak MiB before | after | before/after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for device in ["cpu", "auto"]:
        row = [device]
        for stat, fmt in [(wall, ".3f"), (cpu, ".3f"), (peak, ".0f")]:
            b, a = stat[f"before {device}"], stat[f"after {device}"]
            row += [f"{b:{fmt}}", f"{a:{fmt}}", f"{b / a:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    bc.emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
