"""Benchmark `svcca compare --conv dft` against plain numpy, and the DFT method against brute force.

Run on demand from the repository root:

    .venv/bin/python scripts/bench_dft.py [--size 2000x64x16x16] [--brute 2000x8x8x8]
                                          [--repeats 3] [--seed 0] [--out FILE]

Sizes are DATAPOINTS x CHANNELS x HEIGHT x WIDTH; the data is float32 NCHW, made in numpy
with a fixed seed and written to a temporary directory (generation is not timed).

1. Main comparison (--size): A ~ N(0, 1); B = relu(circular 3x3 convolution of A, C -> C
   channels, weights ~ N(0, 1/(9 C))) + 0.5 N(0, 1). Times
   `svcca compare A B --conv dft --method cca --device cpu --json` against
   `scripts/dft_numpy.py A B --json` as separate processes (alternating, --repeats times
   each) and checks that they agree (same number of coefficients; sorted coefficients and
   mean within 1e-6).
2. DFT vs brute force (--brute): translation-invariant data, made like the fixture
   case5exact: N0 = N / (H W) base pairs (A0 ~ N(0, 1), B0 = relu(circular conv of A0)
   + 0.3 N(0, 1)), then every one of the H W cyclic shifts of each base pair (the same
   shift on both sides), so N = N0 H W. On such data the DFT method's coefficients equal
   those of plain CCA of the flattened (N x H W C) layers exactly. Times
   `svcca compare A4 B4 --conv dft --method cca` against
   `svcca compare A2 B2 --method cca` on the flattened files and checks that the sorted
   coefficients agree within 1e-6.

Wall time and peak RSS of each process come from GNU time (`%e`, `%M`); the table reports
medians of the wall times, the largest peak, and the compute time each tool reports itself
(JSON `seconds`). It prints a dated Markdown record (for benches/records/; its figures
replace those in BENCHMARKS.md's table), and with --out also writes it to FILE.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_common import (ROOT, SVCCA, TOLERANCE, above_tolerance, emit, header, parse_args,
                          load_average, log, thread_variables, timed_runs)

BASELINE = ROOT / "scripts" / "dft_numpy.py"


def parse_shape(text, option):
    try:
        n, c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        sys.exit(f"bad {option} {text!r}: expected DATAPOINTSxCHANNELSxHEIGHTxWIDTH, e.g. 2000x64x16x16")
    if min(n, c, h, w) < 1:
        sys.exit(f"bad {option} {text!r}: every dimension must be positive")
    return n, c, h, w


def difference(r1, r2, names):
    """Largest absolute difference of the sorted coefficients and of the mean; exits on a count mismatch."""
    c1 = sorted(r1["correlations"], reverse=True)
    c2 = sorted(r2["correlations"], reverse=True)
    if len(c1) != len(c2):
        sys.exit(f"numbers of coefficients differ: {names[0]} {len(c1)}, {names[1]} {len(c2)}")
    return max([abs(x - y) for x, y in zip(c1, c2)] + [abs(r1["mean"] - r2["mean"])])


# ---------------------------------------------------------------- data

def conv_relu_noise(x, rng, noise):
    """relu(circular 3x3 convolution of x (NHWC), C -> C channels) + noise * N(0, 1), float32 NHWC.

    out[n, h, w, o] = sum_{dh, dw in -1..1} sum_c x[n, (h+dh)%H, (w+dw)%W, c] K[dh+1, dw+1, c, o]
    """
    c = x.shape[3]
    k = rng.normal(0.0, np.sqrt(1.0 / (9 * c)), size=(3, 3, c, c)).astype(np.float32)
    out = np.zeros(x.shape, dtype=np.float32)
    for dh in (-1, 0, 1):
        for dw in (-1, 0, 1):
            out += np.roll(x, shift=(-dh, -dw), axis=(1, 2)) @ k[dh + 1, dw + 1]
    np.maximum(out, 0.0, out=out)
    out += noise * rng.standard_normal(x.shape, dtype=np.float32)
    return out


def save_nchw(path, x_nhwc):
    np.save(path, np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


def make_conv_pair(shape, seed, workdir):
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, h, w, c), dtype=np.float32)
    b = conv_relu_noise(a, rng, 0.5)
    pa, pb = workdir / "a.npy", workdir / "b.npy"
    save_nchw(pa, a)
    save_nchw(pb, b)
    return pa, pb


def make_shifted_pair(shape, seed, workdir):
    """Every cyclic shift of N0 base pairs; returns (4-D A, 4-D B, 2-D A, 2-D B, N, N0)."""
    n, c, h, w = shape
    n0 = n // (h * w)
    rng = np.random.default_rng(seed + 1)
    a0 = rng.standard_normal((n0, h, w, c), dtype=np.float32)
    b0 = conv_relu_noise(a0, rng, 0.3)
    shifts = [(sh, sw) for sh in range(h) for sw in range(w)]
    # (N0, H*W shifts, H, W, C) -> (N0*H*W, H, W, C): base image major, shift minor
    a = np.stack([np.roll(a0, s, axis=(1, 2)) for s in shifts], axis=1).reshape(n0 * h * w, h, w, c)
    b = np.stack([np.roll(b0, s, axis=(1, 2)) for s in shifts], axis=1).reshape(n0 * h * w, h, w, c)
    paths = [workdir / name for name in ("a4.npy", "b4.npy", "a2.npy", "b2.npy")]
    save_nchw(paths[0], a)
    save_nchw(paths[1], b)
    np.save(paths[2], a.reshape(a.shape[0], -1))  # flattened in NHWC order
    np.save(paths[3], b.reshape(b.shape[0], -1))
    return (*paths, a.shape[0], n0)


# ---------------------------------------------------------------- runs

def compared_runs(cmds, repeats, tag, names):
    """Time the two commands of cmds (timed_runs) and check that they agree.

    names: what the log calls the two, in the order of cmds. Returns the fields of a table row
    that both sections have, and the last result of the first command.
    """
    first, second = cmds
    wall, inner, peak, results = timed_runs(cmds, repeats, tag)
    worst = max(difference(r[first], r[second], names) for r in results)
    last = results[-1][first]
    log(f"[{tag}] {len(last['correlations'])} coefficients, mean {last['mean']:.6f}; "
        f"worst |{names[0]} - {names[1]}| = {worst:.3g}" + above_tolerance(worst))
    row = {"wall": wall, "inner": inner, "peak": peak, "diff": worst,
           "coefs": len(last["correlations"]), "mean": last["mean"]}
    return row, last


def bench_main(shape, repeats, seed, workdir):
    n, c, h, w = shape
    tag = "x".join(map(str, shape))
    log(f"[{tag}] generating conv pair (seed {seed})")
    a, b = make_conv_pair(shape, seed, workdir)
    cmds = {
        "svcca": [SVCCA, "compare", a, b, "--conv", "dft", "--method", "cca", "--device", "cpu", "--json"],
        "numpy": [sys.executable, BASELINE, a, b, "--json"],
    }
    row, last = compared_runs(cmds, repeats, tag, ("svcca", "numpy"))
    return {
        "size": f"{n} x {c} x {h} x {w}", **row,
        "computed": last.get("conv", {}).get("frequencies_computed"),
    }


def bench_brute(shape, repeats, seed, workdir):
    n, c, h, w = shape
    tag = "brute " + "x".join(map(str, shape))
    if n // (h * w) < 2:
        sys.exit(f"--brute {'x'.join(map(str, shape))}: needs at least 2 x H x W = {2 * h * w} "
                 "datapoints (N0 = N / (H W) base pairs, each in every cyclic shift)")
    log(f"[{tag}] generating translation-invariant pair (seed {seed + 1})")
    a4, b4, a2, b2, n_used, n0 = make_shifted_pair(shape, seed, workdir)
    if n_used != n:
        log(f"[{tag}] {n} is not a multiple of H*W = {h * w}: using {n_used} datapoints "
            f"({n0} base pairs x {h * w} shifts)")
    if n0 - 1 < c:
        log(f"[{tag}] warning: {n0} base pairs for {c} channels: the per-frequency CCA is "
            "degenerate (rank-deficient after centring); use more datapoints")
    cmds = {
        "dft": [SVCCA, "compare", a4, b4, "--conv", "dft", "--method", "cca", "--device", "cpu", "--json"],
        "brute": [SVCCA, "compare", a2, b2, "--method", "cca", "--device", "cpu", "--json"],
    }
    row, _ = compared_runs(cmds, repeats, tag, ("dft", "brute force"))
    return {"size": f"{n_used} x {c} x {h} x {w}", "n0": n0, "flat": h * w * c, **row}


# ---------------------------------------------------------------- report

def markdown(main_row, brute_row, repeats, seed, load):
    m, b = main_row, brute_row
    lines = header("Conv layers, DFT method on CPU: `svcca compare --conv dft` vs plain numpy, "
                   "and vs brute force",
                   cpu_extra=(thread_variables(), f"load average at start {load}")) + [
        f"- Median wall time of {repeats} run(s) per tool, alternating (whole process: start, load, "
        "compute); compute = the JSON `seconds` each tool reports, less svcca's `timings.read` (no process start or loading), "
        "median; max peak RSS (GNU time `%e`, `%M`). svcca runs with `--device cpu`.",
        "",
        f"**svcca vs numpy** (`scripts/dft_numpy.py`: float64 `np.fft.fft2`, then a Python loop over "
        f"all H*W frequencies, complex QR + SVD each). Data: float32 NCHW, seed {seed}, "
        "A ~ N(0,1), B = relu(circular 3x3 conv of A, C -> C) + 0.5 N(0,1).",
        "",
        "| N x C x H x W | svcca wall (s) | numpy wall (s) | speed-up | svcca compute (s) "
        "| numpy compute (s) | compute speed-up | svcca peak MiB | numpy peak MiB | coefficients | max \\|diff\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {m['size']} | {m['wall']['svcca']:.3f} | {m['wall']['numpy']:.3f} "
        f"| {m['wall']['numpy'] / m['wall']['svcca']:.2f}x | {m['inner']['svcca']:.3f} "
        f"| {m['inner']['numpy']:.3f} | {m['inner']['numpy'] / m['inner']['svcca']:.2f}x "
        f"| {m['peak']['svcca']:.0f} | {m['peak']['numpy']:.0f} | {m['coefs']} | {m['diff']:.1e} |",
        "",
        f"Mean correlation {m['mean']:.6f}; svcca computed {m['computed']} of the frequencies "
        "(conjugate-symmetric ones once), numpy all of them.",
        "",
        f"**DFT vs brute force** (both `svcca compare --method cca`): translation-invariant data, "
        f"{b['n0']} base pairs (A0 ~ N(0,1), B0 = relu(circular 3x3 conv of A0) + 0.3 N(0,1)) in "
        f"every cyclic shift; brute force = plain CCA of the flattened layers "
        f"({b['flat']} neurons per side, NHWC order).",
        "",
        "| N x C x H x W | DFT wall (s) | brute wall (s) | brute / DFT | DFT compute (s) "
        "| brute compute (s) | brute / DFT compute | DFT peak MiB | brute peak MiB | coefficients | max \\|diff\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {b['size']} | {b['wall']['dft']:.3f} | {b['wall']['brute']:.3f} "
        f"| {b['wall']['brute'] / b['wall']['dft']:.2f}x | {b['inner']['dft']:.3f} "
        f"| {b['inner']['brute']:.3f} | {b['inner']['brute'] / b['inner']['dft']:.2f}x "
        f"| {b['peak']['dft']:.0f} | {b['peak']['brute']:.0f} | {b['coefs']} | {b['diff']:.1e} |",
        "",
        f"Mean correlation {b['mean']:.6f}; max |diff| compares the sorted coefficient lists "
        "(and the means), which the DFT theorem makes equal on such data.",
    ]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="2000x64x16x16",
                   help="main comparison, DATAPOINTSxCHANNELSxHEIGHTxWIDTH (default 2000x64x16x16)")
    p.add_argument("--brute", default="2000x8x8x8",
                   help="DFT vs brute force, DATAPOINTSxCHANNELSxHEIGHTxWIDTH; datapoints are rounded "
                        "down to a multiple of HEIGHT*WIDTH (default 2000x8x8x8)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    args = parse_args(p)
    load = load_average()  # the timings are only as good as an idle machine
    shape = parse_shape(args.size, "--size")
    brute = parse_shape(args.brute, "--brute")

    with tempfile.TemporaryDirectory(prefix="svcca-bench-dft-") as workdir:
        workdir = Path(workdir)
        (workdir / "main").mkdir()
        (workdir / "brute").mkdir()
        main_row = bench_main(shape, args.repeats, args.seed, workdir / "main")
        brute_row = bench_brute(brute, args.repeats, args.seed, workdir / "brute")

    text = markdown(main_row, brute_row, args.repeats, args.seed, load)
    emit(text, args.out)
    bad = [name for name, row in (("svcca vs numpy", main_row), ("DFT vs brute force", brute_row))
           if row["diff"] > TOLERANCE]
    if bad:
        sys.exit(f"differences above {TOLERANCE:g}: {', '.join(bad)}")


if __name__ == "__main__":
    main()
