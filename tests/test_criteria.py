"""Criteria as plug-ins: one registry for gradual and one-shot pruning.

A criterion written here, as a user would (|w| times seeded noise),
registers itself and works with `prune_low_magnitude` + `UpdatePruningStep`,
`update_masks` and `prune_now` without any library file edited; the masks
are exactly the selection of its scores.
"""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import criteria
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import magnitude_mask
from keras_prune.core.patterns import num_pruned
from keras_prune.training import tf_fast_path
from tests.conftest import numpy

L = keras.layers


@criteria.register("abs_times_noise", replace=True)
class AbsTimesNoise(criteria.Criterion):
    """|w| times uniform noise in [0.5, 1.5), the same at every update."""

    description = "|w| times seeded noise (a test fixture)"

    def __init__(self, spread=1.0):
        self.spread = spread

    def score(self, layer, variable, weights, context):
        noise = context.rng(variable.path).random(weights.shape)
        return np.abs(weights) * (1.0 - self.spread / 2 + self.spread * noise)

    def get_config(self):
        return {"spread": self.spread}


def _expected_scores(variable, weights, seed=0, spread=1.0):
    noise = criteria.ScoringContext(seed=seed).rng(variable.path).random(
        weights.shape)
    return np.abs(weights) * (1.0 - spread / 2 + spread * noise)


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16,)),
        L.Dense(24, activation="relu", name="a"),
        L.Dense(4, name="b"),
    ])


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    y = rng.integers(0, 4, size=n).astype("int32")
    return x, y


def _check_masks_select(wrapper, original, scores_of, sparsity):
    """The masks prune `round(n * s)` weights, the lowest scores of the
    weights as they were before pruning (`original`)."""
    for variable, mask, weights in zip(wrapper.prunable_weights,
                                       wrapper.masks, original):
        keep = numpy(mask)
        assert int((~keep).sum()) == num_pruned(keep.size, sparsity)
        want, _ = magnitude_mask(scores_of(variable, weights), sparsity)
        np.testing.assert_array_equal(keep, want)


def test_registered_criterion_drives_gradual_pruning(tmp_path):
    model = mlp()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.75, 0, frequency=1),
        criterion="abs_times_noise",
    )
    assert all(w.criterion == AbsTimesNoise() for w in pruned_layers(pruned))
    # Not magnitude: the fast paths (which check |w| order) stay out.
    assert not any(tf_fast_path.eligible(w) for w in pruned_layers(pruned))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = data()
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
               callbacks=[keras_prune.UpdatePruningStep()])
    # The last update (step 3) chose from the weights it saw; the bake then
    # zeroed the pruned ones. Recompute the choice from the kept weights:
    # it is stable iff the kept scores all beat the pruned ones, which the
    # step-3 update made true and one more step of Adam rarely breaks, so
    # check the count and that the kept weights are non-zero.
    for wrapper in pruned_layers(pruned):
        for variable, mask in zip(wrapper.prunable_weights, wrapper.masks):
            keep = numpy(mask)
            assert int((~keep).sum()) == num_pruned(keep.size, 0.75)
            assert (numpy(variable)[~keep] == 0).all()
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert [w.criterion for w in pruned_layers(loaded)] == [
        AbsTimesNoise(), AbsTimesNoise()]


def test_registered_criterion_in_the_custom_loop_api():
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.ConstantSparsity(0.6, 0, frequency=1),
        criterion=AbsTimesNoise(spread=0.5),
    )
    wrappers = pruned_layers(pruned)
    original = [[numpy(v) for v in w.prunable_weights] for w in wrappers]
    keras_prune.update_masks(pruned, 0, seed=3)
    for wrapper, weights in zip(wrappers, original):
        _check_masks_select(
            wrapper, weights,
            lambda v, w: _expected_scores(v, w, seed=3, spread=0.5), 0.6)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_registered_criterion_in_prune_now(scope):
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    pruned, report = keras_prune.prune_now(
        model, 0.5, scope=scope, criterion="abs_times_noise", seed=7)
    wrappers = pruned_layers(pruned)
    kernels = [before[0], before[2]]  # the kernels before pruning
    if scope == "layer":
        for wrapper, kernel in zip(wrappers, kernels):
            _check_masks_select(
                wrapper, [kernel],
                lambda v, w: _expected_scores(v, w, seed=7), 0.5)
    else:
        # One ranking over both kernels: exactly half of all, by score.
        scores = np.concatenate([
            _expected_scores(w.prunable_weights[0], k, seed=7).ravel()
            for w, k in zip(wrappers, kernels)])
        keep, _ = magnitude_mask(scores, 0.5)
        got = np.concatenate([numpy(w.masks[0]).ravel() for w in wrappers])
        np.testing.assert_array_equal(got, keep)
        assert int((~got).sum()) == num_pruned(scores.size, 0.5)
    assert report.prunable_sparsity == pytest.approx(0.5, abs=0.01)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_random_criterion_is_seeded_and_nested_across_updates():
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.PolynomialDecay(0.5, 0.8, 0, 2, frequency=1),
        criterion="random",
    )
    keras_prune.update_masks(pruned, 0, seed=1)
    first = [numpy(w.masks[0]) for w in pruned_layers(pruned)]
    keras_prune.update_masks(pruned, 2, seed=1)
    last = [numpy(w.masks[0]) for w in pruned_layers(pruned)]
    for a, b in zip(first, last):
        # The same random order at every update: what went stays gone.
        assert not (b & ~a).any()
        assert int((~b).sum()) == num_pruned(b.size, 0.8)
    again, _ = keras_prune.prune_now(mlp(), 0.8, scope="layer",
                                     criterion="random", seed=1)
    for a, b in zip(last, [numpy(w.masks[0]) for w in pruned_layers(again)]):
        np.testing.assert_array_equal(a, b)


def test_taylor_scores_are_weight_times_gradient():
    # A linear model with MSE: dL/dW = 2 X^T (XW - Y) / (N * out).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)),
                              L.Dense(5, use_bias=False, name="lin")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = rng.normal(size=(40, 5)).astype("float32")
    w = numpy(model.get_layer("lin").kernel).astype(np.float64)
    gradient = 2 * x.T.astype(np.float64) @ (x @ w - y) / (40 * 5)
    pruned, _ = keras_prune.prune_now(
        model, 0.4, scope="layer", criterion="taylor", data=(x, y),
        loss="mse", batch_size=16)
    want, _ = magnitude_mask(np.abs(w * gradient), 0.4)
    np.testing.assert_array_equal(numpy(pruned_layers(pruned)[0].masks[0]),
                                  want)


def test_taylor_in_gradual_pruning_gets_data_from_the_callback():
    pruned = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.ConstantSparsity(0.5, 0, frequency=2),
        criterion="taylor")
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = data()
    with pytest.raises(ValueError, match=(
            "criterion 'taylor' of layer 'a' scores with gradients of the "
            r"loss: pass data=\(x, y\)")):
        pruned.fit(x, y, epochs=1, verbose=0,
                   callbacks=[keras_prune.UpdatePruningStep()])
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep(data=(x[:32], y[:32]))])
    for wrapper in pruned_layers(pruned):
        keep = numpy(wrapper.masks[0])
        assert int((~keep).sum()) == num_pruned(keep.size, 0.5)


def test_bad_criteria_are_refused_before_any_work():
    model = mlp()
    with pytest.raises(ValueError, match=(
            r"criterion must be one of \[.*'magnitude'.*\] .* got "
            r"'magnitud'")) as error:
        keras_prune.prune_low_magnitude(model, criterion="magnitud")
    assert "'random'" in str(error.value) and "'taylor'" in str(error.value)
    with pytest.raises(ValueError, match="needs a loss"):
        keras_prune.prune_now(model, 0.5, criterion="taylor",
                              data=data())
    with pytest.raises(ValueError, match="criterion must have data"):
        keras_prune.prune_now(model, 0.5, criterion="taylor")

    class Unregistered(criteria.Criterion):
        def score(self, layer, variable, weights, context):
            return np.abs(weights)

    with pytest.raises(ValueError, match="is not registered, so a model"):
        keras_prune.prune_low_magnitude(model, criterion=Unregistered())
    # One-shot masks are never recomputed: any criterion or function works.
    pruned, _ = keras_prune.prune_now(model, 0.5, criterion=Unregistered())
    assert pruned_layers(pruned)[0].criterion is None

    @criteria.register("needs_activations", replace=True)
    class NeedsActivations(criteria.Criterion):
        needs = criteria.ACTIVATIONS

    # prune_now collects activations, from calibration data (test_wanda).
    with pytest.raises(ValueError, match=(
            "criterion 'needs_activations' scores with statistics of the "
            "layers' inputs: pass calibration_data=")):
        keras_prune.prune_now(model, 0.5, criterion="needs_activations")
    with pytest.raises(ValueError, match="already"):
        criteria.register("magnitude")(Unregistered)
    with pytest.raises(ValueError, match="must be an identifier"):
        criteria.register("has space")


def test_registry_lists_and_rebuilds_criteria():
    assert {"magnitude", "random", "taylor"} <= set(criteria.available())
    assert criteria.get("magnitude").needs == criteria.WEIGHTS
    assert criteria.get("taylor").needs == criteria.GRADIENTS
    noise = criteria.get({"name": "abs_times_noise",
                          "config": {"spread": 0.25}})
    assert noise == AbsTimesNoise(spread=0.25)
    assert criteria.get(noise) is noise


def test_running_a_plugin_twice_replaces_its_criteria():
    # A plugin file run again (a second command in one process) defines its
    # criterion again: that replaces it; another class under the name does
    # not (test_bad_criteria_are_refused_before_any_work).
    code = (
        "from keras_prune import criteria\n"
        "@criteria.register('twice')\n"
        "def twice(layer, variable, weights):\n"
        "    return abs(weights)\n"
    )
    for _ in range(2):
        exec(compile(code, "plugin.py", "exec"), {"__name__": "plugin"})
    assert "twice" in criteria.available()
