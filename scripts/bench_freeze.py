#!/usr/bin/env python3
"""Freeze training's wall-clock, side by side: normal training, a freeze schedule with the
frozen prefix's output cached, and the same schedule recomputing it (freeze.cache_mib = 0).

Usage, from the repository root:
    .venv/bin/python scripts/bench_freeze.py [--config experiments/freeze-fashion-mnist/long.toml]
        [--set key=value]... [--seed 0] [--repeats 1] [--out FILE]

Each round trains the three variants of one seed into fresh folders, one after the other
(`svcca train CONFIG --set train.seed=S`; base: `--set freeze.schedule="none"`), so that
the machine's load falls alike on all three; --set values apply to every variant (a
schedule's, such as freeze.start=0.3, are ignored by the base run). Reported: the training
job's own wall-clock (the last `wall_seconds` of metrics.csv: training, evaluations and
checkpoints, not start-up), its median over rounds, the ratio to base and the share
saved, and the final test accuracy (cached and recomputed runs train alike: their
accuracies should match). Needs a quiet machine: the load average is in the header.
"""
import argparse
import csv
import shutil
import statistics
import tempfile
from pathlib import Path

import bench_common as bc

VARIANTS = [
    ("base", ['freeze.schedule="none"']),
    ("freeze, prefix cached", []),
    ("freeze, prefix recomputed", ["freeze.cache_mib=0"]),
]


def train(config, sets, out):
    cmd = [bc.SVCCA, "train", config, "--out", out]
    for s in sets:
        cmd += ["--set", s]
    _, wall, peak = bc.run_measured(cmd)
    with open(Path(out) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["wall_seconds"]), float(rows[-1]["test_acc"]), wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/freeze-fashion-mnist/long.toml")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key=value for every variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = bc.parse_args(parser)
    config = str(Path(args.config).resolve())
    load = bc.load_average()
    times = {name: [] for name, _ in VARIANTS}
    for r in range(args.repeats):
        for name, extra in VARIANTS:
            tmp = tempfile.mkdtemp(prefix="bench-freeze-")
            try:
                sets = [f"train.seed={args.seed}", *args.sets, *extra]
                result = train(config, sets, Path(tmp) / "run")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            times[name].append(result)
            bc.log(f"round {r + 1}, {name}: training {result[0]:.1f}s (process {result[2]:.1f}s, peak {result[3]:.0f} MiB), "
                   f"test accuracy {100 * result[1]:.2f}%")
    base = statistics.median(t[0] for t in times["base"])
    lines = bc.header("Freeze training: wall-clock of a schedule, its prefix cached and recomputed",
                      [bc.thread_variables(), f"load average at start {load}"])
    lines += [
        f"- Config: `{args.config}`, seed {args.seed}, --set {' '.join(args.sets) or '(none)'}; {args.repeats} round(s), variants alternating",
        "",
        "| variant | training wall-clock (median) | each round | vs base | saved | peak memory | final test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _ in VARIANTS:
        ts = times[name]
        med = statistics.median(t[0] for t in ts)
        each = ", ".join(f"{t[0]:.1f}" for t in ts)
        accs = sorted({f"{100 * t[1]:.2f}%" for t in ts})
        peak = max(t[3] for t in ts)
        lines.append(f"| {name} | {med:.1f} s | {each} | {med / base:.2f} | {100 * (1 - med / base):.1f}% | {peak:.0f} MiB | {', '.join(accs)} |")
    bc.emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
