"""Learned masks: trainable scores, movement pruning and supermasks.

References are NumPy: the gradient of a softmax regression written out by
hand, the top-v of the scores by a sort. The same references on every
backend mean the same masks on every backend.
"""

import zlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned


def softmax_regression(seed=0, inputs=8, classes=4):
    rng = np.random.default_rng(seed)
    model = keras.Sequential([
        keras.Input((inputs,)), keras.layers.Dense(classes, name="out")])
    model.set_weights([rng.normal(size=(inputs, classes)).astype("float32"),
                       rng.normal(size=classes).astype("float32")])
    return model


def batch(seed=1, n=16, inputs=8, classes=4):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, inputs)).astype("float32"),
            rng.integers(0, classes, size=n))


def numpy_gradient(kernel, bias, x, y):
    """dL/dW of the mean cross-entropy of softmax(x W + b)."""
    logits = x.astype(np.float64) @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T.astype(np.float64) @ p / len(y)


def numpy_(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="d1"),
        keras.layers.Dense(10, name="d2"),
    ])


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# ---- the mechanism -----------------------------------------------------------


def test_forward_is_exactly_w_times_mask_with_any_scores():
    model = softmax_regression()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0), criterion="movement")
    (wrapper,) = pruned_layers(pruned)
    assert isinstance(wrapper, keras_prune.PruneWithScores)
    rng = np.random.default_rng(3)
    # Scores far larger than the mask: a mask computed as m + s - s would
    # round to 0 or 2 in float32.
    wrapper.mask_scores[0].assign(
        rng.normal(scale=1e8, size=(8, 4)).astype("float32"))
    keep = rng.random((8, 4)) < 0.5
    wrapper.set_masks([(keep, 0.0)], 0)
    x, _ = batch()
    kernel, bias = model.get_weights()
    expected = x @ (kernel * keep) + bias
    got = numpy_(pruned(x))
    np.testing.assert_array_equal(
        got, numpy_(keras.ops.add(
            keras.ops.matmul(x, kernel * keep), bias)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_straight_through_gradients():
    """dL/ds = dL/dW' * w everywhere (pruned weights too); dL/dw =
    dL/dW' * m; W' = w * m."""
    model = softmax_regression()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0), criterion="movement")
    (wrapper,) = pruned_layers(pruned)
    keep = np.random.default_rng(4).random((8, 4)) < 0.5
    wrapper.set_masks([(keep, 0.0)], 0)
    x, y = batch()
    kernel, bias = model.get_weights()
    g = numpy_gradient(kernel * keep, bias, x, y)
    from keras_prune import backend

    _, grads = backend.loss_gradients(pruned, LOSS)(x, y)
    by_path = dict(zip([v.path for v in pruned.trainable_variables], grads))
    np.testing.assert_allclose(by_path[wrapper.mask_scores[0].path],
                               g * kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_path[wrapper.layer.kernel.path], g * keep,
                               rtol=1e-4, atol=1e-6)


def test_sgd_step_accumulates_movement_and_keeps_pruned_weights():
    """One SGD step: the score is -lr * dL/dW' * w (the paper's S after one
    step); the pruned weights keep their values until the fit ends, which
    bakes them to 0."""
    model = softmax_regression()
    kernel, bias = model.get_weights()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0, frequency=100),
        criterion="movement")
    (wrapper,) = pruned_layers(pruned)
    lr = 0.1
    pruned.compile(keras.optimizers.SGD(lr), LOSS)
    x, y = batch()
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen["kernel"] = numpy_(self.model.layers[0].layer.kernel)

    pruned.fit(x, y, batch_size=len(x), epochs=1, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep(), Spy()])
    keep = numpy_(wrapper.masks[0])
    # Scores all 0 at step 0: ties, the lower flat indices pruned first.
    assert keep.sum() == 16
    assert not keep.reshape(-1)[:16].any()
    g = numpy_gradient(kernel * keep, bias, x, y)
    np.testing.assert_allclose(numpy_(wrapper.mask_scores[0]),
                               -lr * g * kernel, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(seen["kernel"], kernel - lr * g * keep,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(seen["kernel"][~keep], kernel[~keep])
    after = numpy_(wrapper.layer.kernel)
    np.testing.assert_array_equal(after[~keep], 0)
    np.testing.assert_array_equal(after[keep], seen["kernel"][keep])


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_movement_masks_are_the_top_v_scores(scope):
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.ConstantSparsity(0.7, 0), criterion="movement",
        scope=scope)
    wrappers = pruned_layers(pruned)
    rng = np.random.default_rng(5)
    scores = []
    for wrapper in wrappers:
        s = rng.normal(size=wrapper.mask_scores[0].shape).astype("float32")
        wrapper.mask_scores[0].assign(s)
        scores.append(s)
    weights = [numpy_(w.layer.kernel) for w in wrappers]
    assert keras_prune.update_masks(pruned, 0) == [w.name for w in wrappers]
    masks = [numpy_(w.masks[0]) for w in wrappers]
    if scope == "layer":
        for s, keep in zip(scores, masks):
            cut = np.sort(s, axis=None)[num_pruned(s.size, 0.7) - 1]
            np.testing.assert_array_equal(keep, s > cut)
    else:
        flat = np.concatenate([s.reshape(-1) for s in scores])
        cut = np.sort(flat)[num_pruned(flat.size, 0.7) - 1]
        for s, keep in zip(scores, masks):
            np.testing.assert_array_equal(keep, s > cut)
    # The update leaves the pruned weights as they were.
    for before, wrapper in zip(weights, wrappers):
        np.testing.assert_array_equal(numpy_(wrapper.layer.kernel), before)


def test_save_load_keeps_scores_and_strip_drops_them(tmp_path, digits):
    (x, y), _ = digits
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.PolynomialDecay(0, 0.8, 0, 40, frequency=10),
        criterion="movement")
    pruned.compile("adam", LOSS)
    pruned.fit(x[:512], y[:512], batch_size=32, epochs=3, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    path = tmp_path / "movement.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(pruned_layers(pruned), pruned_layers(loaded)):
        assert isinstance(b, keras_prune.PruneWithScores)
        assert b.spec.criterion.name == "movement"
        np.testing.assert_array_equal(numpy_(a.mask_scores[0]),
                                      numpy_(b.mask_scores[0]))
        np.testing.assert_array_equal(numpy_(a.masks[0]),
                                      numpy_(b.masks[0]))
    np.testing.assert_array_equal(numpy_(loaded(x[:64])),
                                  numpy_(pruned(x[:64])))
    report = keras_prune.SparsityReport.from_model(pruned)
    assert report.prunable_zeros == sum(
        num_pruned(n, 0.8) for n in (64 * 32, 32 * 10))
    stripped = keras_prune.strip_pruning(pruned)
    assert [v.path for v in stripped.weights] == [
        "d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]
    np.testing.assert_array_equal(numpy_(stripped(x[:64])),
                                  numpy_(pruned(x[:64])))


class _SaveAt(keras.callbacks.Callback):
    """Saves the model (optimizer included) at the end of one epoch, as a
    `ModelCheckpoint` does mid-fit."""

    def __init__(self, epoch, path):
        super().__init__()
        self.epoch, self.path = epoch, path

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.save(self.path)


@pytest.mark.parametrize("criterion", ["movement", "soft_movement"])
def test_keras_round_trip_mid_training_continues_identically(
        criterion, digits, tmp_path):
    """A run checkpointed inside fit and resumed from the `.keras` file
    ends with the same scores, masks and weights as the run that never
    stopped: the scores, their optimizer moments, the masks, the pruned
    weights' values (not baked mid-fit), the step and the ramp travel."""
    (x, y), _ = digits
    x, y = x[:512], y[:512]
    criterion = (soft(0.45, 50.0) if criterion == "soft_movement"
                 else criterion)
    path = tmp_path / "mid.keras"

    def fresh():
        pruned = keras_prune.prune_low_magnitude(
            mlp(), keras_prune.PolynomialDecay(0, 0.8, 0, 48, frequency=8),
            criterion=criterion)
        pruned.compile(keras.optimizers.Adam(0.01), LOSS)
        return pruned

    whole = fresh()
    whole.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0,
              callbacks=[keras_prune.UpdatePruningStep(), _SaveAt(1, path)])
    resumed = keras.saving.load_model(path)
    assert int(resumed.optimizer.iterations) == 32
    resumed.fit(x, y, batch_size=32, epochs=4, initial_epoch=2,
                shuffle=False, verbose=0,
                callbacks=[keras_prune.UpdatePruningStep()])
    for a, b in zip(pruned_layers(whole), pruned_layers(resumed)):
        np.testing.assert_array_equal(numpy_(b.masks[0]), numpy_(a.masks[0]))
        np.testing.assert_allclose(numpy_(b.mask_scores[0]),
                                   numpy_(a.mask_scores[0]),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(numpy_(b.layer.kernel),
                                   numpy_(a.layer.kernel),
                                   rtol=1e-5, atol=1e-7)
    assert all(numpy_(w.masks[0]).mean() < 1 for w in pruned_layers(whole))


def test_movement_refused_where_no_scores_are_learned(digits):
    (x, y), _ = digits
    model = mlp()
    with pytest.raises(ValueError, match=(
            r"^criterion 'movement' learns its scores: wrap with "
            r"PruneWithScores \(prune_low_magnitude does\)\.$")):
        keras_prune.PruneLowMagnitude(keras.layers.Dense(3),
                                      criterion="movement")
    with pytest.raises(ValueError, match=(
            r"^PruneWithScores learns the scores of a criterion that learns "
            r"them \(e\.g\. 'movement', 'supermask'\), got 'magnitude'; use "
            r"PruneLowMagnitude for the others\.$")):
        keras_prune.PruneWithScores(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"needs training_state"):
        keras_prune.prune_now(model, 0.5, criterion="movement")


# ---- supermask ---------------------------------------------------------------


def test_supermask_trains_only_the_mask(digits, tmp_path):
    (x, y), (x_test, y_test) = digits
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu", name="d1"),
        keras.layers.Dense(256, activation="relu", name="d2"),
        keras.layers.Dense(10, name="d3"),
    ])
    before = model.get_weights()
    masked = keras_prune.supermask(model, 0.5)
    wrappers = pruned_layers(masked)
    assert [v.path for v in masked.trainable_variables] == [
        w.mask_scores[0].path for w in wrappers]
    # Signed constants: sign(w) * sqrt(2 / fan_in).
    for wrapper, kernel in zip(wrappers, before[::2]):
        np.testing.assert_allclose(
            numpy_(wrapper.layer.kernel),
            np.sign(kernel) * np.sqrt(2 / kernel.shape[0]), rtol=1e-6)
    frozen = [numpy_(v).copy() for v in masked.weights
              if "score" not in v.path and "mask" not in v.path
              and "threshold" not in v.path and "pruning_step" not in v.path]
    masked.compile(keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    chance = masked.evaluate(x_test, y_test, verbose=0)[1]
    masked.fit(x, y, batch_size=64, epochs=8, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    accuracy = masked.evaluate(x_test, y_test, verbose=0)[1]
    assert chance < 0.3 and accuracy > 0.85, (chance, accuracy)
    for wrapper in wrappers:
        keep = numpy_(wrapper.masks[0])
        assert keep.size - keep.sum() == num_pruned(keep.size, 0.5)
    # The weights never moved (the end of the fit zeroed the pruned ones).
    after = [numpy_(v) for v in masked.weights
             if "score" not in v.path and "mask" not in v.path
             and "threshold" not in v.path and "pruning_step" not in v.path]
    for a, b in zip(frozen, after):
        np.testing.assert_array_equal(b[b != 0], a[b != 0])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "supermask.keras"
    masked.save(path)
    loaded = keras.saving.load_model(path)
    assert [v.path for v in loaded.trainable_variables] == [
        w.mask_scores[0].path for w in wrappers]
    stripped = keras_prune.strip_pruning(masked)
    np.testing.assert_array_equal(numpy_(stripped(x_test)),
                                  numpy_(masked(x_test)))


def test_supermask_first_masks_are_the_same_on_every_backend():
    """The scores are drawn by NumPy from the seed and the weight's path
    (uniform in +-1/sqrt(fan_in)), so the masks before any training are
    this NumPy reference's on every backend."""
    masked = keras_prune.supermask(mlp(), 0.5, seed=7)
    keras_prune.update_masks(masked, 0)
    for wrapper in pruned_layers(masked):
        kernel = wrapper.prunable_weights[0]
        fan_in = kernel.shape[0]
        scores = np.random.default_rng(
            [7, zlib.crc32(kernel.path.encode())]).uniform(
                -1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), kernel.shape)
        np.testing.assert_allclose(numpy_(wrapper.mask_scores[0]), scores,
                                   rtol=1e-6)
        flat = np.abs(scores.astype(np.float32)).ravel()
        keep = np.zeros(flat.size, bool)
        keep[np.argsort(-flat, kind="stable")[:flat.size // 2]] = True
        np.testing.assert_array_equal(numpy_(wrapper.masks[0]),
                                      keep.reshape(kernel.shape))


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 1.0},
     "supermask: sparsity must be a fraction in [0, 1), got 1.0; e.g. 0.5, "
     "the paper's best."),
    ({"weights": "zeros"},
     "supermask: weights must be one of ['signed_constant', 'random'], got "
     "'zeros'."),
    ({"frequency": 0},
     "supermask: frequency must be an integer >= 1, got 0; 1 re-chooses the "
     "masks at every step."),
])
def test_supermask_bad_input(kwargs, message):
    model = mlp()
    before = model.get_weights()
    with pytest.raises(ValueError) as error:
        keras_prune.supermask(model, **kwargs)
    assert str(error.value) == message
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- soft movement -----------------------------------------------------------


def soft(threshold=0.1, l1=0.0):
    return keras_prune.criteria.get(
        {"name": "soft_movement", "config": {"threshold": threshold, "l1": l1}})


def sigmoid(s):
    return 1 / (1 + np.exp(-s.astype(np.float64)))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_soft_movement_masks_are_sigmoid_above_the_ramped_threshold(scope):
    schedule = keras_prune.PolynomialDecay(0, 0.5, 0, 100, frequency=10)
    pruned = keras_prune.prune_low_magnitude(
        mlp(), schedule, criterion=soft(0.1), scope=scope)
    d1, d2 = pruned_layers(pruned)
    assert float(numpy_(d1.ramp)) == 0.0
    rng = np.random.default_rng(6)
    s1 = rng.normal(scale=3, size=(64, 32)).astype("float32")
    # d2: one score above the rest, all tied below the threshold; the
    # floor keeps int(0.005 * 320) + 1 = 2: the largest and, of the tied,
    # the lowest flat index.
    s2 = np.full((32, 10), -10.0, dtype="float32")
    s2[3, 4] = -5.0
    d1.mask_scores[0].assign(s1)
    d2.mask_scores[0].assign(s2)
    kernel = numpy_(d1.layer.kernel)
    for step in (0, 10, 50, 100):
        keras_prune.update_masks(pruned, step)
        ramp = schedule.sparsity_at(step) / 0.5
        tau = 0.1 * ramp
        for wrapper in (d1, d2):
            assert float(numpy_(wrapper.ramp)) == np.float32(ramp)
            assert float(numpy_(wrapper.thresholds[0])) == np.float32(tau)
        np.testing.assert_array_equal(numpy_(d1.masks[0]), sigmoid(s1) > tau)
        expected = np.zeros((32, 10), dtype=bool)
        expected[3, 4] = expected[0, 0] = True
        if step == 0:  # tau = 0: everything kept
            expected[:] = True
        np.testing.assert_array_equal(numpy_(d2.masks[0]), expected)
    assert 0 < 1 - numpy_(d1.masks[0]).mean() < 0.5
    # No global ranking to report, whatever the scope.
    assert keras_prune.SparsityReport.from_model(pruned).global_allocation == {}
    # The update leaves the pruned weights as they were.
    np.testing.assert_array_equal(numpy_(d1.layer.kernel), kernel)


@pytest.mark.parametrize("l1", [0.0, 3.0])
def test_soft_movement_penalty_is_added_to_the_training_loss(l1, digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.PolynomialDecay(0, 0.5, 0, 100, frequency=10),
        criterion=soft(0.1, l1))
    wrappers = pruned_layers(pruned)
    rng = np.random.default_rng(7)
    scores = []
    for wrapper in wrappers:
        s = rng.normal(size=wrapper.mask_scores[0].shape).astype("float32")
        wrapper.mask_scores[0].assign(s)
        scores.append(s)
    keras_prune.update_masks(pruned, 50)  # ramp 0.875
    pruned.compile(keras.optimizers.SGD(0.0), LOSS)
    task = pruned.evaluate(x, y, batch_size=64, verbose=0)
    total = pruned.train_on_batch(x, y)
    penalty = l1 * 0.875 * np.mean([sigmoid(s).mean() for s in scores])
    np.testing.assert_allclose(total - task, penalty, rtol=2e-5, atol=2e-6)


def test_soft_movement_l1_sets_the_sparsity(digits, tmp_path):
    (x, y), (x_test, y_test) = digits
    found = {}
    for l1 in (0.0, 10.0):
        pruned = keras_prune.prune_low_magnitude(
            mlp(), keras_prune.PolynomialDecay(0, 0.5, 0, 170, frequency=10),
            criterion=soft(0.1, l1))
        pruned.compile(keras.optimizers.Adam(0.03), LOSS,
                       metrics=["accuracy"])
        pruned.fit(x, y, batch_size=32, epochs=4, verbose=0,
                   callbacks=[keras_prune.UpdatePruningStep()])
        wrappers = pruned_layers(pruned)
        masks = [numpy_(w.masks[0]) for w in wrappers]
        found[l1] = (
            [1 - keep.mean() for keep in masks],
            [numpy_(w.mask_scores[0]).mean() for w in wrappers],
            pruned.evaluate(x_test, y_test, verbose=0)[1],
        )
        # The report shows the masks' sparsity (the schedule's 0.5 is no
        # target); the end of the fit baked them.
        report = keras_prune.SparsityReport.from_model(pruned)
        assert report.prunable_zeros == sum(
            int((~keep).sum()) for keep in masks)
        assert all(e.target is None for e in report.weights
                   if e.mask_sparsity is not None)
    (free, free_scores, _), (sparse, scores, accuracy) = found[0.0], found[10.0]
    assert max(free) < 0.05 and min(sparse) > 0.4, found
    assert max(scores) < min(free_scores) - 1, found
    assert accuracy > 0.85, found
    path = tmp_path / "soft.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(pruned_layers(pruned), pruned_layers(loaded)):
        assert b.spec.criterion == soft(0.1, 10.0)
        assert float(numpy_(b.ramp)) == float(numpy_(a.ramp)) == 1.0
        np.testing.assert_array_equal(numpy_(a.mask_scores[0]),
                                      numpy_(b.mask_scores[0]))
        np.testing.assert_array_equal(numpy_(a.masks[0]), numpy_(b.masks[0]))
    np.testing.assert_array_equal(numpy_(loaded(x_test)),
                                  numpy_(pruned(x_test)))


def test_soft_movement_scale_lets_slow_scores_reach_the_threshold(digits):
    """With Adam(1e-3) for 112 steps a score moves at most 0.11: sigmoid
    stays near 0.5, above tau = 0.1, and nothing is pruned. `scale=100`
    moves S = 100 * s a hundred times faster (the paper's scores train at
    1e-2), and the penalty prunes; the masks are sigmoid(100 * s) > tau."""
    (x, y), _ = digits
    pruned_fraction = {}
    for scale in (1.0, 100.0):
        criterion = keras_prune.criteria.get({"name": "soft_movement",
                                              "config": {"l1": 10.0,
                                                         "scale": scale}})
        pruned = keras_prune.prune_low_magnitude(
            mlp(), keras_prune.PolynomialDecay(0, 0.5, 0, 110, frequency=10),
            criterion=criterion)
        pruned.compile(keras.optimizers.Adam(1e-3), LOSS)
        pruned.fit(x[:1792], y[:1792], batch_size=32, epochs=2, verbose=0,
                   callbacks=[keras_prune.UpdatePruningStep()])
        wrappers = pruned_layers(pruned)
        scores = numpy_(wrappers[0].mask_scores[0])
        ((keep, tau),) = criterion.masks([scores], 1.0)
        assert tau == 0.1
        np.testing.assert_array_equal(keep, sigmoid(scale * scores) > 0.1)
        pruned_fraction[scale] = sum(
            (1 - numpy_(w.masks[0])).sum() for w in wrappers)
    assert pruned_fraction[1.0] == 0
    assert pruned_fraction[100.0] > 0


class NoEnd(keras_prune.PruningSchedule):
    def __call__(self, step):
        return keras.ops.convert_to_tensor(True), keras.ops.convert_to_tensor(
            0.5, dtype="float32")

    def get_config(self):
        return {}


@pytest.mark.parametrize("config, schedule, kwargs, message", [
    ({"threshold": 1.0}, None, {},
     "soft_movement: threshold must be a fraction in (0, 1), got 1.0; the "
     "paper's soft runs use 0.1."),
    ({"threshold": 0}, None, {},
     "soft_movement: threshold must be a fraction in (0, 1), got 0; the "
     "paper's soft runs use 0.1."),
    ({"l1": -1.0}, None, {},
     "soft_movement: l1 must be a number >= 0, got -1.0; it sets the "
     "sparsity reached (0: no penalty)."),
    ({"scale": 0}, None, {},
     "soft_movement: scale must be a number > 0, got 0; it is the scores' "
     "speed relative to the weights' (e.g. 100 with Adam(1e-4): the paper's "
     "1e-2 for the scores)."),
    ({}, NoEnd(), {},
     "criterion 'soft_movement' ramps its threshold by the schedule's "
     "sparsity over its final sparsity, which NoEnd() does not give "
     "(end_sparsity() is None); use PolynomialDecay (power=3: the paper's "
     "cubic ramp) or ConstantSparsity, with a final sparsity above 0."),
    ({}, keras_prune.ConstantSparsity(0.0, 0), {},
     "criterion 'soft_movement' ramps its threshold by the schedule's "
     "sparsity over its final sparsity, which ConstantSparsity("
     "target_sparsity=0.0, begin_step=0, end_step=-1, frequency=100) does "
     "not give (end_sparsity() is 0.0); use PolynomialDecay (power=3: the "
     "paper's cubic ramp) or ConstantSparsity, with a final sparsity above "
     "0."),
    ({}, None, {"block_size": (2, 2)},
     "criterion 'soft_movement' thresholds each weight's score, so it takes "
     "no block_size ((2, 2)) or sparsity_m_by_n (None); use 'movement' for "
     "those patterns."),
])
def test_soft_movement_bad_input(config, schedule, kwargs, message):
    model = mlp()
    with pytest.raises(ValueError) as error:
        keras_prune.prune_low_magnitude(
            model, schedule or keras_prune.ConstantSparsity(0.5, 0),
            criterion={"name": "soft_movement", "config": config}, **kwargs)
    assert str(error.value) == message
