#!/usr/bin/env python3
"""The long-run freeze experiment's tables, from its run folders (long/run.sh OUT).

Usage: python3 long/tables.py OUT > long/results.md

Per schedule and seed: final test accuracy (read once, at the end), final and best
validation accuracy (every epoch), wall-clock (the training job's, from metrics.csv),
backward work saved (estimate, runs.csv). Then the choice, made on validation only: among
the schedules whose mean final validation accuracy is within 0.5 points of the base runs',
the one that saves the most wall-clock; its test accuracy is the held-out figure.
"""
import csv
import statistics
import sys
from pathlib import Path

SCHEDULES = ["paper", "start-0.3", "adaptive"]
LIMIT = 0.5  # points of validation accuracy a schedule may lose to be chosen


def metrics(run):
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [(int(r["step"]), float(r["val_acc"])) for r in rows if r["val_acc"] and int(r["step"]) > 0]
    best_step, best = max(val, key=lambda v: v[1])
    return {
        "test": float(rows[-1]["test_acc"]) * 100,
        "val": val[-1][1] * 100,
        "best_val": best * 100,
        "best_step": best_step,
        "wall": float(rows[-1]["wall_seconds"]),
    }


def finished(run):
    try:
        with open(run / "metrics.csv") as f:
            return bool(list(csv.DictReader(f))[-1]["test_acc"])
    except (OSError, IndexError):
        return False


def mean_std(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    out = Path(sys.argv[1])
    seeds = sorted(int(p.name.split("-")[1]) for p in (out / "paper" / "base").glob("seed-*"))
    # Seeds every schedule has finished (the table of a run still going covers those).
    seeds = [s for s in seeds if all(finished(out / v / "freeze" / f"seed-{s}") for v in SCHEDULES)]
    base = {s: metrics(out / "paper" / "base" / f"seed-{s}") for s in seeds}
    table = {}
    for v in SCHEDULES:
        runs = {}
        with open(out / v / "runs.csv") as f:
            saved = {int(r["seed"]): float(r["backward_saved"]) for r in csv.DictReader(f) if r["variant"] == "freeze"}
        for s in seeds:
            m = metrics(out / v / "freeze" / f"seed-{s}")
            m["backward"] = saved[s] * 100
            runs[s] = m
        table[v] = runs

    def row(name, runs, ref=None):
        cols = []
        for key, fmt in [("test", "{:.2f}%"), ("val", "{:.2f}%"), ("best_val", "{:.2f}%"), ("wall", "{:.1f} s")]:
            m, sd = mean_std([runs[s][key] for s in seeds])
            cols.append(f"{fmt.format(m)} ± {sd:.2f}")
        if ref is None:
            return f"| {name} | " + " | ".join(cols) + " | | | | |"
        d_test = mean_std([runs[s]["test"] - ref[s]["test"] for s in seeds])
        d_val = mean_std([runs[s]["val"] - ref[s]["val"] for s in seeds])
        saved = 100 * (1 - statistics.mean(runs[s]["wall"] for s in seeds) / statistics.mean(ref[s]["wall"] for s in seeds))
        back = statistics.mean(runs[s]["backward"] for s in seeds)
        return (f"| {name} | " + " | ".join(cols)
                + f" | {d_val[0]:+.2f} ± {d_val[1]:.2f} | {d_test[0]:+.2f} ± {d_test[1]:.2f} | {saved:.1f}% | {back:.1f}% |")

    print(f"Seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds.\n")
    print("| schedule | final test accuracy | final validation accuracy | best validation accuracy | wall-clock | "
          "validation vs base (points) | test vs base (points) | wall-clock saved | backward work saved (estimate) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("base (no freezing)", base))
    for v in SCHEDULES:
        print(row(v, table[v], base))

    print("\nPer seed, final test accuracy (vs base, points) and wall-clock:\n")
    print("| schedule | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    print("| base | " + " | ".join(f"{base[s]['test']:.2f}%, {base[s]['wall']:.0f} s" for s in seeds) + " |")
    for v in SCHEDULES:
        r = table[v]
        print(f"| {v} | " + " | ".join(f"{r[s]['test']:.2f}% ({r[s]['test'] - base[s]['test']:+.2f}), {r[s]['wall']:.0f} s" for s in seeds) + " |")

    eligible = []
    for v in SCHEDULES:
        d_val = statistics.mean(table[v][s]["val"] - base[s]["val"] for s in seeds)
        saved = 1 - statistics.mean(table[v][s]["wall"] for s in seeds) / statistics.mean(base[s]["wall"] for s in seeds)
        if d_val >= -LIMIT:
            eligible.append((saved, v, d_val))
    print()
    if eligible:
        saved, v, d_val = max(eligible)
        d_test = statistics.mean(table[v][s]["test"] - base[s]["test"] for s in seeds)
        print(f"Chosen on validation (within {LIMIT} points of base, most wall-clock saved): **{v}**, "
              f"validation {d_val:+.2f} points, wall-clock saved {100 * saved:.1f}%; its held-out test accuracy "
              f"{d_test:+.2f} points against base.")
    else:
        print(f"No schedule kept the validation accuracy within {LIMIT} points of base.")


if __name__ == "__main__":
    main()
