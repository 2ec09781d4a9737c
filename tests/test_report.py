import io
import json
import re
import sys

import keras
import pytest

import keras_prune
from keras_prune.core.patterns import num_pruned
from keras_prune.analysis.report import SparsityReport
from keras_prune.analysis.report import WeightSparsity

L = keras.layers

SPARSITY = 0.7
# 10 filters: 70 % of each kernel is a whole number of weights.
CONV_KERNEL = 3 * 3 * 1 * 10
DENSE_KERNEL = 6 * 6 * 10 * 10


def seed_model(digits):
    """USERS.md question 1: Normalization, Conv2D, BatchNorm, Dense."""
    (x_train, _), _ = digits
    normalization = L.Normalization()
    normalization.adapt(x_train)
    inputs = keras.Input((8, 8, 1))
    x = normalization(inputs)
    x = L.Conv2D(10, 3)(x)
    x = L.BatchNormalization()(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10)(x)
    return keras.Model(inputs, outputs)


def pruned_seed_model(digits):
    pruned = keras_prune.prune_low_magnitude(
        seed_model(digits), keras_prune.ConstantSparsity(SPARSITY, 0)
    )
    keras_prune.update_masks(pruned, 0)
    return pruned


@pytest.fixture(scope="module")
def report(digits):
    """The report of the pruned seed model: plain data, safe to share."""
    return SparsityReport(pruned_seed_model(digits))


def row(report, path):
    (line,) = [
        l for l in str(report).splitlines() if l.split(" ")[0] == path
    ]
    return line


def test_pruned_kernels_report_exact_counts(report):
    conv = report["conv2d/kernel"]
    dense = report["dense/kernel"]
    assert (conv.zeros, conv.total) == (
        num_pruned(CONV_KERNEL, SPARSITY),
        CONV_KERNEL,
    )
    assert (dense.zeros, dense.total) == (
        num_pruned(DENSE_KERNEL, SPARSITY),
        DENSE_KERNEL,
    )
    for entry, cls in ((conv, "Conv2D"), (dense, "Dense")):
        assert entry.prunable and entry.reason == ""
        assert entry.layer_class == cls
        assert entry.sparsity == entry.zeros / entry.total
        assert entry.mask_sparsity == pytest.approx(entry.sparsity)
        assert entry.target == pytest.approx(SPARSITY)
    assert conv.layer == "conv2d" and conv.shape == (3, 3, 1, 10)


NOT_PRUNABLE = [
    ("normalization/mean", "Normalization", "statistic"),
    ("normalization/variance", "Normalization", "statistic"),
    ("normalization/count", "Normalization", "statistic"),
    ("conv2d/bias", "Conv2D", "bias"),
    ("batch_normalization/gamma", "BatchNormalization", "scale"),
    ("batch_normalization/beta", "BatchNormalization", "offset"),
    ("batch_normalization/moving_mean", "BatchNormalization", "statistic"),
    ("batch_normalization/moving_variance", "BatchNormalization", "statistic"),
    ("dense/bias", "Dense", "bias"),
]


def test_non_prunable_weights_say_why(report):
    for path, layer_class, keyword in NOT_PRUNABLE:
        entry = report[path]
        assert not entry.prunable, path
        assert entry.layer_class == layer_class, path
        assert keyword in entry.short_reason, path
        assert entry.mask_sparsity is None and entry.target is None
        assert row(report, path).endswith(f"no: {entry.short_reason}")


def test_statistics_are_never_counted_as_pruned(report):
    count = report["normalization/count"]

    # Keras 3's Normalization never updates `count`: a zero-valued scalar.
    assert (count.zeros, count.total) == (1, 1)
    assert not count.prunable
    assert "100.0 %" not in row(report, "normalization/count")
    assert report.prunable_total == CONV_KERNEL + DENSE_KERNEL
    assert report.prunable_zeros == num_pruned(
        CONV_KERNEL, SPARSITY
    ) + num_pruned(DENSE_KERNEL, SPARSITY)
    assert report.all_total == sum(e.total for e in report)
    assert report.all_zeros == sum(e.zeros for e in report)
    assert report.all_zeros >= report.prunable_zeros + count.zeros


def test_wrapper_state_is_not_listed_as_weights(report):
    paths = [e.path for e in report]
    assert len(paths) == len(set(paths)) == 11
    assert not any(
        word in path
        for path in paths
        for word in ("mask", "threshold", "pruning_step")
    )


def test_unprunable_layers_are_named_with_reasons(report):
    assert list(report.unprunable_layers) == [
        "normalization",
        "batch_normalization",
    ]
    assert "statistic" in report.unprunable_layers["normalization"]
    bn_reason = report.unprunable_layers["batch_normalization"]
    assert "scale" in bn_reason and "offset" in bn_reason
    assert "layers with nothing to prune:" in str(report)


def test_stripped_model_reports_the_same_zeros(digits):
    pruned = pruned_seed_model(digits)
    before = SparsityReport(pruned)
    after = SparsityReport.from_model(keras_prune.strip_pruning(pruned))

    def facts(report):
        return [
            (e.path, e.layer, e.layer_class, e.zeros, e.total, e.prunable,
             e.reason)
            for e in report
        ]

    assert facts(after) == facts(before)
    assert after.prunable_zeros == before.prunable_zeros
    assert all(e.mask_sparsity is None and e.target is None for e in after)


def test_dense_model_has_no_prunable_zeros(digits):
    report = SparsityReport(seed_model(digits))

    assert report.prunable_zeros == 0
    assert report.prunable_total == CONV_KERNEL + DENSE_KERNEL
    assert report["conv2d/kernel"].prunable
    assert report["conv2d/kernel"].target is None
    assert report.compression_ratio == pytest.approx(
        report.all_total / report.nonzero
    )


def test_target_is_none_before_the_first_mask_update(digits):
    pruned = keras_prune.prune_low_magnitude(
        seed_model(digits), keras_prune.ConstantSparsity(SPARSITY, 0)
    )
    entry = SparsityReport(pruned)["dense/kernel"]

    assert entry.target is None
    assert entry.mask_sparsity == 0.0
    assert entry.zeros == 0


def test_totals_and_compression_ratio(report):
    assert report.prunable_sparsity == pytest.approx(
        report.prunable_zeros / report.prunable_total
    )
    assert report.all_sparsity == pytest.approx(
        report.all_zeros / report.all_total
    )
    assert report.nonzero == report.all_total - report.all_zeros
    assert report.compression_ratio == pytest.approx(
        report.all_total / report.nonzero
    )
    assert report.compression_ratio > 3


def test_to_dict_and_to_json_round_trip(report):
    data = report.to_dict()

    assert json.loads(report.to_json()) == data
    assert json.loads(report.to_json(indent=None)) == data
    assert data["totals"]["prunable_zeros"] == report.prunable_zeros
    assert data["totals"]["compression_ratio"] == report.compression_ratio
    assert data["unprunable_layers"] == report.unprunable_layers
    conv = next(w for w in data["weights"] if w["path"] == "conv2d/kernel")
    assert conv["shape"] == [3, 3, 1, 10]
    assert conv["zeros"] == num_pruned(CONV_KERNEL, SPARSITY)
    assert conv["sparsity"] == report["conv2d/kernel"].sparsity
    assert conv["target"] == pytest.approx(SPARSITY)


def test_summary_text(report):
    text = report.summary()
    zeros = num_pruned(CONV_KERNEL, SPARSITY) + num_pruned(
        DENSE_KERNEL, SPARSITY
    )
    total = CONV_KERNEL + DENSE_KERNEL

    assert str(report) == text
    header = text.splitlines()[0]
    assert header.split() == [
        "weight", "layer", "class", "shape", "zeros/total", "sparsity",
        "mask", "target", "prunable",
    ]
    assert (
        f"prunable weights: {zeros:,}/{total:,} zero "
        f"({100 * zeros / total:.1f} %)" in text
    )
    assert (f"all weights: {report.all_zeros:,}/{report.all_total:,} zero"
            in text)
    conv = row(report, "conv2d/kernel").split()
    conv_zeros = num_pruned(CONV_KERNEL, SPARSITY)
    conv_percent = f"{100 * conv_zeros / CONV_KERNEL:.1f}"
    assert conv == [
        "conv2d/kernel", "conv2d", "Conv2D", "(3,", "3,", "1,", "10)",
        f"{num_pruned(CONV_KERNEL, SPARSITY):,}/{CONV_KERNEL:,}",
        conv_percent, "%", "70.0", "%", "70.0", "%", "yes",
    ]
    assert row(report, "dense/bias").split()[-5:] == [
        "-", "-", "-", "no:", "bias"
    ]
    assert row(report, "dense/bias").endswith("no: bias")
    # Columns are aligned: every row starts its class column at one offset.
    offset = header.index("class")
    assert row(report, "normalization/count")[offset:].startswith(
        "Normalization"
    )

    printed = []
    report.print_summary(print_fn=printed.append)
    assert printed == [text]
    assert f"prunable {zeros:,}/{total:,} zero" in repr(report)


HUNDRED_PERCENT = re.compile(r"100(\.0+)? ?%")


def rich_text(report, width=200):
    import rich.console

    console = rich.console.Console(
        file=io.StringIO(), record=True, width=width
    )
    console.print(report.to_rich())
    return console.export_text()


def test_seed_model_kernels_report_exactly_70_percent(report):
    for path in ("conv2d/kernel", "dense/kernel"):
        entry = report[path]
        assert entry.sparsity == pytest.approx(0.7, abs=1e-12), path
        assert entry.mask_sparsity == pytest.approx(0.7, abs=1e-12), path
        assert entry.target == pytest.approx(0.7)
        # sparsity, mask, target: one column each, all 70.0 %.
        assert row(report, path).count("70.0 %") == 3
    assert report.prunable_sparsity == pytest.approx(0.7, abs=1e-12)
    assert "prunable weights: " in str(report)
    assert f"({70.0:.1f} %)" in str(report).split("prunable weights: ")[1]


def test_count_is_never_called_100_percent_sparse(report):
    count = report["normalization/count"]
    assert (count.zeros, count.total, count.prunable) == (1, 1, False)

    text = report.summary()
    assert not HUNDRED_PERCENT.search(text)
    data = report.to_dict()
    for weight in data["weights"]:
        if not weight["prunable"]:
            assert weight["sparsity"] is None, weight["path"]
    (entry,) = [w for w in data["weights"] if w["path"] == count.path]
    assert (entry["zeros"], entry["total"], entry["sparsity"]) == (1, 1, None)
    assert "statistic" in entry["reason"]
    assert not HUNDRED_PERCENT.search(report.to_json())
    rendered = rich_text(report)
    assert not HUNDRED_PERCENT.search(rendered)
    (line,) = [l for l in rendered.splitlines() if "normalization/count" in l]
    assert "1/1" in line and "statistic" in line


def test_rich_table(report):
    import rich.table

    table = report.to_rich()
    assert isinstance(table, rich.table.Table)
    assert [c.header for c in table.columns] == [
        "weight", "class", "shape", "zeros/total", "sparsity", "mask",
        "target", "prunable",
    ]
    assert table.row_count == len(report)
    rendered = rich_text(report)
    assert "SparsityReport: " + report.model_name in rendered
    (conv,) = [l for l in rendered.splitlines() if "conv2d/kernel" in l]
    assert conv.split()[-8:] == [
        f"{num_pruned(CONV_KERNEL, SPARSITY):,}/{CONV_KERNEL:,}",
        "70.0", "%", "70.0", "%", "70.0", "%", "yes",
    ]
    assert "no: normalization scale (gamma)" in rendered
    assert "no: normalization offset (beta)" in rendered
    assert f"prunable weights: {report.prunable_zeros:,}/" in rendered


def test_print_summary_rich_or_plain(report, capsys):
    printed = []
    report.print_summary(print_fn=printed.append, rich=True)
    assert printed == [rich_text(report).rstrip("\n")]
    printed = []
    report.print_summary(print_fn=printed.append, rich=False)
    assert printed == [report.summary()]
    # Auto: a print_fn, or stdout not being a terminal, means plain text.
    printed = []
    report.print_summary(print_fn=printed.append)
    assert printed == [report.summary()]
    report.print_summary()
    assert capsys.readouterr().out == report.summary() + "\n"


def test_rich_is_optional(report, monkeypatch, capsys):
    for name in [n for n in sys.modules if n.split(".")[0] == "rich"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)

    with pytest.raises(ImportError, match=re.escape("pip install rich")):
        report.to_rich()
    with pytest.raises(ImportError, match=re.escape("pip install rich")):
        report.print_summary(rich=True)
    report.print_summary()  # a terminal, but no rich: plain text
    assert capsys.readouterr().out == report.summary() + "\n"


class DenseOnlyConv(keras_prune.PruningPolicy):
    def allow_pruning(self, layer):
        return isinstance(layer, L.Conv2D)


@pytest.mark.parametrize("how", ["exclude", "policy"])
def test_excluded_layers_are_left_dense_not_prunable(digits, how):
    if how == "exclude":
        kwargs = {"exclude": ["dense"]}
    else:
        kwargs = {"pruning_policy": DenseOnlyConv()}
    pruned = keras_prune.prune_low_magnitude(
        seed_model(digits), keras_prune.ConstantSparsity(SPARSITY, 0),
        **kwargs,
    )
    keras_prune.update_masks(pruned, 0)
    report = SparsityReport(pruned)
    kernel = report["dense/kernel"]

    assert not kernel.prunable and kernel.excluded
    assert kernel.reason.startswith("excluded: left dense although prunable")
    assert kernel.short_reason == "excluded"
    assert kernel.zeros == 0
    assert kernel.mask_sparsity is None and kernel.target is None
    assert report.excluded_layers == ["dense"]
    assert "dense" not in report.unprunable_layers
    assert report.prunable_total == CONV_KERNEL
    assert report.prunable_sparsity == pytest.approx(0.7)
    text = str(report)
    assert row(report, "dense/kernel").endswith("no: excluded")
    assert (
        f"left dense although prunable (excluded): dense ({DENSE_KERNEL:,} "
        "weights, 0 zero)" in text
    )
    data = report.to_dict()
    assert data["excluded_layers"] == ["dense"]
    assert [w["path"] for w in data["weights"] if w["excluded"]] == [
        "dense/kernel"
    ]
    assert "no: excluded" in rich_text(report)
    # Stripped, nothing is being pruned: the rules speak again.
    stripped = SparsityReport(keras_prune.strip_pruning(pruned))
    assert stripped["dense/kernel"].prunable
    assert stripped.excluded_layers == []


def sequence_model():
    # unroll=True: the same weights, and much faster to build on JAX.
    inputs = keras.Input((6, 4))
    x = L.LSTM(5, return_sequences=True, unroll=True)(inputs)
    x = L.MultiHeadAttention(num_heads=2, key_dim=3)(x, x)
    x = L.Bidirectional(L.SimpleRNN(3, return_sequences=True, unroll=True))(x)
    x = L.TimeDistributed(L.BatchNormalization())(x)
    x = L.GlobalAveragePooling1D()(x)
    outputs = L.Dense(2)(x)
    return keras.Model(inputs, outputs)


SEQUENCE_PRUNABLE = {
    "lstm_cell/kernel": "LSTM",
    "lstm_cell/recurrent_kernel": "LSTM",
    "query/kernel": "MultiHeadAttention",
    "key/kernel": "MultiHeadAttention",
    "value/kernel": "MultiHeadAttention",
    "attention_output/kernel": "MultiHeadAttention",
    "forward_simple_rnn/simple_rnn_cell/kernel": "Bidirectional",
    "forward_simple_rnn/simple_rnn_cell/recurrent_kernel": "Bidirectional",
    "backward_simple_rnn/simple_rnn_cell/kernel": "Bidirectional",
    "backward_simple_rnn/simple_rnn_cell/recurrent_kernel": "Bidirectional",
    "dense/kernel": "Dense",
}


def by_suffix(report):
    """Entries keyed by path without the outer scopes cloning may drop."""
    found = {}
    for entry in report:
        for suffix in list(SEQUENCE_PRUNABLE) + ["bias", "gamma", "beta"]:
            if entry.path.endswith(suffix):
                found.setdefault(suffix, []).append(entry)
    return found


@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
def test_nested_sublayer_weights_follow_the_outer_layer_rule(pruned):
    model = sequence_model()
    if pruned:
        model = keras_prune.prune_low_magnitude(
            model, keras_prune.ConstantSparsity(0.5, 0)
        )
        keras_prune.update_masks(model, 0)
    report = SparsityReport(model)
    found = by_suffix(report)

    for suffix, layer_class in SEQUENCE_PRUNABLE.items():
        (entry,) = found[suffix]
        assert entry.prunable, entry.path
        assert entry.layer_class == layer_class
        expected = num_pruned(entry.total, 0.5) if pruned else 0
        assert entry.zeros == expected, entry.path
        assert (entry.target is not None) == pruned
    biases = [e for e in report if e.path.endswith("bias")]
    assert len(biases) == 8  # lstm, q/k/v/output, 2 x simple_rnn, dense
    for entry in biases:
        assert not entry.prunable and "bias" in entry.short_reason
    # A rule-less sub-layer explains its own weights.
    (gamma,) = found["gamma"]
    (beta,) = found["beta"]
    assert gamma.layer_class == "TimeDistributed"
    assert "scale" in gamma.reason and "offset" in beta.reason
    assert list(report.unprunable_layers) == ["time_distributed"]


class Scale(L.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=input_shape[-1:], name="w")

    def call(self, x):
        return x * self.w


class PrunableScale(Scale, keras_prune.PrunableLayer):
    def get_prunable_weights(self):
        return [self.w]


def test_custom_layers():
    inputs = keras.Input((4,))
    x = Scale(name="scale")(inputs)
    outputs = PrunableScale(name="prunable_scale")(x)
    report = SparsityReport(keras.Model(inputs, outputs))

    assert not report["scale/w"].prunable
    assert "get_prunable_weights" in report["scale/w"].reason
    assert "get_prunable_weights" in report.unprunable_layers["scale"]
    assert report["prunable_scale/w"].prunable
    assert "prunable_scale" not in report.unprunable_layers


def test_depthwise_kernels_are_opt_in():
    inputs = keras.Input((5, 5, 2))
    outputs = L.DepthwiseConv2D(3, use_bias=False)(inputs)
    model = keras.Model(inputs, outputs)
    path = "depthwise_conv2d/kernel"

    default = SparsityReport(model)[path]
    assert not default.prunable and "prune_depthwise" in default.reason
    assert SparsityReport(model, prune_depthwise=True)[path].prunable


def test_single_wrapped_layer():
    layer = L.Dense(4)
    layer.build((None, 5))
    wrapper = keras_prune.prune_low_magnitude(
        layer, keras_prune.ConstantSparsity(0.5, 0)
    )
    keras_prune.update_masks(wrapper, 0)
    report = SparsityReport(wrapper)

    assert [e.path for e in report] == ["dense/kernel", "dense/bias"]
    kernel = report["dense/kernel"]
    assert (kernel.layer, kernel.zeros) == ("dense", num_pruned(20, 0.5))
    assert kernel.target == pytest.approx(0.5)


def test_short_reason_keeps_parentheses():
    entry = WeightSparsity(
        path="dense/kernel_scale", layer="dense", layer_class="Dense",
        shape=(4,), prunable=False, zeros=0, total=4,
        reason="not a prunable variable of Dense (prunable: kernel)",
    )
    assert entry.short_reason == entry.reason
    assert entry.sparsity == 0.0


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="not built"):
        SparsityReport(keras.Sequential([L.Dense(2)]))
    with pytest.raises(TypeError, match="keras Model or Layer"):
        SparsityReport("model")
    inputs = keras.Input((3,))
    report = SparsityReport(keras.Model(inputs, L.Dense(2)(inputs)))
    with pytest.raises(KeyError, match="dense/kernel"):
        report["dense/kernels"]


def test_a_global_target_is_labelled_and_each_layer_share_shown():
    # Under one global ranking each layer ends above or below the target;
    # the column says the target is the model's, and the lines below give
    # each layer's sparsity and its share of the zeros.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(300, name="fc1"),
        keras.layers.Dense(100, name="fc2"), keras.layers.Dense(10, name="out"),
    ])
    pruned, report = keras_prune.prune_now(model, 0.8, scope="global")
    text = report.summary()
    assert text.splitlines()[0].split()[-3:] == ["target", "(global)",
                                                 "prunable"]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("global threshold"))
    assert lines[start].endswith(
        "(scope='global'): one ranking across the layers meets the target "
        "overall; each layer's sparsity and share of the zeros:")
    shares = {}
    for line in lines[start + 1:start + 4]:
        path, rest = line.strip().split(": ", 1)
        entry = next(e for e in report.weights if e.path == path)
        assert rest == (
            f"{100 * entry.sparsity:.1f} % ({entry.zeros:,} zeros, "
            f"{100 * entry.zeros / report.prunable_zeros:.1f} % of all)")
        shares[path] = entry.zeros
    assert sum(shares.values()) == report.prunable_zeros == 40_160
    # A layer-wise report keeps the plain column name.
    _, layerwise = keras_prune.prune_now(model, 0.8, scope="layer")
    assert "(global)" not in layerwise.summary()
