"""The one-shot benchmarks' --quick modes: oneshot_layer.py (both parts,
through worker processes on the backend under test), oneshot_lm.py and
oneshot_distribution.py (a JAX worker) — real, tiny runs, no timing
asserted."""

import json

import keras
import pytest


def test_oneshot_layer_quick(bench, tmp_path):
    """Every method and pattern measured and in the expected order on the
    outlier layer; one speed round per thread count; the tables rendered;
    no results file written."""
    record = tmp_path / "record.json"
    document = bench("oneshot_layer").main(
        ["--quick", "--threads", "1", "--json", str(record)])
    data = json.loads(record.read_text())
    errors = {(r["pattern"], r["method"]): r for r in data["errors"]}
    assert len(errors) == 9
    for pattern in ("50 %", "2:4", "4:8"):
        assert errors[(pattern, "sparsegpt")]["kept"] == 0.5
        assert (errors[(pattern, "sparsegpt")]["error"]
                < errors[(pattern, "magnitude")]["error"])
    (speed,) = data["speed"]
    (round_,) = speed["rounds"]
    assert round_["bound_s"] > 0 and round_["sparsegpt_s"] > 0
    assert "| 2:4 |" in document and "SparseGPT / bound" in document
    assert not (tmp_path / "results").exists()  # --quick


def test_oneshot_lm_quick(bench, tmp_path):
    """A tiny decoder trained for a few steps (its weights cached under
    tmp_path, not the home directory), then pruned 2:4 by every method:
    every method in the table, the pruned kernels exactly half zero and
    2:4; a rerun loads the cached model instead of training."""
    record = tmp_path / "record.json"
    cache = tmp_path / "cache"
    argv = ["--quick", "--cache-dir", str(cache), "--json", str(record)]
    document = bench("oneshot_lm").main(argv)
    data = json.loads(record.read_text())
    assert not data["training"]["cached"]
    assert any(p.name.endswith(".weights.h5") for p in cache.iterdir())
    runs = {r["method"]: r for r in data["runs"]}
    assert set(runs) == {"magnitude", "wanda", "sparsegpt"}
    for run in runs.values():
        assert run["pattern"] == "2:4"
        assert run["sparsity"] == 0.5 and run["n_m_ok"]
        assert run["pruned_kernels"] == 6  # q, k, v, output, 2 feed-forward
        assert run["perplexity"] > 1
    assert len(data["outliers"]) == 6 and min(data["outliers"].values()) >= 1
    assert "| magnitude | Wanda | SparseGPT |" in document
    assert "| 2:4 |" in document
    assert not (tmp_path / "results").exists()  # --quick
    bench("oneshot_lm").main(argv)
    assert json.loads(record.read_text())["training"]["cached"]


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="keras.distribution runs on JAX (the worker "
                           "always runs JAX: once in the suite is enough)")
def test_oneshot_distribution_quick(bench, tmp_path):
    """A tiny MLP pruned by every method under one device, DataParallel and
    ModelParallel on 4 simulated devices, a JAX worker each: the same masks
    and kernels as one device everywhere, memory sampled on every device
    used, masks sharded as their kernels unless the layout map says
    otherwise."""
    record = tmp_path / "record.json"
    document = bench("oneshot_distribution").main(
        ["--quick", "--json", str(record)])
    runs = json.loads(record.read_text())["runs"]
    assert len(runs) == 12
    assert all(r["same_masks"] and r["same_kernels"] for r in runs)
    by = {(r["setting"], r["method"]): r for r in runs}
    for method in ("wanda", "sparsegpt", "magnitude"):
        assert by[("one device", method)]["devices_used"] == 1
        sharded = by[("ModelParallel", method)]
        assert sharded["devices_used"] == 4
        assert 0 < sharded["before"] < by[("one device", method)]["before"]
        assert sharded["peak"] >= sharded["after"] > sharded["before"]
        # Masks follow their kernels unless the layout map names them.
        assert sharded["mask_sharding"] == ["P('model', None)",
                                            "P(None, 'model')"]
        replicated = by[("ModelParallel, masks replicated", method)]
        assert replicated["mask_sharding"] == ["P(None, None)"]
        assert replicated["after"] > sharded["after"]
    assert "| ModelParallel | sparsegpt | yes | yes | 4 |" in document
    assert not (tmp_path / "results").exists()  # --quick
