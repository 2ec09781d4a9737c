"""plan_plot / PruningPlan.plot write real PNGs of scores vs threshold."""

import re
import sys

import pytest

from keras_prune import plots
from keras_prune.structured import plan_by_threshold
from keras_prune.structured import plan_pruning
from tests.test_plots import assert_png
from tests.test_structured import conv_bn_conv
from tests.test_structured_threshold import inverted_residual


def test_plan_plot_every_mode(tmp_path):
    model = inverted_residual()
    tao = plan_by_threshold(model, threshold=0.8, granularity=4,
                            min_num_filters=4)
    path = tmp_path / "tao.png"
    assert plots.plan_plot(tao, path) == path
    assert_png(path)

    ratio = plan_pruning(model, ratio=0.5, scope="global")
    other = tmp_path / "ratio.png"
    assert ratio.plot(other, title="mine") == other
    assert_png(other)

    budget = plan_pruning(model, target_macs=0.5)
    chosen = tmp_path / "budget.png"
    assert budget.plot(chosen, groups=["head", "out"]) == chosen
    assert_png(chosen, min_bytes=5_000)
    with pytest.raises(ValueError, match="No channel group 'nope'"):
        budget.plot(tmp_path / "x.png", groups=["nope"])
    bn = plan_pruning(model, criterion="bn")
    unscored = next(g["name"] for g in bn.groups if g["score"][0] is None)
    with pytest.raises(ValueError, match="has no scores to plot"):
        bn.plot(tmp_path / "x.png", groups=[unscored])


def test_nothing_to_plot(tmp_path):
    plan = plan_pruning(conv_bn_conv(), ignored_layers=["c1", "c2"])
    with pytest.raises(ValueError, match="no decided group"):
        plan.plot(tmp_path / "none.png")


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    plan = plan_pruning(conv_bn_conv())
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape(
            "pip install keras-prune[plots]")):
        plan.plot(tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
