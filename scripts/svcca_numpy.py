"""Plain numpy SVCCA: the baseline that BENCHMARKS.md compares `svcca compare` against.

Written the way a numpy user would write it, in float64:
centre each neuron, SVD each layer, keep the fewest directions that explain
`keep` (default 0.99) of the variance, QR the reduced matrices, and take the
singular values of Qa.T @ Qb as the canonical correlations.

With --tight, the way a numpy user who knows the linear algebra would write it, still in
float64 (issue 15's second reference): centre, scatter matrices `A.T @ A` (numpy hands a
product of an array with its own transpose to BLAS's symmetric rank-k update, half the
work of a general product), their eigendecompositions, the kept directions whitened,
each layer projected onto them before the cross product, and the singular values of
that small product.

Usage: python scripts/svcca_numpy.py A.npy B.npy [--keep 0.99] [--tight] [--json]
A and B are (datapoints x neurons), with the same datapoints in the same order.
"""

import argparse
import json
import time

import numpy as np


def reduce(x, keep):
    """Centre, SVD, keep the top k directions; return (U[:, :k] * s[:k], k)."""
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    explained = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(explained, keep) + 1)  # smallest k with explained[k-1] >= keep
    k = min(k, len(s))
    return u[:, :k] * s[:k], k


def svcca(a, b, keep=0.99):
    ra, ka = reduce(a, keep)
    rb, kb = reduce(b, keep)
    qa, _ = np.linalg.qr(ra)
    qb, _ = np.linalg.qr(rb)
    rho = np.linalg.svd(qa.T @ qb, compute_uv=False)  # descending, min(ka, kb) values
    rho = np.minimum(rho, 1.0)
    return rho, ka, kb


def whitened(x, keep):
    """Centred x projected onto its top principal directions at unit variance, and k."""
    x = x - x.mean(axis=0)
    scatter = x.T @ x  # symmetric rank-k update (syrk)
    lam, v = np.linalg.eigh(scatter)
    lam, v = np.clip(lam[::-1], 0, None), v[:, ::-1]
    explained = np.cumsum(lam) / np.sum(lam)
    k = min(int(np.searchsorted(explained, keep) + 1), len(lam))
    return x @ (v[:, :k] / np.sqrt(lam[:k])), k


def svcca_tight(a, b, keep=0.99):
    za, ka = whitened(a, keep)
    zb, kb = whitened(b, keep)
    rho = np.linalg.svd(za.T @ zb, compute_uv=False)
    return np.minimum(rho, 1.0), ka, kb


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--keep", type=float, default=0.99)
    p.add_argument("--tight", action="store_true", help="scatter matrices, eigh, projection before the cross product")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    a = np.load(args.a).astype(np.float64)
    b = np.load(args.b).astype(np.float64)
    if a.shape[0] != b.shape[0]:
        p.error(f"different numbers of datapoints: {a.shape[0]} and {b.shape[0]}")

    t0 = time.perf_counter()
    rho, ka, kb = (svcca_tight if args.tight else svcca)(a, b, args.keep)
    seconds = time.perf_counter() - t0

    result = {
        "method": "svcca",
        "mean": float(rho.mean()),
        "correlations": rho.tolist(),
        "kept_a": ka,
        "kept_b": kb,
        "datapoints": a.shape[0],
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"SVCCA mean {result['mean']:.6f} (kept {ka} of {a.shape[1]}, {kb} of {b.shape[1]}; "
              f"{a.shape[0]} datapoints; {seconds:.3f} s)")


if __name__ == "__main__":
    main()
