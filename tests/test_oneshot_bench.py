"""benchmarks/oneshot_layer.py --quick: one real, tiny run of both parts
through worker processes on the backend under test (no timing asserted)."""

import json


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
