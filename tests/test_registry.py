import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core import registry
from tests.conftest import numpy

L = keras.layers


def built(layer, *shapes):
    """Builds `layer` for the given input shapes (without running it)."""
    layer.build(*shapes)
    return layer


def paths(variables):
    return [v.path for v in variables]


# Values do not matter here; zero initializers spare JAX from compiling a
# random (or QR, for orthogonal) kernel per shape.
K0 = {"kernel_initializer": "zeros"}
RNN0 = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
SEP0 = {"depthwise_initializer": "zeros", "pointwise_initializer": "zeros"}
DW0 = {"depthwise_initializer": "zeros"}
EMB0 = {"embeddings_initializer": "zeros"}

KERNEL = ["l/kernel"]
RNN = ["l/{cell}/kernel", "l/{cell}/recurrent_kernel"]


def rnn(cell):
    return [path.format(cell=cell) for path in RNN]


# id -> (layer factory, input shapes, prunable paths by default,
#        prunable paths with prune_depthwise=True when they differ)
CASES = {
    "dense": (lambda: L.Dense(3, name="l", **K0), [(1, 4)], KERNEL, None),
    "einsum_dense": (
        lambda: L.EinsumDense(
            "abc,cd->abd", (None, 3), bias_axes="d", name="l", **K0
        ),
        [(1, 2, 4)],
        KERNEL,
        None,
    ),
    "conv1d": (
        lambda: L.Conv1D(2, 3, name="l", **K0), [(1, 5, 2)], KERNEL, None
    ),
    "conv2d": (
        lambda: L.Conv2D(2, 3, name="l", **K0), [(1, 5, 5, 2)], KERNEL, None
    ),
    "conv3d": (
        lambda: L.Conv3D(2, 2, name="l", **K0), [(1, 3, 3, 3, 2)], KERNEL, None
    ),
    "conv1d_transpose": (
        lambda: L.Conv1DTranspose(2, 3, name="l", **K0),
        [(1, 5, 2)],
        KERNEL,
        None,
    ),
    "conv2d_transpose": (
        lambda: L.Conv2DTranspose(2, 3, name="l", **K0),
        [(1, 5, 5, 2)],
        KERNEL,
        None,
    ),
    "conv3d_transpose": (
        lambda: L.Conv3DTranspose(2, 2, name="l", **K0),
        [(1, 3, 3, 3, 2)],
        KERNEL,
        None,
    ),
    "separable_conv1d": (
        lambda: L.SeparableConv1D(2, 3, name="l", **SEP0),
        [(1, 5, 2)],
        ["l/pointwise_kernel"],
        ["l/depthwise_kernel", "l/pointwise_kernel"],
    ),
    "separable_conv2d": (
        lambda: L.SeparableConv2D(2, 3, name="l", **SEP0),
        [(1, 5, 5, 2)],
        ["l/pointwise_kernel"],
        ["l/depthwise_kernel", "l/pointwise_kernel"],
    ),
    # Keras 3 names DepthwiseConv's depthwise filter `kernel`.
    "depthwise_conv1d": (
        lambda: L.DepthwiseConv1D(3, name="l", **DW0), [(1, 5, 2)], [], KERNEL
    ),
    "depthwise_conv2d": (
        lambda: L.DepthwiseConv2D(3, name="l", **DW0),
        [(1, 5, 5, 2)],
        [],
        KERNEL,
    ),
    "embedding": (
        lambda: L.Embedding(10, 3, name="l", **EMB0),
        [(1, 4)],
        ["l/embeddings"],
        None,
    ),
    "multi_head_attention": (
        lambda: L.MultiHeadAttention(2, 3, name="l", **K0),
        [(1, 4, 5), (1, 3, 5)],
        [
            "l/query/kernel",
            "l/key/kernel",
            "l/value/kernel",
            "l/attention_output/kernel",
        ],
        None,
    ),
    "lstm": (
        lambda: L.LSTM(3, name="l", **RNN0),
        [(1, 4, 2)],
        rnn("lstm_cell"),
        None,
    ),
    "gru": (
        lambda: L.GRU(3, name="l", **RNN0), [(1, 4, 2)], rnn("gru_cell"), None
    ),
    "simple_rnn": (
        lambda: L.SimpleRNN(3, name="l", **RNN0),
        [(1, 4, 2)],
        rnn("simple_rnn_cell"),
        None,
    ),
    "conv_lstm1d": (
        lambda: L.ConvLSTM1D(2, 3, name="l", **RNN0),
        [(1, 3, 5, 2)],
        rnn("conv_lstm_cell"),
        None,
    ),
    "conv_lstm2d": (
        lambda: L.ConvLSTM2D(2, 3, name="l", **RNN0),
        [(1, 2, 4, 4, 2)],
        rnn("conv_lstm_cell"),
        None,
    ),
    "bidirectional_lstm": (
        lambda: L.Bidirectional(L.LSTM(3, name="lstm", **RNN0), name="l"),
        [(1, 4, 2)],
        rnn("forward_lstm/lstm_cell") + rnn("backward_lstm/lstm_cell"),
        None,
    ),
    "time_distributed_dense": (
        lambda: L.TimeDistributed(L.Dense(3, name="d", **K0), name="l"),
        [(1, 4, 2)],
        ["l/d/kernel"],
        None,
    ),
    "time_distributed_conv2d": (
        lambda: L.TimeDistributed(L.Conv2D(2, 3, name="c", **K0), name="l"),
        [(1, 2, 5, 5, 2)],
        ["l/c/kernel"],
        None,
    ),
}


def build_case(name):
    factory, shapes, _, _ = CASES[name]
    return built(factory(), *shapes)


def check_case(name):
    layer = build_case(name)
    _, _, default, opt_in = CASES[name]
    opt_in = default if opt_in is None else opt_in
    assert registry.has_rule(layer)
    assert paths(registry.prunable_weights(layer)) == default
    assert paths(registry.prunable_weights(layer, prune_depthwise=True)) == (
        opt_in
    )
    for variable in layer.weights:
        prunable, reason = registry.explain(layer, variable)
        assert prunable == (variable.path in default), variable.path
        assert (reason == "") == prunable, (variable.path, reason)
        if variable.path in opt_in and variable.path not in default:
            assert reason == registry._REASONS["depthwise"]
            assert "prune_depthwise=True" in reason
        if variable.name == "bias":
            assert reason.startswith("bias:"), variable.path
        assert registry.explain(layer, variable, prune_depthwise=True)[0] == (
            variable.path in opt_in
        ), variable.path


def test_prunable_weights_are_exactly_the_expected_paths(subtests):
    for name in CASES:
        with subtests.test(layer=name):
            check_case(name)


def test_gru_bias_is_2d_and_never_prunable():
    layer = build_case("gru")
    (bias,) = [v for v in layer.weights if v.name == "bias"]
    assert len(bias.shape) == 2
    assert all(v is not bias for v in registry.prunable_weights(layer, True))
    prunable, reason = registry.explain(layer, bias, prune_depthwise=True)
    assert not prunable and reason == registry._REASONS["bias"]


def test_subclass_of_a_builtin_is_prunable():
    class MyDense(keras.layers.Dense):
        pass

    layer = built(MyDense(3, name="mine"), (1, 4))
    assert registry.has_rule(layer)
    assert paths(registry.prunable_weights(layer)) == ["mine/kernel"]


class Scale(keras.layers.Layer, keras_prune.PrunableLayer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=input_shape[-1:], name="w")
        self.v = self.add_weight(shape=input_shape[-1:], name="v")
        self.b = self.add_weight(shape=input_shape[-1:], name="b")

    def call(self, x):
        return x * self.w * self.v + self.b

    def get_prunable_weights(self):
        return [self.w, self.v]


def test_custom_prunable_layer_has_exactly_its_weights():
    layer = built(Scale(name="scale"), (1, 4))
    found = registry.prunable_weights(layer)
    assert len(found) == 2
    assert found[0] is layer.w and found[1] is layer.v
    assert registry.has_rule(layer)
    assert registry.explain(layer, layer.w) == (True, "")
    prunable, reason = registry.explain(layer, layer.b)
    assert not prunable
    assert "not a prunable variable of Scale" in reason
    assert "prunable: v, w" in reason


def test_get_prunable_weights_without_base_class_is_enough():
    class Duck(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=input_shape[-1:], name="w")

        def call(self, x):
            return x * self.w

        def get_prunable_weights(self):
            return [self.w]

    layer = built(Duck(), (1, 4))
    assert registry.prunable_weights(layer) == [layer.w]

    class Lazy(keras.layers.Layer, keras_prune.PrunableLayer):
        pass

    with pytest.raises(NotImplementedError, match="Lazy must implement"):
        Lazy().get_prunable_weights()


def test_layer_without_rule_is_explained():
    class Custom(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=input_shape[-1:], name="w")

        def call(self, x):
            return x * self.w

    layer = built(Custom(), (1, 4))
    assert not registry.has_rule(layer)
    assert registry.prunable_weights(layer) == []
    assert registry.explain(layer, layer.w) == (
        False,
        "no pruning rule for layer class Custom; implement "
        "get_prunable_weights() (keras_prune.PrunableLayer) to prune it",
    )


SCALE = registry._REASONS["gamma"]
OFFSET = registry._REASONS["beta"]
STATISTIC = registry._REASONS["statistic"]


NORMALIZATION = {
    "batch_norm": (
        lambda: L.BatchNormalization(),
        {"gamma": SCALE, "beta": OFFSET, "moving_mean": STATISTIC,
         "moving_variance": STATISTIC},
    ),
    "layer_norm": (
        lambda: L.LayerNormalization(), {"gamma": SCALE, "beta": OFFSET}
    ),
    "normalization": (
        lambda: L.Normalization(),
        {"mean": STATISTIC, "variance": STATISTIC, "count": STATISTIC},
    ),
    "group_norm": (
        lambda: L.GroupNormalization(2), {"gamma": SCALE, "beta": OFFSET}
    ),
}


def test_normalization_is_not_prunable_with_reason(subtests):
    assert "normalization scale" in SCALE and "offset" in OFFSET
    assert "statistic" in STATISTIC
    for name, (factory, expected) in NORMALIZATION.items():
        with subtests.test(layer=name):
            layer = built(factory(), (2, 4))
            assert registry.prunable_weights(layer, True) == []
            assert {v.name for v in layer.weights} == set(expected)
            for variable in layer.weights:
                assert registry.explain(layer, variable) == (
                    False, expected[variable.name]
                )


def test_weightless_layers_have_no_rule():
    for layer in [L.Dropout(0.5), L.Flatten()]:
        layer(np.zeros((2, 4), "float32"))
        assert layer.weights == []
        assert registry.prunable_weights(layer, prune_depthwise=True) == []
        assert not registry.has_rule(layer)


def test_containers_delegate_to_inner_layers():
    # A container of a layer without prunable weights has nothing either.
    layer = built(L.TimeDistributed(L.Dropout(0.5)), (1, 3, 4))
    assert registry.prunable_weights(layer) == []
    bidirectional = build_case("bidirectional_lstm")
    forward = registry.prunable_weights(bidirectional.forward_layer)
    backward = registry.prunable_weights(bidirectional.backward_layer)
    assert registry.prunable_weights(bidirectional) == forward + backward


def test_unbuilt_layer_and_default_policy():
    assert registry.prunable_weights(L.Dense(3)) == []
    assert registry.has_rule(L.Dense(3))
    policy = keras_prune.PruningPolicy()
    assert policy.allow_pruning(L.Dense(3))
    assert policy.ensure_model_supports_pruning(keras.Sequential()) is None


def test_register_rule_makes_a_library_layer_prunable(monkeypatch):
    # A layer class the user does not own (no get_prunable_weights): one
    # registration, no library file edited.

    monkeypatch.setattr(registry, "_RULES", list(registry._RULES))

    class TwoDense(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(8)
            self.second = keras.layers.Dense(4)

        def build(self, input_shape):
            self.first.build(input_shape)
            self.second.build(input_shape[:-1] + (8,))

        def call(self, x):
            return self.second(self.first(x))

    block = TwoDense()
    block.build((None, 6))
    assert registry.prunable_weights(block) == []
    registry.register_rule(TwoDense, ("kernel",))
    assert registry.prunable_weights(block) == [block.first.kernel,
                                                block.second.kernel]
    wrapped = keras_prune.prune_low_magnitude(
        block, keras_prune.ConstantSparsity(0.5, 0))
    keras_prune.update_masks(wrapped, 0)
    assert [int((~numpy(m)).sum()) for m in wrapped.masks] == [24, 16]
    with pytest.raises(ValueError, match="must be a keras Layer subclass"):
        registry.register_rule("Dense", ("kernel",))
