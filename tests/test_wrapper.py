import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.guard import MISSING_CALLBACK
from tests import steady_cases

L = keras.layers
BATCH = 2


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# Every case is randomized after building (`randomize`); zero initializers
# spare JAX from compiling a random (or QR, for orthogonal) kernel per shape.
K0 = {"kernel_initializer": "zeros"}
RNN0 = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
SEP0 = {"depthwise_initializer": "zeros", "pointwise_initializer": "zeros"}
DW0 = {"depthwise_initializer": "zeros"}

# id -> (layer factory, input shapes without batch, prune_depthwise).
# Shapes match tests/test_registry.py.
CASES = {
    "dense": (lambda: L.Dense(3, **K0), [(4,)], False),
    "einsum_dense": (
        lambda: L.EinsumDense(
            "abc,cd->abd", output_shape=(None, 3), bias_axes="d", **K0
        ),
        [(2, 4)],
        False,
    ),
    "conv1d": (lambda: L.Conv1D(2, 3, **K0), [(5, 2)], False),
    "conv2d": (lambda: L.Conv2D(2, 3, **K0), [(5, 5, 2)], False),
    "conv3d": (lambda: L.Conv3D(2, 2, **K0), [(3, 3, 3, 2)], False),
    "conv1d_transpose": (
        lambda: L.Conv1DTranspose(2, 3, **K0), [(5, 2)], False
    ),
    "conv2d_transpose": (
        lambda: L.Conv2DTranspose(2, 3, **K0), [(5, 5, 2)], False
    ),
    "conv3d_transpose": (
        lambda: L.Conv3DTranspose(2, 2, **K0), [(3, 3, 3, 2)], False
    ),
    "separable_conv1d": (
        lambda: L.SeparableConv1D(2, 3, **SEP0), [(5, 2)], False
    ),
    "separable_conv2d": (
        lambda: L.SeparableConv2D(2, 3, **SEP0), [(5, 5, 2)], False
    ),
    "separable_conv1d_depthwise": (
        lambda: L.SeparableConv1D(2, 3, **SEP0), [(5, 2)], True
    ),
    "separable_conv2d_depthwise": (
        lambda: L.SeparableConv2D(2, 3, **SEP0), [(5, 5, 2)], True
    ),
    "depthwise_conv1d": (
        lambda: L.DepthwiseConv1D(3, **DW0), [(5, 2)], True
    ),
    "depthwise_conv2d": (
        lambda: L.DepthwiseConv2D(3, **DW0), [(5, 5, 2)], True
    ),
    "embedding": (
        lambda: L.Embedding(10, 3, embeddings_initializer="zeros"),
        [(4,)],
        False,
    ),
    "multi_head_attention": (
        lambda: L.MultiHeadAttention(2, 3, **K0), [(4, 5), (3, 5)], False
    ),
    "lstm": (lambda: L.LSTM(3, **RNN0), [(4, 2)], False),
    "gru": (lambda: L.GRU(3, **RNN0), [(4, 2)], False),
    "simple_rnn": (lambda: L.SimpleRNN(3, **RNN0), [(4, 2)], False),
    "conv_lstm1d": (lambda: L.ConvLSTM1D(2, 3, **RNN0), [(3, 5, 2)], False),
    "conv_lstm2d": (
        lambda: L.ConvLSTM2D(2, 3, **RNN0), [(2, 4, 4, 2)], False
    ),
    "bidirectional_lstm": (
        lambda: L.Bidirectional(L.LSTM(3, **RNN0)), [(4, 2)], False
    ),
    "time_distributed_dense": (
        lambda: L.TimeDistributed(L.Dense(3, **K0)), [(4, 2)], False
    ),
    "time_distributed_conv2d": (
        lambda: L.TimeDistributed(L.Conv2D(2, 3, **K0)),
        [(2, 5, 5, 2)],
        False,
    ),
}


RECURRENT = {"lstm", "gru", "simple_rnn", "conv_lstm1d", "conv_lstm2d",
             "bidirectional_lstm"}


def make_inputs(name, seed=1):
    rng = np.random.default_rng(seed)
    shapes = CASES[name][1]
    if name == "embedding":
        return [rng.integers(0, 10, (BATCH,) + shapes[0]).astype("int32")]
    return [
        rng.normal(size=(BATCH,) + shape).astype("float32") for shape in shapes
    ]


def randomize(layer, seed=0):
    """Small random values in every variable (biases included)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(
            (0.5 * rng.normal(size=variable.shape)).astype(variable.dtype)
        )


def build_model(name):
    """A Functional model around one freshly built, randomized layer."""
    factory, shapes, _ = CASES[name]
    dtype = "int32" if name == "embedding" else "float32"
    inputs = [keras.Input(shape, dtype=dtype) for shape in shapes]
    layer = factory()
    model = keras.Model(inputs, layer(*inputs))
    randomize(layer)
    return model


def prune(model, name, schedule=None):
    pruned = keras_prune.prune_low_magnitude(
        model,
        schedule or keras_prune.ConstantSparsity(0.5, 0),
        prune_depthwise=CASES[name][2],
    )
    (wrapper,) = keras_prune.core.layers.pruned_layers(pruned)
    return pruned, wrapper


def snapshot(variables):
    return {id(v): numpy(v).copy() for v in variables}


def drift(wrapper, seed=2):
    """Writes non-zero values at pruned positions, as an optimizer might."""
    rng = np.random.default_rng(seed)
    for variable, mask in zip(wrapper.prunable_weights, wrapper.masks):
        keep = numpy(mask)
        noise = (1.0 + rng.random(variable.shape)).astype(variable.dtype)
        variable.assign(np.where(keep, numpy(variable), noise))


def assert_bit_equal(actual, expected):
    actual, expected = numpy(actual), numpy(expected)
    assert actual.shape == expected.shape
    assert np.max(np.abs(actual - expected)) == 0.0


# Layers checked together in one test (one subtest each).
FAMILIES = {
    "dense": ["dense", "einsum_dense"],
    "conv": ["conv1d", "conv2d", "conv3d"],
    "conv_transpose": [
        "conv1d_transpose", "conv2d_transpose", "conv3d_transpose"
    ],
    "separable_and_depthwise": [
        "separable_conv1d", "separable_conv2d", "separable_conv1d_depthwise",
        "separable_conv2d_depthwise", "depthwise_conv1d", "depthwise_conv2d",
    ],
    "embedding_and_attention": ["embedding", "multi_head_attention"],
    "recurrent": ["lstm", "gru", "simple_rnn", "conv_lstm1d", "conv_lstm2d"],
    "containers": [
        "bidirectional_lstm", "time_distributed_dense",
        "time_distributed_conv2d",
    ],
}


assert sorted(n for family in FAMILIES.values() for n in family) == sorted(
    CASES
)


def check_pruned_layer(name):
    model = build_model(name)
    # Masks are set by hand with update_masks; the schedule never fires.
    pruned, wrapper = prune(
        model, name, keras_prune.ConstantSparsity(0.5, begin_step=10**6)
    )
    prunable = wrapper.prunable_weights
    assert prunable
    assert [v.path for v in prunable] == [
        v.path
        for v in registry.prunable_weights(wrapper.layer, CASES[name][2])
    ]
    others = [
        v for v in wrapper.layer.weights if all(v is not p for p in prunable)
    ]
    before = snapshot(others)

    # (a) exactly num_pruned zeros in each prunable variable and its mask.
    wrapper.update_masks(0.5, 0)
    for variable, mask in zip(prunable, wrapper.masks):
        n_pruned = patterns.num_pruned(int(np.prod(variable.shape)), 0.5)
        assert n_pruned > 0
        values, keep = numpy(variable), numpy(mask)
        assert np.count_nonzero(values == 0) == n_pruned, variable.path
        assert np.count_nonzero(~keep) == n_pruned, variable.path
        assert not np.any(values[keep] == 0), variable.path
    assert int(numpy(wrapper.pruning_step)) == 0
    # (b) everything else untouched.
    for variable in others:
        np.testing.assert_array_equal(
            numpy(variable), before[id(variable)], err_msg=variable.path
        )

    # (c) masked output == output of plain layers with the baked weights.
    stripped = keras_prune.strip_pruning(pruned)
    assert not keras_prune.core.layers.pruned_layers(stripped)
    x = make_inputs(name)
    reference = stripped(x)
    assert_bit_equal(pruned(x), reference)
    actual = pruned.predict(x, verbose=0)
    compiled_reference = stripped.predict(x, verbose=0)
    if keras.backend.backend() == "torch" and name in RECURRENT:
        # Under no_grad, torch.matmul of a non-contiguous 3-D input (the
        # time-major RNN input) picks another kernel when the 2-D operand
        # does not require grad, as the masked kernel (made under no_grad)
        # does not and the stripped model's Parameter does: ~1 ulp apart.
        np.testing.assert_allclose(
            actual, compiled_reference, rtol=1e-6, atol=0
        )
    else:
        assert_bit_equal(actual, compiled_reference)

    # (d) drift at pruned positions (as an optimizer's) never reaches the
    # output: the forward pass applies the mask. (Through the compiled
    # predict function, which reads the variables anew: on torch that is
    # the eager forward pass.)
    drift(wrapper)
    assert all(
        np.all(numpy(v)[~numpy(m)] != 0)
        for v, m in zip(prunable, wrapper.masks)
    )
    assert_bit_equal(pruned.predict(x, verbose=0), actual)

    # (e) pruned positions get exactly zero gradient: with plain SGD they
    # keep their (drifted) values exactly while the others move. The
    # custom-loop API, not fit, so no bake at train end hides a leak.
    drifted = snapshot(prunable)
    target = np.random.default_rng(3).normal(size=actual.shape)
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    assert keras_prune.update_masks(pruned, 0) == []
    pruned.train_on_batch(x, target.astype("float32"))
    for variable, mask in zip(prunable, wrapper.masks):
        keep, old, new = numpy(mask), drifted[id(variable)], numpy(variable)
        np.testing.assert_array_equal(new[~keep], old[~keep], variable.path)
        assert np.any(new[keep] != old[keep]), variable.path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pruned_layer_masks_forward_and_gradients(family, subtests):
    for name in FAMILIES[family]:
        with subtests.test(layer=name):
            check_pruned_layer(name)


def test_direct_wrapper_of_built_layers(subtests):
    for name in ["dense", "multi_head_attention", "depthwise_conv2d",
                 "time_distributed_conv2d"]:
        with subtests.test(layer=name):
            factory, _, prune_depthwise = CASES[name]
            layer = factory()
            x = make_inputs(name)
            layer(*x)
            randomize(layer)
            wrapper = keras_prune.PruneLowMagnitude(
                layer,
                keras_prune.ConstantSparsity(0.5, 0),
                prune_depthwise=prune_depthwise,
            )
            # Built at once (multi-input layers could not be built later).
            assert wrapper.built
            assert wrapper.prunable_weights == registry.prunable_weights(
                layer, prune_depthwise
            )
            assert_bit_equal(wrapper(*x), layer(*x))
            wrapper.update_masks(0.5, 0)
            plain = keras_prune.strip_pruning(wrapper)
            assert type(plain) is type(layer)
            expected = plain(*x)
            drift(wrapper)
            assert_bit_equal(wrapper(*x), expected)


def test_unbuilt_layer_is_built_on_first_call():
    wrapper = keras_prune.PruneLowMagnitude(
        L.Dense(3), keras_prune.ConstantSparsity(0.5, 0)
    )
    assert not wrapper.built
    out = wrapper(np.ones((2, 4), "float32"))
    assert out.shape == (2, 3)
    assert wrapper.built and len(wrapper.masks) == 1
    assert wrapper.masks[0].shape == (4, 3)
    assert numpy(wrapper.masks[0]).all()


# ---- masking, multi-input, losses, inner state ------------------------------


def _fit_one_epoch(model, x, y):
    model.compile("adam", "mse")
    history = model.fit(
        x, y, batch_size=4, epochs=1, verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    assert np.isfinite(history.history["loss"][0])


def _padded_tokens():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, (8, 6)).astype("int32")
    x[:, 4:] = 0  # padding
    return x, rng.normal(size=(8, 2)).astype("float32")


def test_embedding_mask_zero_reaches_wrapped_lstm():
    inputs = keras.Input((None,), dtype="int32")
    embedding = keras_prune.PruneLowMagnitude(
        L.Embedding(10, 4, mask_zero=True)
    )
    lstm = keras_prune.PruneLowMagnitude(L.LSTM(3))
    model = keras.Model(inputs, L.Dense(2)(lstm(embedding(inputs))))
    x, y = _padded_tokens()
    _fit_one_epoch(model, x, y)
    for wrapper in (embedding, lstm):
        for variable in wrapper.prunable_weights:
            assert np.count_nonzero(numpy(variable) == 0) == (
                patterns.num_pruned(int(np.prod(variable.shape)), 0.5)
            )
    # The mask reached the LSTM: padded steps do not change the output.
    assert_bit_equal(model(x), model(x[:, :4]))


# Keras records Embedding's mask computation as a `NotEqual` operation in the
# Functional graph: cloning must pass such operations through.
def test_embedding_mask_zero_reaches_pruned_lstm():
    inputs = keras.Input((None,), dtype="int32")
    hidden = L.Embedding(10, 4, mask_zero=True)(inputs)
    outputs = L.Dense(2)(L.LSTM(3)(hidden))
    model = keras.Model(inputs, outputs)
    pruned = keras_prune.prune_low_magnitude(model)
    assert len(keras_prune.core.layers.pruned_layers(pruned)) == 3
    x, y = _padded_tokens()
    _fit_one_epoch(pruned, x, y)
    # The mask reached the LSTM: padded steps do not change the output.
    assert_bit_equal(pruned(x), pruned(x[:, :4]))
    stripped = keras_prune.strip_pruning(pruned)
    assert_bit_equal(pruned(x), stripped(x))


def test_multi_head_attention_query_value_trains():
    query = keras.Input((4, 5))
    value = keras.Input((3, 5))
    attention = L.MultiHeadAttention(2, 3)(query, value)
    model = keras.Model([query, value], L.Dense(1)(attention))
    pruned = keras_prune.prune_low_magnitude(model)
    wrappers = keras_prune.core.layers.pruned_layers(pruned)
    assert sorted(type(w.layer).__name__ for w in wrappers) == [
        "Dense", "MultiHeadAttention"
    ]
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(4, 4, 5)).astype("float32"),
         rng.normal(size=(4, 3, 5)).astype("float32")]
    y = rng.normal(size=(4, 4, 1)).astype("float32")
    pruned.compile(keras.optimizers.SGD(0.01), "mse")
    pruned.fit(
        x, y, batch_size=4, epochs=1, verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    (mha,) = [w for w in wrappers if isinstance(w.layer, L.MultiHeadAttention)]
    assert len(mha.prunable_weights) == 4
    for variable in mha.prunable_weights:
        n = int(np.prod(variable.shape))
        assert np.count_nonzero(numpy(variable) == 0) == patterns.num_pruned(
            n, 0.5
        )
    stripped = keras_prune.strip_pruning(pruned)
    assert_bit_equal(pruned(x), stripped(x))


ACTIVITY_REGULARIZED = {
    "dense": lambda: L.Dense(
        3, activity_regularizer=keras.regularizers.L2(0.1)
    ),
    # Losses added by sub-layers of the wrapped layer, inside its call.
    "bidirectional_lstm": lambda: L.Bidirectional(
        L.LSTM(3, return_sequences=True,
               activity_regularizer=keras.regularizers.L2(0.1))
    ),
}


def check_activity_regularizer(name):
    inputs = keras.Input((4, 2))
    hidden = ACTIVITY_REGULARIZED[name]()(inputs)
    model = keras.Model(inputs, L.Dense(1)(L.Flatten()(hidden)))
    pruned = keras_prune.prune_low_magnitude(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4, 2)).astype("float32")
    y = rng.normal(size=(4, 1)).astype("float32")
    # Before any eager call: JAX's evaluate reads the losses in a stateless
    # scope, where a loss claimed by two layers would count twice.
    for m in (model, pruned):
        m.compile(keras.optimizers.SGD(0.0), "mse")
    plain_loss = model.evaluate(x, y, verbose=0)
    assert pruned.evaluate(x, y, verbose=0) == pytest.approx(
        plain_loss, rel=1e-6
    )
    model(x)
    pruned(x)
    assert len(model.losses) >= 1
    assert len(pruned.losses) == len(model.losses)
    expected = sum(float(numpy(loss)) for loss in model.losses)
    assert expected > 0
    actual = sum(float(numpy(loss)) for loss in pruned.losses)
    assert actual == pytest.approx(expected, rel=1e-6)
    # The train step counts it too; lr=0, so the step saw the weights that
    # the mask update at step 0 left.
    history = pruned.fit(
        x, y, epochs=1, verbose=0, callbacks=[keras_prune.UpdatePruningStep()]
    )
    assert history.history["loss"][0] == pytest.approx(
        pruned.evaluate(x, y, verbose=0), rel=1e-6
    )


def test_activity_regularizer_loss_is_kept_once(subtests):
    for name in ACTIVITY_REGULARIZED:
        with subtests.test(layer=name):
            check_activity_regularizer(name)


@keras.saving.register_keras_serializable(package="test_wrapper")
class CountingScale(keras.layers.Layer, keras_prune.PrunableLayer):
    """Scales by a weight and counts its calls in a non-trainable variable."""

    def build(self, input_shape):
        self.w = self.add_weight(
            shape=input_shape[-1:], initializer="ones", name="w"
        )
        self.calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="calls"
        )

    def call(self, x, training=None):
        if training:
            self.calls.assign(self.calls + 1.0)
        return x * self.w

    def get_prunable_weights(self):
        return [self.w]


def check_counter_written_back():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(1)(CountingScale()(inputs)))
    pruned = keras_prune.prune_low_magnitude(model)
    (wrapper,) = [
        w for w in keras_prune.core.layers.pruned_layers(pruned)
        if isinstance(w.layer, CountingScale)
    ]
    assert wrapper.prunable_weights == [wrapper.layer.w]
    x = np.ones((4, 4), "float32")
    pruned.compile(keras.optimizers.SGD(0.01), "mse")
    pruned.fit(
        x, np.ones((4, 1), "float32"), batch_size=2, epochs=1, verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    # Two train steps, two counts, whatever the backend's train function.
    assert float(numpy(wrapper.layer.calls)) == 2.0
    w, keep = numpy(wrapper.layer.w), numpy(wrapper.masks[0])
    assert np.count_nonzero(w == 0) == 2
    np.testing.assert_array_equal(w == 0, ~keep)
    pruned(x)  # inference does not count
    assert float(numpy(wrapper.layer.calls)) == 2.0
    pruned(x, training=True)
    assert float(numpy(wrapper.layer.calls)) == 3.0


class ConvBN(keras.layers.Layer, keras_prune.PrunableLayer):
    """A convolution followed by batch normalization, pruned as one layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv1D(2, 3)
        self.bn = L.BatchNormalization(momentum=0.5)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return self.bn(self.conv(x), training=training)

    def get_prunable_weights(self):
        return [self.conv.kernel]


def check_batch_norm_statistics_written_back():
    inputs = keras.Input((5, 2))
    model = keras.Model(inputs, L.Flatten()(ConvBN()(inputs)))
    pruned = keras_prune.prune_low_magnitude(model)
    (wrapper,) = keras_prune.core.layers.pruned_layers(pruned)
    x = np.random.default_rng(0).normal(size=(4, 5, 2)).astype("float32")
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    pruned.fit(
        x, np.zeros((4, 6), "float32"), epochs=1, verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )
    # One step, momentum 0.5, from 0: moving_mean = 0.5 * batch mean of the
    # (masked) convolution's output.
    conv = keras_prune.strip_pruning(pruned).layers[1].conv
    expected = 0.5 * numpy(conv(x)).mean(axis=(0, 1))
    np.testing.assert_allclose(
        numpy(wrapper.layer.bn.moving_mean), expected, rtol=1e-5, atol=1e-6
    )


def test_inner_non_trainable_state_is_written_back(subtests):
    with subtests.test(state="counter"):
        check_counter_written_back()
    with subtests.test(state="batch_norm"):
        check_batch_norm_statistics_written_back()


class Penalized(keras.layers.Layer, keras_prune.PrunableLayer):
    """Adds the squared norm of its weight as a loss in `call`."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=input_shape[-1:], name="w")

    def call(self, x):
        self.add_loss(keras.ops.sum(self.w**2))
        return x * self.w

    def get_prunable_weights(self):
        return [self.w]


def test_losses_added_in_call_are_kept_once():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(1)(Penalized()(inputs)))
    randomize(model.layers[1])
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, begin_step=10**6)
    )
    x = np.ones((2, 4), "float32")
    y = np.zeros((2, 1), "float32")
    for m in (model, pruned):
        m.compile(keras.optimizers.SGD(0.0), "mse")
    assert pruned.evaluate(x, y, verbose=0) == pytest.approx(
        model.evaluate(x, y, verbose=0), rel=1e-6
    )
    (penalized,) = [
        w for w in keras_prune.core.layers.pruned_layers(pruned)
        if isinstance(w.layer, Penalized)
    ]
    penalized.update_masks(0.5, 0)
    pruned(x)
    assert len(pruned.losses) == 1
    # The loss is computed from the masked weight.
    kept = numpy(penalized.layer.w)
    assert np.count_nonzero(kept == 0) == 2
    assert float(numpy(pruned.losses[0])) == pytest.approx(
        float(np.sum(kept**2)), rel=1e-6
    )


# ---- errors -----------------------------------------------------------------


def test_layers_without_prunable_weights_are_rejected():
    # A custom layer with a kernel but no rule: refused.
    class Custom(L.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2))

        def call(self, x):
            return x @ self.w

    with pytest.raises(ValueError, match="has no prunable weights"):
        keras_prune.prune_low_magnitude(Custom())
    # Built, with a rule, but nothing selected (depthwise is opt-in).
    layer = L.DepthwiseConv2D(3)
    layer.build((None, 5, 5, 2))
    with pytest.raises(ValueError, match="has no prunable weights"):
        keras_prune.PruneLowMagnitude(
            layer, keras_prune.ConstantSparsity(0.5, 0)
        )


def test_wrapping_twice_keeps_the_wrapper():
    # tfmot's behaviour: an already pruned layer is returned as it is.
    wrapper = keras_prune.prune_low_magnitude(L.Dense(3))
    with pytest.warns(UserWarning, match="already holds 1 pruned layer"):
        assert keras_prune.prune_low_magnitude(wrapper) is wrapper
    with pytest.warns(UserWarning, match="kept as they are"):
        assert keras_prune.prune_low_magnitude([wrapper]) == [wrapper]
    wrapper(np.ones((1, 4), "float32"))
    # The wrapper class itself still refuses to wrap a wrapper.
    with pytest.raises(ValueError, match="already wrapped"):
        keras_prune.PruneLowMagnitude(wrapper)


def test_non_keras_objects_are_rejected_naming_their_type():
    for obj in ["dense", 3, np.ones(3), object()]:
        name = type(obj).__name__
        with pytest.raises(ValueError, match=f"got {name}"):
            keras_prune.prune_low_magnitude(obj)
        with pytest.raises(ValueError, match=f"got {name}"):
            keras_prune.PruneLowMagnitude(obj)


def test_bad_arguments_have_exact_messages():
    pooling = "block_pooling_type must be 'AVG' or 'MAX', got 'MIN'."
    with pytest.raises(ValueError, match=f"^{re.escape(pooling)}$"):
        keras_prune.prune_low_magnitude(L.Dense(3), block_pooling_type="MIN")
    with pytest.raises(ValueError, match=f"^{re.escape(pooling)}$"):
        keras_prune.PruneLowMagnitude(L.Dense(3), block_pooling_type="MIN")
    for schedule in [
        0.5,
        "constant",
        keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9),
    ]:
        message = (
            "pruning_schedule must be a keras_prune.PruningSchedule (e.g. "
            f"ConstantSparsity(0.5, 0)), got {schedule!r}."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            keras_prune.prune_low_magnitude(
                L.Dense(3), pruning_schedule=schedule
            )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            keras_prune.PruneLowMagnitude(
                L.Dense(3), pruning_schedule=schedule
            )
    with pytest.raises(ValueError, match="block_size must be two positive"):
        keras_prune.PruneLowMagnitude(L.Dense(3), block_size=(0, 1))
    with pytest.raises(ValueError, match=re.escape(
            "block_size=(1, 4) is larger than the (2, 3) matrix view")):
        keras_prune.PruneLowMagnitude(L.Dense(3), block_size=(1, 4)).build(
            (None, 2))


def test_training_call_without_step_tracking_fails():
    wrapper = keras_prune.PruneLowMagnitude(L.Dense(3))
    x = np.ones((2, 4), "float32")
    wrapper(x)
    # Keras prefixes errors raised in `call` with the layer's name.
    with pytest.raises(ValueError, match=re.escape(MISSING_CALLBACK)):
        wrapper(x, training=True)


# ---- configuration ----------------------------------------------------------


def test_config_round_trip():
    wrapper = keras_prune.PruneLowMagnitude(
        L.Conv2D(2, 3),
        keras_prune.PolynomialDecay(0.1, 0.8, 0, 100),
        prune_depthwise=True,
        name="pruned_conv",
    )
    again = keras_prune.PruneLowMagnitude.from_config(wrapper.get_config())
    assert again.name == "pruned_conv"
    assert again.prune_depthwise is True
    assert again.block_size == (1, 1)
    assert again.block_pooling_type == "AVG"
    assert isinstance(again.pruning_schedule, keras_prune.PolynomialDecay)
    assert again.pruning_schedule.get_config() == (
        wrapper.pruning_schedule.get_config()
    )
    assert isinstance(again.layer, L.Conv2D)


def test_repeated_update_rebakes_drifted_and_negative_zero_weights():
    # An update that leaves the masks as they were writes only what changed;
    # pruned weights that drifted (optimizer momentum) or hold -0.0 must
    # still come back as exact +0.0, and the step is always recorded.
    wrapper = keras_prune.prune_low_magnitude(
        L.Dense(8, kernel_initializer="zeros")
    )
    wrapper.build((None, 16))
    kernel = wrapper.prunable_weights[0]
    values = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    kernel.assign(values)
    wrapper.update_masks(0.5, step=3)
    keep = numpy(wrapper.masks[0]).copy()
    assert int((~keep).sum()) == 64
    threshold = float(numpy(wrapper.thresholds[0]))

    drifted = numpy(kernel).copy()
    pruned = np.flatnonzero(~keep.reshape(-1))
    drifted.reshape(-1)[pruned[:5]] = 1e-30
    drifted.reshape(-1)[pruned[5:10]] = -0.0
    kernel.assign(drifted)
    wrapper.update_masks(0.5, step=4)

    np.testing.assert_array_equal(numpy(wrapper.masks[0]), keep)
    after = numpy(kernel)
    assert not np.signbit(after[~keep]).any()
    np.testing.assert_array_equal(after[~keep], 0.0)
    np.testing.assert_array_equal(after[keep], values[keep])
    assert int(numpy(wrapper.pruning_step)) == 4
    # The threshold did change: the 64th smallest |w| is now 1e-30.
    assert threshold > 0.0
    assert numpy(wrapper.thresholds[0]) == np.float32(1e-30)


_twin_dense_wrappers = steady_cases.twin_dense_wrappers
_state = steady_cases.state


def _assert_same_state(a, b):
    for x, y in zip(_state(a), _state(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", steady_cases.CASES)
@pytest.mark.parametrize("count", ["float32", "int32"])
def test_steady_update_writes_what_the_host_update_writes(
    case, count, monkeypatch
):
    # SteadyUpdates (the frequency-1 fast path) must leave every variable
    # bit for bit as the host update would, and hand back every layer whose
    # masks would change (or whose choice depends on the tie-break). Its
    # pruned count is a float32 sum below 2**24 weights, int32 above.
    from keras_prune.training import tf_fast_path
    from keras_prune.training.tf_fast_path import SteadyUpdates

    if count == "int32":
        monkeypatch.setattr(tf_fast_path, "_FLOAT_COUNT_LIMIT", 0)

    fast, host = _twin_dense_wrappers()
    keep = numpy(fast.masks[0]).reshape(-1)
    kept = np.flatnonzero(keep)
    kernel, sparsity = steady_cases.perturbed(
        case, numpy(fast.prunable_weights[0]), keep
    )
    for wrapper in (fast, host):
        wrapper.prunable_weights[0].assign(kernel.reshape(16, 8))

    settles = (
        keras.backend.backend() == "tensorflow"
        and case in steady_cases.STEADY
    )
    rest = SteadyUpdates().apply([fast], [sparsity], step=4)
    assert rest == ([] if settles else [fast])
    for wrapper in rest:
        wrapper.update_masks(sparsity, step=4)
    host.update_masks(sparsity, step=4)
    _assert_same_state(fast, host)
    assert int(numpy(fast.pruning_step)) == 4
    if case == "kept_below_pruned":  # the host path really did re-select
        assert not numpy(host.masks[0]).reshape(-1)[kept[0]]


@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
def test_frequency_one_fit_equals_the_host_updates(monkeypatch, schedule):
    # Training at frequency 1 with the fast paths gives the same masks,
    # thresholds, steps and weights as with the host update at every step:
    # "steady" (SteadyUpdates, called from the callback) and "in_step"
    # (instep.InStepUpdates inside the train step, the default). With a
    # constant target only the first update of each layer runs on the host
    # (TensorFlow); during a polynomial ramp the newly pruned weights drift
    # under Adam's momentum, so the fast paths must bake them.
    from keras_prune.training import tf_fast_path as instep
    from keras_prune.core import wrapper as wrapper_module

    def run(mode):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((16,)),
                L.Dense(12, activation="relu"),
                L.Dense(4),
            ]
        )
        pruned = keras_prune.prune_low_magnitude(
            model,
            pruning_schedule=(
                keras_prune.ConstantSparsity(0.75, 0, frequency=1)
                if schedule == "constant"
                else keras_prune.PolynomialDecay(
                    0.2, 0.75, begin_step=0, end_step=16, frequency=1
                )
            ),
        )
        pruned.compile("adam", "mse", run_eagerly=False)
        host_calls = []
        original = wrapper_module.PruneLowMagnitude.update_masks

        def counted(self, *args, **kwargs):
            host_calls.append(self.name)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(
            wrapper_module.PruneLowMagnitude, "update_masks", counted
        )
        if mode != "in_step":
            monkeypatch.setattr(instep, "model_allows", lambda model: False)
        if mode == "host":
            monkeypatch.setattr(
                instep.SteadyUpdates,
                "apply",
                lambda self, wrappers, sparsities, step: list(wrappers),
            )
        rng = np.random.default_rng(1)
        x = rng.normal(size=(64, 16)).astype("float32")
        y = rng.normal(size=(64, 4)).astype("float32")
        pruned.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
            callbacks=[keras_prune.UpdatePruningStep()],
        )
        monkeypatch.undo()
        layers = keras_prune.core.layers.pruned_layers(pruned)
        return [_state(layer) for layer in layers], host_calls

    host, host_calls = run("host")
    assert len(host_calls) == 2 * 16  # 2 layers, 16 steps
    for mode in ("steady", "in_step"):
        fast, fast_calls = run(mode)
        for a, b in zip(fast, host):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
        if keras.backend.backend() != "tensorflow":
            assert len(fast_calls) == len(host_calls)
        elif schedule == "constant":
            assert len(fast_calls) == 2, mode  # step 0 only
        else:  # steps whose count equals the previous one's (5 here)
            assert 2 < len(fast_calls) < len(host_calls), mode


def test_steady_updates_only_when_updates_are_frequent():
    # The compiled check costs a one-time compilation; at the default
    # frequency (100) it would not pay for itself, so nothing is compiled
    # for updates more than SteadyUpdates.MAX_INTERVAL steps apart.
    from keras_prune.training.tf_fast_path import SteadyUpdates

    fast, _ = _twin_dense_wrappers()  # last update at step 3
    steady = SteadyUpdates()
    assert steady.apply([fast], [0.5], step=3 + 100) == [fast]
    assert steady._calls == {}
    fast.update_masks(0.5, step=103)
    on_device = keras.backend.backend() == "tensorflow"
    assert steady.apply([fast], [0.5], step=103 + 10) == (
        [] if on_device else [fast]
    )
    assert len(steady._calls) == (1 if on_device else 0)
    assert int(numpy(fast.pruning_step)) == (113 if on_device else 103)


@pytest.mark.parametrize("how", ["prune_low_magnitude", "strip_pruning"])
def test_training_a_copy_leaves_its_source_whole(how):
    """A pruned copy (and a stripped one) holds its own buffers: training
    it (JAX's train step donates the variables' buffers) leaves the model
    it came from unchanged and usable, bit for bit."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=32)
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    source = model
    if how == "strip_pruning":
        source = pruned
        model = keras_prune.strip_pruning(pruned)
        copy_of = model
    else:
        copy_of = pruned
    before = [np.array(w) for w in source.get_weights()]
    expected = source.predict(x, verbose=0)
    copy_of.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    callbacks = ([keras_prune.UpdatePruningStep()]
                 if how == "prune_low_magnitude" else [])
    copy_of.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
    for found, was in zip(source.get_weights(), before):
        np.testing.assert_array_equal(found, was)
    np.testing.assert_array_equal(source.predict(x, verbose=0), expected)
