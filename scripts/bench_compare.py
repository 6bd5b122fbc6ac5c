"""Benchmark `svcca compare --method svcca` against the plain numpy baseline.

Run on demand from the repository root:

    .venv/bin/python scripts/bench_compare.py [--sizes 10000x512,50000x256] [--repeats 3] [--out FILE]

For each size (datapoints x neurons) it writes an example float32 pair with
`svcca example`, runs `svcca compare ... --device cpu --json` and
`scripts/svcca_numpy.py ... --json` as separate processes (alternating, `--repeats`
times each), checks that they agree, and times the three float64 matrix products
a covariance-based method cannot avoid (Xc.T@Xc, Yc.T@Yc, Xc.T@Yc, with torch in
this process). It prints a Markdown section for BENCHMARKS.md, and with --out
also writes it to FILE.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVCCA = ROOT / "target" / "release" / "svcca"
BASELINE = ROOT / "scripts" / "svcca_numpy.py"
TIME = "/usr/bin/time"  # GNU time
TOLERANCE = 1e-6


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        try:
            n, p = item.lower().split("x")
            sizes.append((int(n), int(p)))
        except ValueError:
            sys.exit(f"bad size {item!r}: expected DATAPOINTSxNEURONS, e.g. 10000x512")
    return sizes


def run_measured(cmd):
    """Run cmd under /usr/bin/time; return (stdout, wall seconds, peak RSS in MiB) of that child.

    GNU time, not os.wait4 or getrusage(RUSAGE_CHILDREN) here: Linux charges a child that
    this process spawns with this process's own peak RSS (several hundred MiB once torch is
    loaded and the data converted), whereas the small time process forks the command itself.
    """
    with tempfile.NamedTemporaryFile("r") as timing, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        full = [TIME, "-f", "%e %M", "-o", timing.name] + [str(c) for c in cmd]
        proc = subprocess.run(full, stdout=out, stderr=err, cwd=ROOT)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        fields = timing.read().split()
    if proc.returncode != 0:
        sys.exit(f"command failed (exit {proc.returncode}): {shlex.join(map(str, cmd))}\n"
                 + stderr[-3000:])
    wall, peak_kib = float(fields[-2]), float(fields[-1])
    return stdout, wall, peak_kib / 1024


def parse_json(stdout, cmd):
    # The result is the one JSON object on stdout; log lines go to stderr.
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"no JSON on stdout of {shlex.join(map(str, cmd))}:\n{stdout[-2000:]}")


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


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


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
    }
    walls = {k: [] for k in cmds}
    peaks = {k: [] for k in cmds}
    inner = {k: [] for k in cmds}
    worst = 0.0
    for r in range(repeats):
        results = {}
        for name, cmd in cmds.items():  # alternate svcca, numpy, svcca, numpy, ...
            stdout, wall, peak = run_measured(cmd)
            results[name] = parse_json(stdout, cmd)
            walls[name].append(wall)
            peaks[name].append(peak)
            inner[name].append(results[name].get("seconds", float("nan")))
            log(f"[{n}x{p}] repeat {r + 1}/{repeats} {name}: {wall:.3f} s wall, {peak:.0f} MiB peak")
        worst = max(worst, difference(results["svcca"], results["numpy"]))
    kept = (results["svcca"]["kept_a"], results["svcca"]["kept_b"])
    log(f"[{n}x{p}] kept {kept[0]}/{kept[1]}; worst |svcca - numpy| = {worst:.3g}"
        + ("" if worst <= TOLERANCE else f"  ** ABOVE {TOLERANCE:g} **"))

    log(f"[{n}x{p}] timing the matrix products in torch")
    floor = products_time(a, b)
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "size": f"{n} x {p}",
        "svcca": med["svcca"],
        "numpy": med["numpy"],
        "products": floor,
        "svcca_peak": max(peaks["svcca"]),
        "numpy_peak": max(peaks["numpy"]),
        "diff": worst,
        "kept": kept,
        "inner_svcca": statistics.median(inner["svcca"]),
        "inner_numpy": statistics.median(inner["numpy"]),
    }


def markdown(rows, repeats):
    import numpy
    import torch

    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    version = subprocess.run([str(SVCCA), "--version"], capture_output=True, text=True).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(SVCCA.stat().st_mtime))
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    lines = [
        f"### SVCCA on CPU: `svcca compare` vs plain numpy ({date})",
        "",
        f"- Command: `{shlex.join(getattr(sys, 'orig_argv', [sys.executable] + sys.argv))}`",
        f"- CPU: {cpu_model()}, {cores} logical cores ({usable} usable by this process); "
        f"torch threads {torch.get_num_threads()}",
        f"- {version} (binary built {built}; git {rev}{' with uncommitted changes' if dirty else ''}); numpy {numpy.__version__}; torch {torch.__version__}; Python {sys.version.split()[0]}",
        f"- Data: `svcca example --rank 32 --noise 1.0 --seed 0`, float32, same width on both sides; "
        f"median wall time of {repeats} run(s) per tool (whole process: start, load, compute), "
        "max peak RSS (GNU time `%e`, `%M`)",
        "",
        "| size | svcca (s) | numpy (s) | speed-up (numpy/svcca) | matrix products alone (s) "
        "| svcca / products | svcca peak MiB | numpy peak MiB | max \\|diff\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['svcca']:.3f} | {r['numpy']:.3f} | {r['numpy'] / r['svcca']:.2f}x "
            f"| {r['products']:.3f} | {r['svcca'] / r['products']:.1f} | {r['svcca_peak']:.0f} "
            f"| {r['numpy_peak']:.0f} | {r['diff']:.1e} |"
        )
    lines += [
        "",
        "Matrix products alone: Xc.T@Xc, Yc.T@Yc and Xc.T@Yc on centred float64 tensors in torch "
        "(median of 3), the floor for a covariance-based method. Compute time each tool reports "
        "itself (JSON `seconds`, no process start or file loading):",
        "",
    ]
    for r in rows:
        lines.append(f"- {r['size']}: svcca {r['inner_svcca']:.3f} s, numpy {r['inner_numpy']:.3f} s; "
                     f"kept {r['kept'][0]} / {r['kept'][1]} directions")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000x512,50000x256",
                   help="comma-separated DATAPOINTSxNEURONS (default: 10000x512,50000x256)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool per size (default 3)")
    p.add_argument("--out", type=Path, help="also write the Markdown section to this file")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    if not SVCCA.is_file():
        sys.exit(f"{SVCCA} does not exist: build it first with scripts/setup.sh")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed to measure peak memory: install it "
                 "(e.g. apt-get install time)")
    sizes = parse_sizes(args.sizes)

    rows = []
    with tempfile.TemporaryDirectory(prefix="svcca-bench-") as workdir:
        for n, p_ in sizes:
            rows.append(bench_size(n, p_, args.repeats, workdir))

    text = markdown(rows, args.repeats)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
        log(f"wrote {args.out}")
    if any(r["diff"] > TOLERANCE for r in rows):
        sys.exit(f"svcca and numpy differ by more than {TOLERANCE:g}")


if __name__ == "__main__":
    main()
