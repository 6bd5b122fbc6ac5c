#!/usr/bin/env python3
"""The main job's analysis against its training, and against an older binary's analysis.

Usage, from the repository root:
    .venv/bin/python scripts/bench_quickstart.py [--before OLD_BINARY] [--repeats 1] [--run-dir DIR] [--out FILE]

1. `svcca run configs/quickstart.toml` into a fresh folder with target/release/svcca: the
   training and analysing seconds it reports itself (the `time:` line), and their ratio
   (issue 15's target: analysing <= 0.5 x training).
2. With --before: the same trained folder analysed again by both binaries, alternating
   (`svcca analyze` on copies without analysis/), target/release/svcca set to the older
   binary's recorded choices (`analysis.dft_cut`, `conv_dense`, the layers; a binary from
   before the first two were settings: "per-frequency" and "avgpool"): the analysing
   seconds of each, their ratio, and the
   largest difference over every entry of every checkpoint's layers x layers matrix
   (dynamics.json).
"""
import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import bench_common as bc

TIME_LINE = re.compile(r"time: ([\d.]+)s in all; training ([\d.]+)s, recording activations ([\d.]+)s, analysing ([\d.]+)s")


def run(cmd):
    """Run cmd; return its combined output and wall seconds (exit on failure)."""
    t = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {cmd}\n{proc.stdout[-3000:]}")
    return proc.stdout, wall


def analysing_seconds(folder):
    """The comparing time the analysis recorded: the sum of each checkpoint's `seconds`."""
    d = json.loads((folder / "analysis" / "dynamics.json").read_text())
    return sum(s["seconds"] for s in d["steps"]), d


def worst_difference(a, b):
    worst = 0.0
    for sa, sb in zip(a["steps"], b["steps"], strict=True):
        for ra, rb in zip(sa["matrix"], sb["matrix"], strict=True):
            for x, y in zip(ra, rb, strict=True):
                if (x is None) != (y is None):
                    return float("inf")
                if x is not None:
                    worst = max(worst, abs(x - y))
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", type=Path, help="an older binary whose analysis to time side by side")
    p.add_argument("--repeats", type=int, default=1, help="analyses per binary with --before (alternating)")
    p.add_argument("--run-dir", type=Path, help="train into this folder (kept; must not exist) instead of a temporary one")
    args = bc.parse_args(p)
    lines = bc.header("The quickstart: analysing against training, and against an older binary") + [""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_dir = args.run_dir or tmp / "quickstart"
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists: the benchmark trains from scratch into a new folder")
        bc.log("training and analysing configs/quickstart.toml ...")
        out, wall = run([bc.SVCCA, "run", "configs/quickstart.toml", "--out", run_dir])
        m = TIME_LINE.search(out)
        if not m:
            raise SystemExit(f"no time line in the output of svcca run:\n{out[-2000:]}")
        total, training, recording, analysing = map(float, m.groups())
        lines += [
            "| what | seconds |",
            "|---|---:|",
            f"| training | {training:.1f} |",
            f"| recording activations | {recording:.1f} |",
            f"| analysing (comparing) | {analysing:.1f} |",
            f"| whole `svcca run` | {total:.1f} |",
            "",
            f"Analysing / training: **{analysing / training:.2f}** (target <= 0.5); "
            f"recording + analysing / training: {(recording + analysing) / training:.2f}. "
            f"Load average at the end: {bc.load_average()}.",
            "",
        ]
        bc.log("\n".join(lines[-9:]))
        if args.before:
            folders = {}
            for name in ("before", "after"):
                f = tmp / name
                f.mkdir()
                for part in ("checkpoints", "config.toml", "metrics.csv"):
                    src = run_dir / part
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, f / part)
                folders[name] = f
            # An older binary may not know keys the current one writes into the resolved
            # config (dft_cut, data.validation, ...): its copy gets the config file as
            # shipped, which resolves to the same settings.
            shutil.copy2("configs/quickstart.toml", folders["before"] / "config.toml")
            # The current binary is set to the settings the older one recorded: the DFT
            # cut, how conv layers meet dense ones, and the layers. A binary from before
            # those were settings records none: it cut per frequency and compared conv
            # with dense layers by channel means.
            def align_after(settings):
                config = folders["after"] / "config.toml"
                text = re.sub(r'(?m)^(dft_cut|conv_dense|layers) = .*\n', "", config.read_text())
                chosen = (
                    "[analysis]\n"
                    f'dft_cut = "{settings.get("dft_cut", "per-frequency")}"\n'
                    f'conv_dense = "{settings.get("conv_dense", "avgpool")}"\n'
                    f"layers = {json.dumps(settings['layers'])}\n"
                )
                config.write_text(text.replace("[analysis]\n", chosen, 1))
                return settings.get("dft_cut", "per-frequency")
            times = {"before": [], "after": []}
            results = {}
            for i in range(args.repeats):
                for name, binary in (("before", args.before), ("after", bc.SVCCA)):
                    shutil.rmtree(folders[name] / "analysis", ignore_errors=True)
                    shutil.rmtree(folders[name] / "plots", ignore_errors=True)
                    if name == "after" and i == 0:
                        cut = align_after(json.loads((folders["before"] / "analysis" / "settings.json").read_text()))
                    bc.log(f"analysis {i + 1}/{args.repeats} by {name} ...")
                    run([binary, "analyze", folders[name]])
                    seconds, d = analysing_seconds(folders[name])
                    times[name].append(seconds)
                    results[name] = d
            b, a = min(times["before"]), min(times["after"])
            worst = worst_difference(results["before"], results["after"])
            lines += [
                f"Side by side on the trained folder, {cut} DFT cut, fastest of {args.repeats} each "
                f"(before: `{args.before}`):",
                "",
                "| binary | analysing (s) |",
                "|---|---:|",
                f"| before | {b:.1f} |",
                f"| after | {a:.1f} |",
                "",
                f"Speed-up {b / a:.2f}x; largest difference over every matrix entry {worst:.1e}"
                f"{bc.above_tolerance(worst)}.",
                "",
            ]
    bc.emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
