"""Plain numpy DFT-CCA of two conv layers: the baseline for `svcca compare --conv dft`.

Written the way a numpy user would write it (like google/svcca's dft_ccas.fourier_ccas),
in float64 / complex128: a 2-D FFT over the spatial axes, then, looping in Python over
every one of the H*W frequencies, a complex CCA of the (datapoints x channels) matrices:
centre each column over the datapoints, QR each side, and take the singular values of
Qa^H @ Qb (clipped to <= 1) as the canonical correlations. The similarity is the plain
mean of all H*W*min(C1, C2) coefficients.

Usage: python scripts/dft_numpy.py A.npy B.npy [--layout nchw|nhwc] [--json]
A and B are 4-D (NCHW by default), with the same datapoints in the same order and the
same spatial size (this script does not crop spectra of different sizes).
"""

import argparse
import json
import sys
import time

import numpy as np


def cca(x, y):
    """Canonical correlations (descending) of two complex (datapoints x features) matrices."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    qx, _ = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    rho = np.linalg.svd(qx.conj().T @ qy, compute_uv=False)
    return np.minimum(rho, 1.0)


def fourier_ccas(a, b, layout="nchw"):
    """Per-frequency CCA; returns a list of ((i, j), correlations)."""
    axes = (2, 3) if layout == "nchw" else (1, 2)
    fa = np.fft.fft2(a, axes=axes)
    fb = np.fft.fft2(b, axes=axes)
    h, w = (a.shape[2], a.shape[3]) if layout == "nchw" else (a.shape[1], a.shape[2])
    results = []
    for i in range(h):
        for j in range(w):
            if layout == "nchw":
                x, y = fa[:, :, i, j], fb[:, :, i, j]
            else:
                x, y = fa[:, i, j, :], fb[:, i, j, :]
            results.append(((i, j), cca(x, y)))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw",
                   help="axis order of both inputs (default nchw)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    a = np.load(args.a).astype(np.float64)
    b = np.load(args.b).astype(np.float64)
    if a.ndim != 4 or b.ndim != 4:
        p.error(f"inputs must be 4-D, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        p.error(f"different numbers of datapoints: {a.shape[0]} and {b.shape[0]}")
    spatial = (lambda s: s[2:]) if args.layout == "nchw" else (lambda s: s[1:3])
    if spatial(a.shape) != spatial(b.shape):
        p.error(f"different spatial sizes {spatial(a.shape)} and {spatial(b.shape)} "
                f"({args.layout}): this script needs the same H x W on both sides")
    channels = max(a.shape[1], b.shape[1]) if args.layout == "nchw" else max(a.shape[3], b.shape[3])
    if a.shape[0] - 1 < channels:
        print(f"warning: {a.shape[0]} datapoints for up to {channels} channels: after centring "
              "the per-frequency matrices are rank-deficient and the CCA is degenerate",
              file=sys.stderr)

    t0 = time.perf_counter()
    per_freq = fourier_ccas(a, b, args.layout)
    rho = np.sort(np.concatenate([r for _, r in per_freq]))[::-1]
    seconds = time.perf_counter() - t0

    result = {
        "method": "cca",
        "conv": "dft",
        "mean": float(rho.mean()),
        "correlations": rho.tolist(),
        "datapoints": a.shape[0],
        "frequencies": len(per_freq),
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"DFT-CCA mean {result['mean']:.6f} ({len(per_freq)} frequencies, {rho.size} "
              f"coefficients; {a.shape[0]} datapoints; {seconds:.3f} s)")


if __name__ == "__main__":
    main()
