"""``svcca.compare``: two layers' activations compared by the Rust code behind
``svcca compare``, with the same settings, defaults and numbers."""

from dataclasses import dataclass, field
import json
import warnings

import numpy as np

from . import _svcca


def as_array(x, name):
    """``x`` (a numpy array, a torch tensor, or anything numpy.asarray takes) as a float32
    or float64 numpy array: half precision (float16, bfloat16) is widened to float32
    exactly, as ``svcca compare`` widens it when it reads a file; torch tensors are
    detached and copied to the host."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x.cpu().numpy()
    a = np.asarray(x)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: a {a.dtype} array: expected float16, bfloat16, float32 or float64")
    return a


@dataclass
class Comparison:
    """The result of :func:`compare`; ``float(result)`` is the similarity.

    similarity: the mean canonical correlation (SVCCA, CCA), the PWCCA value or linear CKA.
    correlations: the canonical correlations, descending (empty for CKA).
    weights: PWCCA's weight of each correlation (None otherwise).
    kept: directions kept (SVCCA, CCA) or neurons used (PWCCA, CKA), of A and of B.
    neurons, constant: neurons of A and B, and those dropped for being constant.
    settings: every setting the comparison used, defaults included (as ``keep``, the rule
        and its value, e.g. ``{"rule": "variance", "value": 0.99}``).
    conv: for 4-D inputs, how they were compared (``svcca compare --json``'s ``conv``).
    chance: with ``baseline=N``, the chance level: mean, std, above (similarity - mean),
        the shuffles' similarities.
    report: the whole report, as ``svcca compare --json`` prints it.
    """

    similarity: float
    correlations: np.ndarray
    weights: "np.ndarray | None"
    method: str
    kept: tuple
    neurons: tuple
    constant: tuple
    datapoints: int
    settings: dict
    conv: "dict | None"
    chance: "dict | None"
    device: str
    warnings: list
    seconds: float
    report: dict = field(repr=False)

    def __float__(self):
        return float(self.similarity)


def compare(a, b, method="svcca", keep=None, *, keep_rule=None, top_k=None, conv=None, conv_dense=None,
            layout="nchw", dft_cut="global", max_datapoints=100_000, seed=0, baseline=None, device="auto",
            memory_budget="2G", names=("a", "b")):
    """The similarity of two layers' activations on the same datapoints, in the same order.

    a, b: numpy arrays or torch tensors, float16, bfloat16, float32 or float64;
        datapoints x neurons (2-D), or datapoints x C x H x W (4-D conv activations; with
        ``layout="nhwc"``, channels last).
    method: "svcca" (default), "cca", "pwcca" or "cka".
    keep: SVCCA: the fraction kept (default 0.99) of the variance, or with
        ``keep_rule="singular"`` of the sum of the singular values; ``top_k``: exactly k
        directions instead.
    conv: two 4-D inputs: "dft", "flatten" or "avgpool"; ``conv_dense``: a 4-D input
        against a 2-D one: "flatten" or "avgpool". ``dft_cut``, ``max_datapoints``,
        ``seed``: as ``svcca compare``'s options of those names.
    baseline: N shuffles of A's datapoints for the chance level (at least 2).
    device: "cpu", "cuda", "cuda:N" or "auto" (a GPU when there is one).
    memory_budget: host memory the data's working copies may take ("2G", "512M", or bytes).
    names: how messages and the report name a and b.

    Every setting and default is ``svcca compare``'s, and so are the numbers: the same
    arrays give the same result as ``svcca compare`` of them saved as files. Bad input
    raises ValueError (TypeError for an array of another dtype) naming it.
    """
    name_a, name_b = names
    a = as_array(a, name_a)
    b = as_array(b, name_b)
    text = _svcca.compare(a, b, name_a=name_a, name_b=name_b, method=method, keep=keep, keep_rule=keep_rule,
                          top_k=top_k, conv=conv, conv_dense=conv_dense, layout=layout, dft_cut=dft_cut,
                          max_datapoints=max_datapoints, seed=seed, baseline=baseline, device=device,
                          memory_budget=str(memory_budget))
    report = json.loads(text)
    for w in report["warnings"]:
        warnings.warn(w, stacklevel=2)
    settings = {
        "method": report["method"], "keep": report["keep"], "conv": conv, "conv_dense": conv_dense, "layout": layout,
        "dft_cut": dft_cut, "max_datapoints": max_datapoints, "seed": seed, "baseline": baseline,
        "device": report["device"],
    }
    weights = report.get("weights")
    return Comparison(
        similarity=report["mean"],
        correlations=np.asarray(report["correlations"], dtype=np.float64),
        weights=None if weights is None else np.asarray(weights, dtype=np.float64),
        method=report["method"],
        kept=(report["kept_a"], report["kept_b"]),
        neurons=(report["neurons_a"], report["neurons_b"]),
        constant=(report["constant_a"], report["constant_b"]),
        datapoints=report["datapoints"],
        settings=settings,
        conv=report.get("conv"),
        chance=report.get("chance"),
        device=report["device"],
        warnings=report["warnings"],
        seconds=report["seconds"],
        report=report,
    )
