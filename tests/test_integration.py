"""Pruning together with the rest of Keras: mixed precision, distillation,
distribution (JAX DataParallel, TF MirroredStrategy on 2 simulated devices)."""

import contextlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.patterns import num_pruned
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy
from tests.test_pruning import compile_
from tests.test_pruning import masks
from tests.test_pruning import small_cnn

BACKEND = keras.backend.backend()


def assert_exact_sparsity(model, sparsity):
    for layer in pruned_layers(model):
        for v in layer.prunable_weights:
            n = int(np.prod(v.shape))
            assert int((numpy(v) == 0).sum()) == num_pruned(n, sparsity), v.path


def test_mixed_precision(digits):
    (x, y), (xt, _) = digits
    keras.config.set_dtype_policy("mixed_bfloat16")
    pruned = compile_(keras_prune.prune_low_magnitude(
        small_cnn(), keras_prune.PolynomialDecay(0.0, 0.7, 0, 20, frequency=5)))
    layer = pruned_layers(pruned)[0]
    assert layer.compute_dtype == "bfloat16"
    assert layer.prunable_weights[0].dtype == "float32"
    pruned.fit(x[:640], y[:640], epochs=3, batch_size=64, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    assert_exact_sparsity(pruned, 0.7)
    stripped = keras_prune.strip_pruning(pruned)
    np.testing.assert_array_equal(numpy(pruned.predict(xt, verbose=0)),
                                  numpy(stripped.predict(xt, verbose=0)))


def test_pruned_student_of_distiller(digits):
    (x, y), _ = digits
    teacher = compile_(small_cnn())
    teacher.fit(x, y, epochs=1, verbose=0)
    student = keras_prune.prune_low_magnitude(
        small_cnn(), keras_prune.PolynomialDecay(0.0, 0.6, 0, 20, frequency=10))
    distiller = keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=3.0),
    )
    distiller.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        distiller.fit(x[:64], y[:64], verbose=0)
    distiller.fit(x[:640], y[:640], epochs=3, batch_size=64, verbose=0,
                  callbacks=[keras_prune.UpdatePruningStep()])
    assert_exact_sparsity(student, 0.6)
    for layer in pruned_layers(student):
        assert int(numpy(layer.pruning_step)) == 20


def no_bn_cnn():
    # No BatchNormalization: MirroredStrategy normalizes each replica's half
    # batch separately, which changes training itself, not just pruning.
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu")(inputs)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    return keras.Model(inputs, L.Dense(10)(x))


# A ramp updated every 10 steps, and a constant target updated at every
# step (TensorFlow's compiled steady-state path, `SteadyUpdates`).
SCHEDULES = {
    "polynomial": lambda: keras_prune.PolynomialDecay(
        0.0, 0.8, 0, 30, frequency=10),
    "constant_f1": lambda: keras_prune.ConstantSparsity(0.8, 0, frequency=1),
}


def _train(weights, x, y, scope=contextlib.nullcontext,
           schedule="polynomial"):
    with scope():
        model = no_bn_cnn()
        model.set_weights(weights)
        pruned = compile_(keras_prune.prune_low_magnitude(
            model, SCHEDULES[schedule]()),
            optimizer=keras.optimizers.SGD(0.05))
    pruned.fit(x, y, epochs=4, batch_size=64, shuffle=False, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    return pruned


@pytest.mark.skipif(BACKEND != "jax", reason="JAX DataParallel")
def test_jax_data_parallel_matches_single_device(digits):
    import jax

    (x, y), _ = digits
    x, y = x[:640], y[:640]
    devices = jax.devices("cpu")
    assert len(devices) == 2, "conftest sets 2 simulated CPU devices"
    weights = no_bn_cnn().get_weights()
    single = _train(weights, x, y)

    @contextlib.contextmanager
    def data_parallel():
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices))
        yield

    try:
        parallel = _train(weights, x, y, data_parallel)
        kernel = pruned_layers(parallel)[0].prunable_weights[0]
        assert len(kernel.value.sharding.device_set) == 2
    finally:
        keras.distribution.set_distribution(None)
    assert_exact_sparsity(parallel, 0.8)
    for a, b in zip(masks(single), masks(parallel)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF MirroredStrategy")
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_tf_mirrored_strategy_matches_single_device(digits, schedule):
    import tensorflow as tf

    (x, y), _ = digits
    x, y = x[:640], y[:640]
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) == 2, "conftest sets 2 logical CPUs"
    weights = no_bn_cnn().get_weights()
    single = _train(weights, x, y, schedule=schedule)
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus])
    mirrored = _train(weights, x, y, strategy.scope, schedule=schedule)
    mask = pruned_layers(mirrored)[0].masks[0]
    assert len(mask.value.values) == 2  # one copy per replica
    assert_exact_sparsity(mirrored, 0.8)
    for a, b in zip(masks(single), masks(mirrored)):
        np.testing.assert_array_equal(a, b)
