"""First-order Taylor importance: |sum of w * dL/dw| per channel, the same
numbers on every backend (checked against a numpy gradient), zero for a
channel the loss does not see."""

import keras
import numpy as np
import pytest

from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from keras_prune.structured.taylor import taylor_gradients
from tests.conftest import numpy
from tests.test_structured import Conv2D
from tests.test_structured import Dense
from tests.test_structured import images
from tests.test_structured import randomize

L = keras.layers


def mlp():
    inputs = keras.Input((5,))
    h = Dense(4, activation="relu", name="h")(inputs)
    outputs = Dense(3, name="out")(h)
    return randomize(keras.Model(inputs, outputs))


def data(n=10):
    rng = np.random.default_rng(2)
    return (rng.normal(size=(n, 5)).astype("float32"),
            rng.normal(size=(n, 3)).astype("float32"))


def numpy_taylor(model, x, y):
    """The reference: gradients of the mean squared error by hand."""
    w1, b1, w2, b2 = [numpy(w).astype(np.float64) for w in model.weights]
    pre = x @ w1 + b1
    h = np.maximum(pre, 0)
    error = 2 * (h @ w2 + b2 - y) / y.size
    g_w2 = h.T @ error
    g_pre = error @ w2.T * (pre > 0)
    g_w1, g_b1 = x.T @ g_pre, g_pre.sum(0)
    producer = np.abs((w1 * g_w1).sum(0) + b1 * g_b1)
    consumer = np.abs((w2 * g_w2).sum(1))
    return producer, consumer


def test_scores_match_numpy_gradients_on_every_backend():
    model = mlp()
    x, y = data()
    producer, consumer = numpy_taylor(model, x, y)
    # Batches of 4, 4, 2: weighted by size, the mean is the full gradient.
    plan = plan_pruning(model, ratio=0.5, criterion="taylor", data=(x, y),
                        loss="mse", batch_size=4, normalizer="off")
    group = plan.groups[0]
    np.testing.assert_allclose(group["raw"], (producer + consumer) / 2,
                               rtol=1e-4, atol=1e-9)
    kept = {c for c, k in enumerate(group["keep"]) if k}
    assert kept == set(np.argsort(-(producer + consumer))[:2].tolist())
    # An iterable of batches and a compiled loss give the same scores.
    model.compile(loss="mse")
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    again = plan_pruning(model, ratio=0.5, criterion="taylor", data=batches,
                         normalizer="off")
    np.testing.assert_allclose(again.groups[0]["raw"], group["raw"],
                               rtol=1e-5)


def test_channel_the_loss_does_not_see_scores_zero():
    inputs = keras.Input((6, 6, 2))
    x = Conv2D(4, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = Dense(3, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    kernel = numpy(model.get_layer("out").kernel).copy()
    kernel[2] = 0.0                       # nothing reads channel 2
    model.get_layer("out").kernel.assign(kernel)
    x = images((6, 6, 2), n=8)
    y = np.arange(8) % 3
    before = [numpy(w).copy() for w in model.weights]

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    taylor = plan_pruning(model, ratio=0.25, criterion="taylor", data=(x, y),
                          loss=loss)
    l2 = plan_pruning(model, ratio=0.25, criterion="l2")
    conv = taylor.groups[0]
    assert conv["name"] == "conv"
    assert conv["raw"][2] == 0.0
    assert min(conv["raw"][c] for c in (0, 1, 3)) > 0
    assert l2.groups[0]["raw"][2] > 0
    assert conv["keep"] == [True, True, False, True]
    small = apply_plan(model, taylor)
    assert small.get_layer("conv").kernel.shape[-1] == 3
    for a, b in zip(before, model.weights):   # no training, no BN update
        np.testing.assert_array_equal(a, numpy(b))


def test_gradients_are_per_variable_means():
    model = mlp()
    x, y = data(6)
    gradients = taylor_gradients(model, (x, y), "mse", batch_size=6)
    halves = [taylor_gradients(model, (x[i:i + 3], y[i:i + 3]), "mse")
              for i in (0, 3)]
    for v in model.trainable_variables:
        np.testing.assert_allclose(
            gradients[id(v)], (halves[0][id(v)] + halves[1][id(v)]) / 2,
            rtol=1e-4, atol=1e-8)


def test_taylor_needs_data_and_loss():
    model = mlp()
    with pytest.raises(ValueError, match="criterion must have data .*taylor"):
        plan_pruning(model, criterion="taylor")
    with pytest.raises(ValueError, match="needs a loss"):
        plan_pruning(model, criterion="taylor", data=data())
    x, y = data()
    with pytest.raises(ValueError, match="10 inputs and 4 targets"):
        plan_pruning(model, criterion="taylor", data=(x, y[:4]), loss="mse")
    with pytest.raises(ValueError, match="batch_size must .* got 0"):
        plan_pruning(model, criterion="taylor", data=(x, y), loss="mse",
                     batch_size=0)
    with pytest.raises(ValueError, match="criterion must be one of"):
        plan_pruning(model, criterion="hessian")


def test_attention_heads_get_taylor_scores():
    inputs = keras.Input((5, 6))
    x = Dense(8, name="embed")(inputs)
    a = L.MultiHeadAttention(3, 2, name="mha",
                             kernel_initializer="zeros")(x, x)
    outputs = Dense(2, name="out")(L.GlobalAveragePooling1D()(a))
    model = randomize(keras.Model(inputs, outputs))
    output = model.get_layer("mha").output_dense.kernel
    kernel = numpy(output).copy()
    kernel[1] = 0.0                       # head 1 reaches nothing
    output.assign(kernel)
    rng = np.random.default_rng(3)
    x = rng.random((6, 5, 6)).astype("float32")
    y = rng.random((6, 2)).astype("float32")
    plan = plan_pruning(model, ratio=0.34, criterion="taylor", data=(x, y),
                        loss="mse")
    heads = next(g for g in plan.groups if g["name"] == "mha:heads")
    assert heads["raw"][1] == 0.0 and min(heads["raw"][0::2]) > 0
    assert heads["keep"] == [True, False, True]
    embed = next(g for g in plan.groups if g["name"] == "embed")
    assert all(s > 0 for s in embed["raw"])   # query/key/value rows scored
