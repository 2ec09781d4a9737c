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
