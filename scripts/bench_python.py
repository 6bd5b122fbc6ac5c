"""Benchmark the Python module `svcca.compare` against Python peers, side by side in one process.

Run on demand from the repository root. The peers are not the project's: install them outside it
(not into .venv) and pass their locations:

    .venv/bin/pip install --target /work/peers/site --no-deps repsim cka-pytorch
    git clone https://github.com/google/svcca /work/peers/google-svcca
    .venv/bin/python scripts/bench_python.py --peers /work/peers/site --google-svcca /work/peers/google-svcca \
        [--size 10000x256] [--repeats 5] [--gram-size 2000] [--cka-batch 256] [--slow 20] [--threads N] [--skip NAME,...]

(repsim is built from its sdist: it needs a C++ compiler, and numpy, which .venv has. --no-deps
matters for cka-pytorch, whose requirements include lightning, torchvision, matplotlib and
seaborn: this script loads only its `hsic.py` and `utils.py`, which need torch alone. Of the google
clone it uses `cca_core.py` and `pwcca.py`. On a shared machine, `--threads 1` gives the steadier
ratios: two-thread BLAS slows down most when other work takes the cores.)

Data: A = Z M1 + noise, B = Z M2 + noise, Z a rank-32 standard normal latent, M1 and M2 standard
normal, noise standard normal (--noise), seed --seed, cast to --dtype (default float32, what
activations usually are). svcca.compare and every peer get the same arrays, datapoints x neurons.

Measures, each svcca.compare(..., device="cpu") against:
- SVCCA (keep 99% of the variance): google/svcca's tutorial recipe (centre, SVD each layer, keep
  the fewest directions holding >= 99% of the squared singular values (svcca's rule, the same k),
  cca_core.get_cca_similarity(..., epsilon=1e-10, verbose=False), mean of cca_coef1), in float64
  (that epsilon's regularisation is a ~1e-9 difference; with 0 the two agree to ~1e-14);
  repsim.svcca(..., "pillai"), not the same quantity (its 99% cut is applied to an orthonormal basis
  of each layer, and the sum of correlations is divided by the full rank), timed all the same.
- PWCCA: google/svcca's pwcca.compute_pwcca(A', B') in float64; repsim.pwcca (weights from centred
  activations, google's from uncentred ones: a different value).
- Linear CKA: cka-pytorch's estimator as its CKACalculator computes it (its `gram` and unbiased
  `hsic1` per minibatch of --cka-batch datapoints, summed, hsic_xy / sqrt(hsic_xx hsic_yy + 1e-4)),
  in the input dtype on the CPU: minibatch CKA, not the same number as CKA of all datapoints.
- Linear CKA on the first --gram-size datapoints (0: not run): the peers that build n x n Gram
  matrices, too slow at 10000 datapoints: repsim.cka(..., "linear", "gretton") (single-threaded
  Eigen, float64) and cka-pytorch with one batch of all those datapoints (unbiased HSIC).

Timing: time.perf_counter around each Python call, the conversions the call does itself included
(the google recipe's cast to float64 too). Per measure, one warm-up call each, then --repeats
rounds alternating svcca and the peers; medians. A peer whose warm-up takes longer than --slow
seconds is not repeated: its warm-up is its one timed run (marked "1 run"). Speed-up: the fastest
peer's median / svcca's median; the issue's target is >= 5x. max |diff|: of the similarity (and,
for the google SVCCA recipe, of every canonical correlation), over all runs.

Log lines go to stderr; at the end it prints the machine facts and a short Markdown table.
"""

import argparse
import importlib.metadata
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import cpu_model, load_average, log, thread_variables

TARGET = 5.0


def parse_size(text):
    try:
        n, p = text.lower().split("x")
        return int(n), int(p)
    except ValueError:
        sys.exit(f"bad size {text!r}: expected DATAPOINTSxNEURONS, e.g. 10000x256")


def make_pair(n, p, rank, noise, seed, dtype):
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, rank))
    a = z @ rng.standard_normal((rank, p)) + noise * rng.standard_normal((n, p))
    b = z @ rng.standard_normal((rank, p)) + noise * rng.standard_normal((n, p))
    return a.astype(dtype), b.astype(dtype)


def load_file(name, path):
    """A module from one file, without its package's __init__ (cka-pytorch's imports lightning)."""
    if not path.is_file():
        sys.exit(f"{path} does not exist: see this script's docstring for installing the peers")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blas_threads():
    """numpy's OpenBLAS thread count, read from the loaded library, or 'unknown'."""
    import ctypes
    import numpy  # noqa: F401  (loads the library)

    try:
        libs = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}
        for lib in sorted(libs):
            handle = ctypes.CDLL(lib)
            for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                           "openblas_get_num_threads"):
                if hasattr(handle, symbol):
                    return str(getattr(handle, symbol)())
    except OSError:
        pass
    return "unknown"


# ---------------------------------------------------------------- the callables

def variance_k(s, fraction):
    """svcca's variance rule: the fewest directions holding >= fraction of sum(s^2)."""
    import numpy as np

    v = np.asarray(s, dtype=np.float64) ** 2
    return int(np.searchsorted(np.cumsum(v) / v.sum(), fraction) + 1)


def peers(args, a, b):
    """{measure: (title, svcca callable, [(peer name, callable)])}; callables return
    (similarity, correlations or None)."""
    import numpy as np
    import torch

    import svcca

    sys.path.insert(0, str(args.google_svcca))
    sys.path.insert(0, str(args.peers))
    if not (args.google_svcca / "cca_core.py").is_file():
        sys.exit(f"{args.google_svcca}/cca_core.py does not exist: git clone https://github.com/google/svcca")
    import cca_core
    import pwcca
    import repsim
    repsim_svcca, repsim_pwcca, repsim_cka = repsim.svcca, repsim.pwcca, repsim.cka  # its lazy imports, untimed
    kdir = args.peers / "cka_pytorch"
    hsic1 = load_file("cka_pytorch_hsic", kdir / "hsic.py").hsic1
    gram = load_file("cka_pytorch_utils", kdir / "utils.py").gram

    def ours(method, x, y):
        def call():
            c = ours.last = svcca.compare(x, y, method=method, device="cpu")
            return c.similarity, (c.correlations if method == "svcca" else None)
        return call

    def google_svcca():
        x = np.asarray(a, dtype=np.float64).T  # neurons x datapoints, as its code wants
        y = np.asarray(b, dtype=np.float64).T
        cx = x - x.mean(axis=1, keepdims=True)
        cy = y - y.mean(axis=1, keepdims=True)
        _, s1, v1 = np.linalg.svd(cx, full_matrices=False)
        _, s2, v2 = np.linalg.svd(cy, full_matrices=False)
        k1, k2 = variance_k(s1, 0.99), variance_k(s2, 0.99)
        google_svcca.kept = (k1, k2)
        r = cca_core.get_cca_similarity(s1[:k1, None] * v1[:k1], s2[:k2, None] * v2[:k2],
                                        epsilon=1e-10, verbose=False)
        return float(np.mean(r["cca_coef1"])), r["cca_coef1"]

    def google_pwcca():
        x = np.asarray(a, dtype=np.float64).T
        y = np.asarray(b, dtype=np.float64).T
        return float(pwcca.compute_pwcca(x, y)[0]), None

    def cka_pytorch(x, y, batch):
        def call():
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            hxy = hxx = hyy = 0.0
            for s in range(0, tx.shape[0], batch):
                kx = gram(tx[s:s + batch].flatten(1)).unsqueeze(0)
                ky = gram(ty[s:s + batch].flatten(1)).unsqueeze(0)
                hxx = hxx + hsic1(kx, kx)
                hyy = hyy + hsic1(ky, ky)
                hxy = hxy + hsic1(kx, ky)
            return float(hxy / torch.sqrt(hxx * hyy + 1e-4)), None
        return call

    n, p = a.shape
    size = f"{n} x {p}"
    table = {
        "svcca": (f"SVCCA 99%, {size}", ours("svcca", a, b), [
            ("google/svcca recipe", google_svcca),
            ("repsim.svcca (other quantity)", lambda: (float(repsim_svcca([a, b], "pillai")[0, 1]), None)),
        ]),
        "pwcca": (f"PWCCA, {size}", ours("pwcca", a, b), [
            ("google/svcca compute_pwcca", google_pwcca),
            ("repsim.pwcca (other weights)", lambda: (float(repsim_pwcca([a, b])[0, 1]), None)),
        ]),
        "cka": (f"linear CKA, {size}", ours("cka", a, b), [
            (f"cka-pytorch (batches of {args.cka_batch})", cka_pytorch(a, b, args.cka_batch)),
        ]),
    }
    g = min(args.gram_size, n)
    if g > 0:
        ga, gb = np.ascontiguousarray(a[:g]), np.ascontiguousarray(b[:g])
        table["cka-gram"] = (f"linear CKA, {g} x {p}", ours("cka", ga, gb), [
            ("repsim.cka linear", lambda: (float(repsim_cka([ga, gb], "linear", "gretton")[0, 1]), None)),
            (f"cka-pytorch (one batch of {g})", cka_pytorch(ga, gb, g)),
        ])
    peer_words = {nm.split()[0] for _, _, ps in table.values() for nm, _ in ps}
    for name in args.skip:
        if name not in table and name not in peer_words:
            sys.exit(f"--skip {name!r}: no such measure or peer (measures: {', '.join(table)}; "
                     f"peers: {', '.join(sorted(peer_words))})")
    table = {key: (title, own, [(nm, f) for nm, f in ps if nm.split()[0] not in args.skip])
             for key, (title, own, ps) in table.items() if key not in args.skip}
    return table, ours, google_svcca


# ---------------------------------------------------------------- timing

def timed(call):
    t0 = time.perf_counter()
    result = call()
    return time.perf_counter() - t0, result


def difference(mine, theirs):
    import numpy as np

    (s1, c1), (s2, c2) = mine, theirs
    worst = abs(s1 - s2)
    if c1 is not None and c2 is not None:
        c1, c2 = np.asarray(c1), np.asarray(c2)
        if len(c1) != len(c2):
            return float("inf")
        worst = max(worst, float(np.max(np.abs(c1 - c2))) if len(c1) else 0.0)
    return worst


def bench_measure(key, title, own, peer_list, args, ours, google_svcca):
    names = ["svcca"] + [nm for nm, _ in peer_list]
    calls = dict(zip(names, [own] + [f for _, f in peer_list]))
    times = {nm: [] for nm in names}
    diffs = {nm: 0.0 for nm in names[1:]}
    values = {}
    svcca_timings = []
    slow = set()

    def run(nm, record):
        seconds, result = timed(calls[nm])
        values[nm] = result
        if nm == "svcca":
            if record:
                svcca_timings.append(ours.last.report.get("timings", {}))
        else:
            diffs[nm] = max(diffs[nm], difference(values["svcca"], result))
        if record:
            times[nm].append(seconds)
        log(f"[{key}] {'' if record else 'warm-up '}{nm}: {seconds:.3f} s, similarity {result[0]:.10f}")
        return seconds

    for nm in names:  # warm-up, svcca first (the peers' differences are against its value)
        seconds = run(nm, record=False)
        if nm != "svcca" and seconds > args.slow:
            slow.add(nm)
            times[nm].append(seconds)
            log(f"[{key}] {nm} took over {args.slow:g} s: its warm-up is its one timed run")
    if key == "svcca" and "google/svcca recipe" in names:
        kept = tuple(ours.last.kept)
        if kept != google_svcca.kept:
            log(f"[{key}] ** kept directions differ: svcca {kept}, google recipe {google_svcca.kept} **")
    for r in range(args.repeats):
        for nm in names:
            if nm not in slow:
                run(nm, record=True)
    med = {nm: statistics.median(v) for nm, v in times.items()}
    split = {k: statistics.median(t.get(k, 0.0) for t in svcca_timings)
             for k in ("read", "transform", "accumulate", "solve")}
    fastest = min(names[1:], key=lambda nm: med[nm]) if len(names) > 1 else None
    return {
        "title": title, "median": med, "runs": {nm: len(v) for nm, v in times.items()},
        "diff": diffs, "fastest": fastest, "similarity": values["svcca"][0], "kept": tuple(ours.last.kept),
        "split": split,
        "speedup": med[fastest] / med["svcca"] if fastest else None,
    }


# ---------------------------------------------------------------- report

def versions(args):
    import numpy
    import torch

    def dist(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    rev = subprocess.run(["git", "-C", str(args.google_svcca), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown commit"
    return (f"svcca {dist('svcca')}; repsim {dist('repsim')}; cka-pytorch {dist('cka-pytorch')}; "
            f"google/svcca git {rev}; numpy {numpy.__version__}; torch {torch.__version__}; "
            f"Python {sys.version.split()[0]}")


def report(rows, args, load, load_end):
    import torch

    n, p = args.size
    lines = [
        "",
        f"svcca.compare (device cpu) vs Python peers, {args.dtype} {n} x {p} pair (rank-32 latent, noise "
        f"{args.noise:g}, seed {args.seed}); medians of {args.repeats} alternating runs after one warm-up",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}, "
        f"numpy OpenBLAS threads {blas_threads()}, svcca's rayon threads "
        f"{os.environ.get('RAYON_NUM_THREADS', os.cpu_count())}; {thread_variables()}; load {load} at the start, {load_end} at the end",
        f"- {versions(args)}",
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| measure | svcca (s) | peers (s) | fastest peer | speed-up | >= 5x | max \\|diff\\| | svcca read / transform / accumulate / solve (s) |",
        "|---|---:|---|---|---:|---|---|---|",
    ]
    for r in rows:
        med, runs = r["median"], r["runs"]
        peer_cells = "; ".join(f"{nm} {med[nm]:.3f}" + (f" ({runs[nm]} run)" if runs[nm] == 1 else "")
                               for nm in med if nm != "svcca")
        diff_cells = "; ".join(f"{nm.split()[0]} {d:.1e}" for nm, d in r["diff"].items())
        split = " / ".join(f"{r['split'][k]:.3f}" for k in ("read", "transform", "accumulate", "solve"))
        if r["fastest"]:
            speed = f"{r['speedup']:.2f}x"
            met = "met" if r["speedup"] >= TARGET else "not met"
        else:
            speed, met = "", ""
        lines.append(f"| {r['title']} | {med['svcca']:.3f} | {peer_cells} | {r['fastest'] or ''} | {speed} | {met} "
                     f"| {diff_cells} | {split} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, required=True,
                        help="the folder repsim and cka-pytorch were installed into (pip install --target)")
    parser.add_argument("--google-svcca", type=Path, required=True,
                        help="a clone of https://github.com/google/svcca (cca_core.py, pwcca.py)")
    parser.add_argument("--size", type=parse_size, default=(10000, 256), help="DATAPOINTSxNEURONS (10000x256)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each call after the warm-up (5)")
    parser.add_argument("--gram-size", type=int, default=2000,
                        help="datapoints for the n x n Gram-matrix peers (2000; 0: skip that row)")
    parser.add_argument("--cka-batch", type=int, default=256, help="cka-pytorch's minibatch (256)")
    parser.add_argument("--slow", type=float, default=20.0,
                        help="a peer whose warm-up takes longer (seconds) is not repeated (20)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every library (OMP/OPENBLAS/MKL/RAYON_NUM_THREADS, torch); "
                             "0 (default): each library's own default")
    parser.add_argument("--skip", type=lambda s: [x for x in s.split(",") if x], default=[],
                        help="comma-separated measures (svcca, pwcca, cka, cka-gram) or peers, by the first word "
                             "of their name (google/svcca, repsim.svcca, repsim.pwcca, repsim.cka, "
                             "cka-pytorch) to leave out")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.cka_batch < 4:
        parser.error("--cka-batch must be at least 4 (hsic1's unbiased estimator)")

    if args.threads < 0:
        parser.error("--threads must be 0 or more")
    if args.threads:  # before numpy, torch and svcca are imported
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load = load_average()
    n, p = args.size
    log(f"data: {args.dtype} {n} x {p}, rank 32, noise {args.noise:g}, seed {args.seed}; load {load}")
    a, b = make_pair(n, p, 32, args.noise, args.seed, getattr(np, args.dtype))
    table, ours, google_svcca = peers(args, a, b)
    rows = [bench_measure(k, title, own, ps, args, ours, google_svcca) for k, (title, own, ps) in table.items()]
    for r in rows:
        log(f"{r['title']}: svcca similarity {r['similarity']:.10f}, kept {r['kept']}")
    print(report(rows, args, load, load_average()), end="")


if __name__ == "__main__":
    main()
