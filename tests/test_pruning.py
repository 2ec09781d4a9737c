"""prune_low_magnitude / strip_pruning / saving / resuming, on every backend."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.patterns import num_pruned
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy

L = keras.layers


def small_cnn():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu", name="hidden")(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs)


def compile_(model, optimizer="adam"):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def masks(model):
    return [numpy(m) for layer in pruned_layers(model) for m in layer.masks]


def schedule():
    # 1437 training digits / batch 64 = 23 steps per epoch.
    return keras_prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=40,
                                       frequency=10)


def test_prune_copies_and_does_not_modify_input(digits):
    (x, _), _ = digits
    model = small_cnn()
    before = [w.copy() for w in model.get_weights()]
    pruned = keras_prune.prune_low_magnitude(model)
    assert [l.name for l in pruned_layers(pruned)] == [
        "prune_low_magnitude_conv",
        "prune_low_magnitude_hidden",
        "prune_low_magnitude_logits",
    ]
    # Weights copied, nothing shared, input model unchanged.
    assert not {id(v) for v in model.weights} & {id(v) for v in pruned.weights}
    np.testing.assert_array_equal(
        numpy(model.predict(x[:32], verbose=0)),
        numpy(pruned.predict(x[:32], verbose=0)),
    )
    keras_prune.update_masks(pruned, 0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not any(isinstance(l, keras_prune.PruneLowMagnitude)
                   for l in model.layers)


def test_sequential_nested_and_layer_list():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, name="inner_dense")],
                             name="inner")
    inputs = keras.Input((4,))
    x = L.Dense(6, name="outer_dense")(inputs)
    outer = keras.Model(inputs, inner(x))
    pruned = keras_prune.prune_low_magnitude(outer)
    names = sorted(l.name for l in pruned_layers(pruned))
    assert names == ["prune_low_magnitude_inner_dense",
                     "prune_low_magnitude_outer_dense"]
    seq = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Dropout(0.1)])
    pruned_seq = keras_prune.prune_low_magnitude(seq)
    assert isinstance(pruned_seq.layers[0], keras_prune.PruneLowMagnitude)
    assert isinstance(pruned_seq.layers[1], L.Dropout)
    wrapped = keras_prune.prune_low_magnitude([L.Dense(2), L.Conv1D(2, 1)])
    assert all(isinstance(w, keras_prune.PruneLowMagnitude) for w in wrapped)


def test_subclassed_dense_is_prunable():
    class MyDense(L.Dense):
        pass

    model = keras.Sequential([keras.Input((4,)), MyDense(3)])
    pruned = keras_prune.prune_low_magnitude(model)
    assert isinstance(pruned.layers[0].layer, MyDense)


def test_fit_reaches_exact_sparsity_and_strip_is_identical(digits, tmp_path):
    (x, y), (xt, _) = digits
    pruned = compile_(keras_prune.prune_low_magnitude(small_cnn(), schedule()))
    gamma_before = numpy(pruned.get_layer("bn").gamma)
    pruned.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    for layer in pruned_layers(pruned):
        assert int(numpy(layer.pruning_step)) == 40
        for v, m in zip(layer.prunable_weights, layer.masks):
            n = int(np.prod(v.shape))
            assert int((numpy(v) == 0).sum()) == num_pruned(n, 0.8), v.path
            assert int((~numpy(m)).sum()) == num_pruned(n, 0.8)
    # Non-prunable weights are trained, never masked.
    bn = pruned.get_layer("bn")
    assert (numpy(bn.gamma) != 0).all() and (numpy(bn.gamma) != gamma_before).any()
    for layer in pruned_layers(pruned):
        assert (numpy(layer.layer.bias) != 0).all()

    stripped = keras_prune.strip_pruning(pruned)
    assert not pruned_layers(stripped)
    assert not {id(v) for v in stripped.weights} & {id(v) for v in pruned.weights}
    diff = np.abs(numpy(stripped.predict(xt, verbose=0))
                  - numpy(pruned.predict(xt, verbose=0))).max()
    assert diff == 0.0
    for layer in pruned_layers(pruned):
        plain = stripped.get_layer(layer.layer.name)
        np.testing.assert_array_equal(numpy(plain.kernel),
                                      numpy(layer.layer.kernel))

    # The stripped model loads with plain Keras, without keras_prune.
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    np.save(tmp_path / "x.npy", xt[:16])
    expected = numpy(stripped.predict(xt[:16], verbose=0))
    np.save(tmp_path / "expected.npy", expected)
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"e = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "out = keras.ops.convert_to_numpy(m.predict(x, verbose=0))\n"
        "assert np.abs(out - e).max() == 0, np.abs(out - e).max()\n"
        "assert 'keras_prune' not in sys.modules\n"
    )
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   cwd=tmp_path)


def test_save_mid_training_and_resume(digits, tmp_path):
    (x, y), (xt, _) = digits
    pruned = compile_(keras_prune.prune_low_magnitude(small_cnn(), schedule()))
    pruned.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    path = tmp_path / "mid.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects, no scope
    for a, b in zip(masks(pruned), masks(loaded)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pruned_layers(pruned), pruned_layers(loaded)):
        assert int(numpy(a.pruning_step)) == int(numpy(b.pruning_step)) == 20
        assert a.pruning_schedule.get_config() == b.pruning_schedule.get_config()
    np.testing.assert_array_equal(numpy(pruned.predict(xt, verbose=0)),
                                  numpy(loaded.predict(xt, verbose=0)))
    # The loaded model continues the schedule from the optimizer's step.
    assert int(numpy(loaded.optimizer.iterations)) == 23
    loaded.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    for layer in pruned_layers(loaded):
        assert int(numpy(layer.pruning_step)) == 40
        for v in layer.prunable_weights:
            n = int(np.prod(v.shape))
            assert int((numpy(v) == 0).sum()) == num_pruned(n, 0.8)
    with keras_prune.prune_scope():
        keras.saving.load_model(path)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated interruption")


def test_backup_and_restore_resume_matches_uninterrupted(digits, tmp_path):
    (x, y), _ = digits
    x, y = x[:640], y[:640]  # 10 steps per epoch
    base = small_cnn()
    weights = base.get_weights()
    sched = keras_prune.PolynomialDecay(0.0, 0.75, 0, 35, frequency=5)

    def run(callbacks):
        model = small_cnn()
        model.set_weights(weights)
        pruned = compile_(keras_prune.prune_low_magnitude(model, sched))
        pruned.fit(x, y, epochs=4, batch_size=64, shuffle=False, verbose=0,
                   callbacks=[keras_prune.UpdatePruningStep(), *callbacks])
        return pruned

    reference = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run([backup, _Interrupt()])
    resumed = run([backup])
    for a, b in zip(masks(reference), masks(resumed)):
        np.testing.assert_array_equal(a, b)
    for layer in pruned_layers(resumed):
        assert int(numpy(layer.pruning_step)) == 35


def test_custom_training_loop_two_call_api(digits):
    (x, y), _ = digits
    pruned = compile_(keras_prune.prune_low_magnitude(
        small_cnn(), keras_prune.ConstantSparsity(0.6, 0, frequency=5)))
    for step in range(12):
        batch = slice(step * 64, (step + 1) * 64)
        keras_prune.update_masks(pruned, int(numpy(pruned.optimizer.iterations))
                                 if pruned.optimizer.built else step)
        pruned.train_on_batch(x[batch], y[batch])
    keras_prune.finalize_pruning(pruned)
    for layer in pruned_layers(pruned):
        assert int(numpy(layer.pruning_step)) == 10
        for v in layer.prunable_weights:
            n = int(np.prod(v.shape))
            assert int((numpy(v) == 0).sum()) == num_pruned(n, 0.6)


class TwoLayer(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = L.Dense(16, activation="relu")
        self.blocks = [L.Dense(12, activation="relu"), L.Dropout(0.1)]
        self.out = L.Dense(10)

    def call(self, x, training=False):
        x = self.hidden(L.Flatten()(x))
        for block in self.blocks:
            x = block(x, training=training)
        return self.out(x)


def test_subclassed_model_inplace(digits):
    (x, y), (xt, _) = digits
    model = TwoLayer()
    model(x[:1])
    with pytest.raises(ValueError, match="Pass inplace=True"):
        keras_prune.prune_low_magnitude(model)
    same = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0, frequency=10), inplace=True)
    assert same is model
    assert isinstance(model.hidden, keras_prune.PruneLowMagnitude)
    assert isinstance(model.blocks[0], keras_prune.PruneLowMagnitude)
    assert isinstance(model.blocks[1], L.Dropout)
    assert len(pruned_layers(model)) == 3
    # Weights appear once each (the wrapped layer is not tracked twice).
    assert len({id(v) for v in model.weights}) == len(model.weights)
    compile_(model)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0,
              callbacks=[keras_prune.UpdatePruningStep()])
    for layer in pruned_layers(model):
        v = layer.prunable_weights[0]
        assert int((numpy(v) == 0).sum()) == num_pruned(int(np.prod(v.shape)), 0.5)
    before = numpy(model.predict(xt, verbose=0))
    stripped = keras_prune.strip_pruning(model)
    assert stripped is model and not pruned_layers(model)
    assert isinstance(model.hidden, L.Dense)
    np.testing.assert_array_equal(before, numpy(model.predict(xt, verbose=0)))


# ---- bad input ---------------------------------------------------------------


def test_missing_callback_is_a_clear_error_and_keeps_the_model(digits):
    (x, y), _ = digits
    pruned = compile_(keras_prune.prune_low_magnitude(small_cnn()))
    weights = [w.copy() for w in pruned.get_weights()]
    with pytest.raises(ValueError, match=re.escape(
            "Training a pruned model needs the keras_prune.UpdatePruningStep "
            "callback: model.fit(..., callbacks=[keras_prune."
            "UpdatePruningStep()]).")):
        pruned.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(weights, pruned.get_weights()):
        np.testing.assert_array_equal(a, b)
    pruned.fit(x[:128], y[:128], epochs=1, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])


def test_missing_callback_in_custom_loop(digits):
    (x, y), _ = digits
    pruned = compile_(keras_prune.prune_low_magnitude(small_cnn()))
    with pytest.raises(ValueError, match="keras_prune.update_masks"):
        pruned.train_on_batch(x[:8], y[:8])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(block_pooling_type="MIN"),
         "block_pooling_type must be 'AVG' or 'MAX', got 'MIN'."),
        (dict(pruning_schedule=0.5),
         "pruning_schedule must be a keras_prune.PruningSchedule"),
        (dict(block_size=(0, 2)),
         "block_size must be two positive integers, got (0, 2)."),
    ],
)
def test_bad_arguments(kwargs, message):
    model = small_cnn()
    with pytest.raises(ValueError, match=re.escape(message)):
        keras_prune.prune_low_magnitude(model, **kwargs)


def test_bad_objects():
    with pytest.raises(ValueError, match=re.escape(
            "prune_low_magnitude expects a keras Layer, a list of layers or a "
            "keras Model, got str: 'model.keras'.")):
        keras_prune.prune_low_magnitude("model.keras")
    # tfmot wraps a Dropout and never prunes it: returned as it is.
    dropout = L.Dropout(0.5, name="dropout")
    assert keras_prune.prune_low_magnitude(dropout) is dropout


def test_strip_unpruned_model_returns_it_with_warning():
    model = small_cnn()
    with pytest.warns(UserWarning, match="has no pruning wrappers; it is "
                                         "returned unchanged"):
        assert keras_prune.strip_pruning(model) is model


def test_update_pruning_step_on_unpruned_model(digits):
    (x, y), _ = digits
    model = compile_(small_cnn())
    with pytest.raises(ValueError, match="contains no pruned layers"):
        model.fit(x[:64], y[:64], verbose=0,
                  callbacks=[keras_prune.UpdatePruningStep()])


def test_pruning_policy_chooses_layers():
    class DenseOnly(keras_prune.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, L.Dense)

    pruned = keras_prune.prune_low_magnitude(small_cnn(), pruning_policy=DenseOnly())
    assert [l.layer.name for l in pruned_layers(pruned)] == ["hidden", "logits"]
    with pytest.raises(ValueError, match="pruning_policy must be a "
                                         "keras_prune.PruningPolicy"):
        keras_prune.prune_low_magnitude(small_cnn(), pruning_policy="dense")


def test_wrapped_weights_are_saved_once(tmp_path):
    model = keras.Sequential([keras.Input((64,)), L.Dense(512), L.Dense(3)])
    pruned = keras_prune.prune_low_magnitude(model)
    state = {id(v) for layer in pruned_layers(pruned)
             for v in [*layer.masks, *layer.thresholds, layer.pruning_step]}
    model_weights = [(v.name, v.shape) for v in pruned.weights
                     if id(v) not in state]
    assert model_weights == [(v.name, v.shape) for v in model.weights]
    model.save(tmp_path / "dense.keras")
    pruned.save(tmp_path / "pruned.keras")
    # One bool mask per kernel: 1/4 of the float32 kernel bytes, not a copy.
    ratio = (tmp_path / "pruned.keras").stat().st_size / (
        tmp_path / "dense.keras").stat().st_size
    assert 1.2 < ratio < 1.35, ratio


def test_stripped_model_is_not_compiled_and_saves_no_optimizer(digits, tmp_path):
    # clone_model compiles the copy of a compiled model; a compiled model
    # saves its optimizer state (a stripped LeNet was 3x its plain size).
    (x, y), _ = digits
    pruned = compile_(keras_prune.prune_low_magnitude(small_cnn()))
    pruned.fit(x[:128].reshape(-1, 8, 8, 1), y[:128], verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    stripped = keras_prune.strip_pruning(pruned)
    assert not stripped.compiled
    stripped.save(str(tmp_path / "s.keras"))
    plain = small_cnn()
    plain.save(str(tmp_path / "p.keras"))
    size = os.path.getsize(tmp_path / "s.keras")
    assert abs(size - os.path.getsize(tmp_path / "p.keras")) < 2000
