"""Sparsity-preserving QAT and the checked `keras_prune.quantize`, on every
backend: zeros survive fine-tuning and Keras's int8 quantization, and the
int8 model computes what the QAT model computed."""

import keras
import numpy as np
import pytest

import keras_prune
from tests.conftest import numpy

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(48, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


@pytest.fixture(scope="module")
def pruned_mlp(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = mlp()
    model.compile(keras.optimizers.Adam(3e-3), LOSS)
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    pruned, _ = keras_prune.prune_now(model, 0.85)
    return keras_prune.strip_pruning(pruned)


def kernels(model):
    return {
        layer.name: numpy(layer.kernel).copy()
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    }


def test_pqat_keeps_zeros_and_int8_matches_the_trained_model(pruned_mlp, digits):
    (x, y), (x_test, y_test) = digits
    before = kernels(pruned_mlp)
    weights = [numpy(w).copy() for w in pruned_mlp.weights]

    qat = keras_prune.prune_preserving_qat(pruned_mlp)
    assert [w.qat_mode for w in keras_prune.core.layers.pruned_layers(qat)] == [
        "int8", "int8"]
    qat.compile(keras.optimizers.Adam(1e-3), LOSS)
    history = qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))

    final = keras_prune.strip_pruning(qat)
    after = kernels(final)
    for name, kernel in before.items():
        # The same zeros, exactly: none refilled, none added by training.
        np.testing.assert_array_equal(after[name] == 0, kernel == 0)
        assert not np.array_equal(after[name], kernel)  # it did train

    reference = numpy(qat.predict_on_batch(x_test))
    float_outputs = numpy(final.predict_on_batch(x_test))
    int8 = keras_prune.quantize(final, "int8")
    outputs = numpy(int8.predict_on_batch(x_test))
    for layer in int8.layers:
        if isinstance(layer, keras.layers.Dense):
            q = numpy(layer._kernel)
            assert q.dtype == np.int8
            np.testing.assert_array_equal(q == 0, after[layer.name] == 0)
    # What was trained is what is deployed: the int8 model's outputs equal
    # the QAT model's up to float rounding, far closer than the float
    # model's outputs are to either.
    scale = np.max(np.abs(reference))
    qat_gap = np.max(np.abs(outputs - reference)) / scale
    ptq_gap = np.max(np.abs(float_outputs - outputs)) / scale
    assert qat_gap <= 1e-5, qat_gap
    assert ptq_gap >= 100 * qat_gap
    assert np.mean(outputs.argmax(1) == y_test) >= 0.8

    # Nothing the user gave was modified.
    for a, w in zip(weights, pruned_mlp.weights):
        assert a.tobytes() == numpy(w).tobytes()


def test_pqat_embedding_and_einsum_dense():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(40, 16)(inputs)
    h = keras.layers.EinsumDense("abc,cd->abd", (6, 12), bias_axes="d")(h)
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    pruned, _ = keras_prune.prune_now(model, 0.7)
    stripped = keras_prune.strip_pruning(pruned)
    zeros = {w.path: numpy(w) == 0 for w in stripped.weights if w.ndim >= 2}

    qat = keras_prune.prune_preserving_qat(pruned)  # wrapped input works too
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (64, 6)).astype("int32")
    y = rng.integers(0, 5, 64)
    qat.compile(keras.optimizers.Adam(1e-2), LOSS)
    qat.fit(x, y, epochs=2, batch_size=16, verbose=0)

    final = keras_prune.strip_pruning(qat)
    for w in final.weights:
        if w.path in zeros:
            np.testing.assert_array_equal(numpy(w) == 0, zeros[w.path])
    reference = numpy(qat.predict_on_batch(x))
    int8 = keras_prune.quantize(final, "int8")
    outputs = numpy(int8.predict_on_batch(x))
    assert np.max(np.abs(outputs - reference)) <= 1e-5 * np.max(
        np.abs(reference))
    # Keras's int8 tensors of all three classes hold exactly those zeros.
    stored = {
        "embedding": int8.layers[1]._embeddings,
        "einsum_dense": int8.layers[2]._kernel,
        "dense": int8.layers[4]._kernel,
    }
    floats = {layer.name: w for layer in final.layers for w in layer.weights
              if w.ndim >= 2}
    assert sorted(stored) == sorted(floats)
    for name, tensor in stored.items():
        q = numpy(tensor)
        assert q.dtype == np.int8
        pruned = numpy(floats[name]) == 0
        assert np.all(q[pruned] == 0)
        # Magnitude pruning kept the large weights: none rounds to zero.
        assert np.sum(q == 0) == np.sum(pruned)


def test_pqat_survives_save_and_load(pruned_mlp, digits, tmp_path):
    (x, y), _ = digits
    qat = keras_prune.prune_preserving_qat(pruned_mlp)
    qat.compile(keras.optimizers.Adam(1e-3), LOSS)
    qat.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    qat.save(tmp_path / "qat.keras")
    again = keras.saving.load_model(tmp_path / "qat.keras")
    assert [w.qat_mode for w in keras_prune.core.layers.pruned_layers(again)] == [
        "int8", "int8"]
    np.testing.assert_array_equal(
        numpy(again.predict_on_batch(x[:32])),
        numpy(qat.predict_on_batch(x[:32])),
    )


def test_quantize_int4_keeps_zeros_and_copies(pruned_mlp, digits):
    _, (x_test, _) = digits
    before = kernels(pruned_mlp)
    int4 = keras_prune.quantize(pruned_mlp, "int4")
    assert pruned_mlp.layers[1].quantization_mode is None  # untouched
    dense = int4.layers[1]
    assert dense.quantization_mode == "int4"
    kernel = before[pruned_mlp.layers[1].name]
    # The kernel Keras computes with, read back through identity inputs.
    probe = keras.Sequential([keras.Input((kernel.shape[0],)), dense])
    effective = numpy(probe.predict_on_batch(np.eye(kernel.shape[0],
                                                    dtype="float32")))
    effective = np.maximum(effective, 0)  # relu of (row of kernel + bias)
    bias = numpy(dense.bias)
    rows_with = np.maximum(kernel + bias, 0)
    np.testing.assert_array_equal(
        effective[(kernel == 0) & (bias > 0)], rows_with[(kernel == 0) & (bias > 0)]
    )


def test_quantize_refuses_gptq_on_a_pruned_model(pruned_mlp):
    kernel = pruned_mlp.layers[1].kernel
    zeros = int(np.sum(numpy(kernel) == 0))
    with pytest.raises(ValueError) as info:
        keras_prune.quantize(pruned_mlp, "gptq")
    message = str(info.value)
    assert message.startswith("mode='gptq' would refill the pruned zeros of ")
    assert f"{pruned_mlp.layers[1].path} ({zeros:,} of {numpy(kernel).size:,})" in message
    assert "Use mode='int8' or 'int4' (zeros kept)" in message
    with pytest.raises(ValueError, match=r"mode='awq' would refill"):
        keras_prune.quantize(pruned_mlp, "awq")


def test_bad_input_messages(pruned_mlp):
    with pytest.raises(ValueError, match=r"mode must be one of \['int8'\], got 'int4'"):
        keras_prune.prune_preserving_qat(pruned_mlp, mode="int4")
    with pytest.raises(ValueError, match="expects a keras.Model, got Dense"):
        keras_prune.prune_preserving_qat(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"mode must be one of \['int8', 'int4', 'float8', 'gptq', 'awq'\].*got 'int16'"):
        keras_prune.quantize(pruned_mlp, "int16")
    quantized = keras_prune.quantize(pruned_mlp, "int8")
    with pytest.raises(ValueError, match="is quantized already; pass the float model"):
        keras_prune.prune_preserving_qat(quantized)
    with pytest.raises(ValueError, match=r"qat_mode must be None or one of \['int8'\], got 'int2'"):
        keras_prune.PruneLowMagnitude(keras.layers.Dense(3), qat_mode="int2")
