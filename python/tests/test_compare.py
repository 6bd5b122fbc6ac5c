"""svcca.compare: the command line's numbers through Python (to 1e-12), the reference
implementation's (google/svcca, tests/fixtures/svcca_ref), and its refusals."""

import json

import numpy as np
import pytest
import torch

import svcca
from conftest import FIXTURES, cli_compare

TIGHT = 1e-12


def pair(rows=600, a_cols=24, b_cols=16, seed=0, dtype=np.float32):
    """Two layers sharing a rank-8 signal, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 8))
    a = z @ rng.standard_normal((8, a_cols)) + 0.5 * rng.standard_normal((rows, a_cols))
    b = np.tanh(z @ rng.standard_normal((8, b_cols))) + 0.5 * rng.standard_normal((rows, b_cols))
    return a.astype(dtype), b.astype(dtype)


def conv_pair(rows=96, seed=1, dtype=np.float32):
    """Two conv layers, N x C x H x W: B a noisy ReLU of a channel mix of A."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, 6, 5, 5))
    b = np.maximum(np.einsum("nchw,cd->ndhw", a, rng.standard_normal((6, 4))), 0) + 0.3 * rng.standard_normal((rows, 4, 5, 5))
    return a.astype(dtype), b.astype(dtype)


def assert_same(got, want):
    """A Comparison against `svcca compare --json`'s report: every number to 1e-12."""
    assert got.method == want["method"]
    assert got.kept == (want["kept_a"], want["kept_b"])
    assert abs(got.similarity - want["mean"]) <= TIGHT, (got.similarity, want["mean"])
    assert len(got.correlations) == len(want["correlations"])
    if len(got.correlations):
        assert np.max(np.abs(got.correlations - np.asarray(want["correlations"]))) <= TIGHT
    if "weights" in want:
        assert np.max(np.abs(got.weights - np.asarray(want["weights"]))) <= TIGHT
    if "chance" in want:
        assert np.max(np.abs(np.asarray(got.chance["similarities"]) - np.asarray(want["chance"]["similarities"]))) <= TIGHT


CASES = [
    # (name, kwargs of svcca.compare, the same as svcca compare's options)
    ("svcca", {}, []),
    ("svcca-top-k", {"top_k": 5}, ["--top-k", "5"]),
    ("svcca-singular", {"keep": 0.95, "keep_rule": "singular"}, ["--keep", "0.95", "--keep-rule", "singular"]),
    ("cca", {"method": "cca"}, ["--method", "cca"]),
    ("pwcca", {"method": "pwcca"}, ["--method", "pwcca"]),
    ("cka", {"method": "cka"}, ["--method", "cka"]),
    ("baseline", {"baseline": 3, "seed": 7}, ["--baseline=3", "--seed", "7"]),
    ("small-budget", {"memory_budget": "64K"}, ["--memory-budget", "64K"]),
]


@pytest.mark.parametrize("name,kwargs,options", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["float32", "float64", "float16"])
def test_dense_layers_give_the_command_lines_numbers(tmp_path, svcca_binary, name, kwargs, options, dtype):
    a, b = pair(dtype=dtype)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    want = cli_compare(svcca_binary, tmp_path / "a.npy", tmp_path / "b.npy", *options)
    got = svcca.compare(a, b, device="cpu", **kwargs)
    assert_same(got, want)
    if name == "small-budget":
        assert got.report["blocks"] > 1, "the budget should stream the arrays in blocks"


CONV_CASES = [
    ("dft", {"conv": "dft"}, ["--conv", "dft"]),
    ("dft-per-frequency", {"conv": "dft", "dft_cut": "per-frequency"}, ["--conv", "dft", "--dft-cut", "per-frequency"]),
    ("flatten", {"conv": "flatten", "max_datapoints": 1000, "seed": 3}, ["--conv", "flatten", "--max-datapoints", "1000", "--seed", "3"]),
    ("avgpool-pwcca", {"conv": "avgpool", "method": "pwcca"}, ["--conv", "avgpool", "--method", "pwcca"]),
]


@pytest.mark.parametrize("name,kwargs,options", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_layers_give_the_command_lines_numbers(tmp_path, svcca_binary, name, kwargs, options):
    a, b = conv_pair()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    want = cli_compare(svcca_binary, tmp_path / "a.npy", tmp_path / "b.npy", *options)
    assert_same(svcca.compare(a, b, device="cpu", **kwargs), want)


def test_a_conv_layer_against_a_dense_one_and_channels_last(tmp_path, svcca_binary):
    a, _ = conv_pair(rows=400)
    _, b = pair(rows=400)
    nhwc = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    np.save(tmp_path / "a.npy", nhwc)
    np.save(tmp_path / "b.npy", b)
    for how in ["flatten", "avgpool"]:
        want = cli_compare(svcca_binary, tmp_path / "a.npy", tmp_path / "b.npy", "--conv-dense", how, "--layout", "nhwc")
        assert_same(svcca.compare(nhwc, b, conv_dense=how, layout="nhwc", device="cpu"), want)
        # The same layer given NCHW is the same comparison.
        assert abs(svcca.compare(a, b, conv_dense=how, device="cpu").similarity - want["mean"]) <= 1e-9


def test_torch_tensors_in_any_float_kind_are_their_widened_arrays(tmp_path, svcca_binary):
    a, b = pair(dtype=np.float32)
    for kind in [torch.float32, torch.float64, torch.float16, torch.bfloat16]:
        ta = torch.from_numpy(a).to(kind)
        # What the command line reads for that kind: the values widened exactly.
        np.save(tmp_path / "a.npy", ta.to(torch.float64 if kind == torch.float64 else torch.float32).numpy())
        np.save(tmp_path / "b.npy", b)
        want = cli_compare(svcca_binary, tmp_path / "a.npy", tmp_path / "b.npy")
        assert_same(svcca.compare(ta, torch.from_numpy(b), device="cpu"), want)
    # A tensor that requires grad is detached, not refused.
    t = torch.from_numpy(a).requires_grad_(True)
    assert svcca.compare(t, b, device="cpu").similarity == svcca.compare(a, b, device="cpu").similarity


def test_the_callers_arrays_are_left_as_they_were():
    a, b = pair(dtype=np.float64)
    a0, b0 = a.copy(), b.copy()
    svcca.compare(a, b, method="pwcca", device="cpu")
    svcca.compare(a[:, ::2], b, device="cpu")  # a strided view
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_the_settings_used_are_reported():
    a, b = pair()
    r = svcca.compare(a, b, device="cpu")
    assert r.settings["keep"] == {"rule": "variance", "value": 0.99}
    assert r.settings["method"] == "svcca" and r.settings["device"] == "cpu"
    assert float(r) == r.similarity
    assert svcca.compare(a, b, method="cca", device="cpu").settings["keep"] == {"rule": "all"}


def fixture(name):
    return np.load(FIXTURES / f"{name}.npy")


def test_google_svcca_reference_values():
    """The reference implementation's own answers (tests/fixtures/svcca_ref/README.md),
    to 1e-6 as the Rust reference tests take them."""
    cases = json.loads((FIXTURES / "expected.json").read_text())["cases"]
    e = cases["case1_plain_cca"]["expected"]
    r = svcca.compare(fixture("case1_A"), fixture("case1_B"), method="cca", device="cpu")
    assert abs(r.similarity - e["mean_all_coefs"]) <= 1e-6 and len(r.correlations) == e["n_coefs"]
    e = cases["case2_svcca_99pct"]["expected"]
    r = svcca.compare(fixture("case2_A"), fixture("case2_B"), device="cpu")
    assert r.kept == (e["k_A"], e["k_B"]) and abs(r.similarity - e["mean_all_coefs"]) <= 1e-6
    e = cases["case4_pwcca"]["expected"]
    r = svcca.compare(fixture("case2_A"), fixture("case2_B"), method="pwcca", device="cpu")
    assert abs(r.similarity - e["pwcca"]) <= 1e-6
    e = cases["case5_dft_conv"]["expected"]
    r = svcca.compare(fixture("case5_A_nhwc"), fixture("case5_B_nhwc"), conv="dft", layout="nhwc", method="cca", device="cpu")
    assert abs(r.similarity - e["mean_over_all_frequencies_and_coefs"]) <= 1e-6


def test_bad_input_is_refused_naming_it():
    a, b = pair()
    with pytest.raises(ValueError, match=r"acts1 has 600 datapoints \(rows\) but acts2 has 10"):
        svcca.compare(a, b[:10], names=("acts1", "acts2"), device="cpu")
    with pytest.raises(TypeError, match="b: a int64 array"):
        svcca.compare(a, np.arange(600 * 3).reshape(600, 3), device="cpu")
    with pytest.raises(ValueError, match=r"a: expected a 2-D array .* got shape \[600, 4, 6\]"):
        svcca.compare(a.reshape(600, 4, 6), b, device="cpu")
    with pytest.raises(ValueError, match="keep, keep_rule and top_k apply to method=svcca only"):
        svcca.compare(a, b, method="cka", keep=0.5, device="cpu")
    with pytest.raises(ValueError, match=r"keep=1.5: the fraction must be in \(0, 1\]"):
        svcca.compare(a, b, keep=1.5, device="cpu")
    with pytest.raises(ValueError, match="method='spearman': expected one of 'svcca', 'cca', 'pwcca', 'cka'"):
        svcca.compare(a, b, method="spearman")
    with pytest.raises(ValueError, match="is 4-D .* pass --conv dft"):
        svcca.compare(conv_pair()[0], conv_pair()[1], device="cpu")
    with pytest.raises(ValueError, match="memory_budget"):
        svcca.compare(a, b, memory_budget="lots", device="cpu")
