"""Benchmark `svcca compare --method svcca` against the plain numpy baseline.

Run on demand from the repository root:

    .venv/bin/python scripts/bench_compare.py [--sizes 10000x512,50000x256] [--repeats 3] [--out FILE]

For each size (datapoints x neurons) it writes an example float32 pair with
`svcca example`, runs `svcca compare ... --device cpu --json`,
`scripts/svcca_numpy.py ... --json` (SVD + QR) and `scripts/svcca_numpy.py --tight`
(scatter matrices, eigh, projection before the cross product) as separate processes
(alternating, `--repeats` times each), checks that they agree, and times the three float64 matrix products
a covariance-based method cannot avoid (Xc.T@Xc, Yc.T@Yc, Xc.T@Yc, with torch in
this process). It prints a dated Markdown record (for benches/records/; its figures replace those in
BENCHMARKS.md's table), and with --out also writes it to FILE.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_common import (ROOT, SVCCA, TOLERANCE, above_tolerance, emit, header, parse_args,
                          log, run_measured, timed_runs)

BASELINE = ROOT / "scripts" / "svcca_numpy.py"


def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        try:
            n, p = item.lower().split("x")
            sizes.append((int(n), int(p)))
        except ValueError:
            sys.exit(f"bad size {item!r}: expected DATAPOINTSxNEURONS, e.g. 10000x512")
    return sizes


def difference(r1, r2):
    """Largest absolute difference of the correlations and of the mean; exits on a k mismatch."""
    if (r1["kept_a"], r1["kept_b"]) != (r2["kept_a"], r2["kept_b"]):
        sys.exit(f"kept directions differ: svcca {r1['kept_a']}/{r1['kept_b']}, "
                 f"numpy {r2['kept_a']}/{r2['kept_b']}")
    c1, c2 = r1["correlations"], r2["correlations"]
    if len(c1) != len(c2):
        sys.exit(f"numbers of correlations differ: svcca {len(c1)}, numpy {len(c2)}")
    return max([abs(x - y) for x, y in zip(c1, c2)] + [abs(r1["mean"] - r2["mean"])])


def products_time(a_path, b_path, repeats=3):
    """Median seconds of Xc.T@Xc, Yc.T@Yc and Xc.T@Yc in float64 (conversion and centring untimed)."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.load(a_path)).to(torch.float64)
    y = torch.from_numpy(np.load(b_path)).to(torch.float64)
    xc = x - x.mean(dim=0)
    yc = y - y.mean(dim=0)
    del x, y
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        xx = xc.T @ xc
        yy = yc.T @ yc
        xy = xc.T @ yc
        times.append(time.perf_counter() - t0)
        del xx, yy, xy
    return statistics.median(times)


def bench_size(n, p, repeats, workdir):
    data = Path(workdir) / f"{n}x{p}"
    gen = [SVCCA, "example", data, "--datapoints", n, "--neurons-a", p, "--neurons-b", p,
           "--rank", 32, "--noise", 1.0, "--seed", 0, "--force"]
    log(f"[{n}x{p}] generating example pair")
    run_measured(gen)
    a, b = data / "a.npy", data / "b.npy"

    cmds = {
        "svcca": [str(SVCCA), "compare", str(a), str(b), "--method", "svcca", "--device", "cpu", "--json"],
        "numpy": [sys.executable, str(BASELINE), str(a), str(b), "--json"],
        "tight": [sys.executable, str(BASELINE), str(a), str(b), "--tight", "--json"],
    }
    wall, inner, peak, results = timed_runs(cmds, repeats, f"{n}x{p}", show_compute=False)
    worst = max(max(difference(r["svcca"], r["numpy"]), difference(r["svcca"], r["tight"])) for r in results)
    kept = (results[-1]["svcca"]["kept_a"], results[-1]["svcca"]["kept_b"])
    log(f"[{n}x{p}] kept {kept[0]}/{kept[1]}; worst |svcca - numpy| = {worst:.3g}"
        + above_tolerance(worst))

    log(f"[{n}x{p}] timing the matrix products in torch")
    floor = products_time(a, b)
    return {
        "size": f"{n} x {p}",
        "svcca": wall["svcca"],
        "numpy": wall["numpy"],
        "tight": wall["tight"],
        "products": floor,
        "svcca_peak": peak["svcca"],
        "numpy_peak": peak["numpy"],
        "diff": worst,
        "kept": kept,
        "inner_svcca": inner["svcca"],
        "inner_numpy": inner["numpy"],
        "inner_tight": inner["tight"],
    }


def markdown(rows, repeats):
    lines = header("SVCCA on CPU: `svcca compare` vs plain numpy") + [
        f"- Data: `svcca example --rank 32 --noise 1.0 --seed 0`, float32, same width on both sides; "
        f"median wall time of {repeats} run(s) per tool (whole process: start, load, compute), "
        "max peak RSS (GNU time `%e`, `%M`)",
        "",
        "| size | svcca (s) | numpy SVD+QR (s) | speed-up | tight numpy (s) | speed-up | matrix products alone (s) "
        "| svcca / products | svcca peak MiB | numpy peak MiB | max \\|diff\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['svcca']:.3f} | {r['numpy']:.3f} | {r['numpy'] / r['svcca']:.2f}x "
            f"| {r['tight']:.3f} | {r['tight'] / r['svcca']:.2f}x "
            f"| {r['products']:.3f} | {r['svcca'] / r['products']:.1f} | {r['svcca_peak']:.0f} "
            f"| {r['numpy_peak']:.0f} | {r['diff']:.1e} |"
        )
    lines += [
        "",
        "Matrix products alone: Xc.T@Xc, Yc.T@Yc and Xc.T@Yc on centred float64 tensors in torch "
        "(median of 3), the floor for a covariance-based method. Compute time each tool reports "
        "itself (JSON `seconds`, less svcca's `timings.read`: no process start or file loading):",
        "",
    ]
    for r in rows:
        lines.append(f"- {r['size']}: svcca {r['inner_svcca']:.3f} s, numpy {r['inner_numpy']:.3f} s, "
                     f"tight numpy {r['inner_tight']:.3f} s; "
                     f"kept {r['kept'][0]} / {r['kept'][1]} directions")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000x512,50000x256",
                   help="comma-separated DATAPOINTSxNEURONS (default: 10000x512,50000x256)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool per size (default 3)")
    args = parse_args(p)
    sizes = parse_sizes(args.sizes)

    rows = []
    with tempfile.TemporaryDirectory(prefix="svcca-bench-") as workdir:
        for n, p_ in sizes:
            rows.append(bench_size(n, p_, args.repeats, workdir))

    text = markdown(rows, args.repeats)
    emit(text, args.out)
    if any(r["diff"] > TOLERANCE for r in rows):
        sys.exit(f"svcca and numpy differ by more than {TOLERANCE:g}")


if __name__ == "__main__":
    main()
