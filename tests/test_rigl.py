"""RigL and its sparse start (`sparse_init`), checked against NumPy.

The references are independent of the package: ERK's densities solved in
NumPy from the formula, the masks' random draw from its documented rule,
and every RigL update recomputed from the state just before it (the drop
by a full sort of |w|, the grow by the gradient of a Dense-ReLU-Dense
softmax net written out by hand on the same batch). The same reference on
every backend means the same masks on every backend.
"""

import json
import math

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from keras_prune.methods import rigl as rigl_module


def numpy_(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def mlp(seed=0, sizes=(64, 24, 10)):
    """Dense -> ReLU -> Dense (logits) with NumPy-drawn weights."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((sizes[0],))
    h = keras.layers.Dense(sizes[1], activation="relu", name="d1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(sizes[2], name="d2")(h))
    for name, (n_in, n_out) in (("d1", sizes[:2]), ("d2", sizes[1:])):
        model.get_layer(name).set_weights([
            rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)),
            rng.normal(0, 0.1, n_out)])
    return model


def cnn():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(x))


@pytest.fixture
def flat_digits(digits):
    (x, y), _ = digits
    return x.reshape(len(x), -1).astype("float32"), y


def numpy_erk(shapes, sparsity):
    """ERK densities from the formula: eps * sum(shape) / prod(shape), the
    layers above 1 kept dense, eps solved again for the others."""
    sizes = [math.prod(s) for s in shapes]
    ratio = [sum(s) / math.prod(s) for s in shapes]
    dense = set()
    while True:
        rest = [i for i in range(len(shapes)) if i not in dense]
        eps = (((1 - sparsity) * sum(sizes) - sum(sizes[i] for i in dense))
               / sum(ratio[i] * sizes[i] for i in rest))
        if all(eps * ratio[i] <= 1 for i in rest):
            return [1.0 if i in dense else eps * ratio[i]
                    for i in range(len(shapes))]
        dense.add(max(rest, key=lambda i: ratio[i]))


def mask_counts(model):
    """{layer name: pruned weights} of the masks."""
    return {w.layer.name: int(sum(np.count_nonzero(~numpy_(m))
                                  for m in w.masks))
            for w in pruned_layers(model)}


@pytest.mark.parametrize("sparsity, dense", [(0.9, set()),
                                             (0.5, {"conv", "out"})])
def test_erk_densities_follow_the_formula_and_the_total_is_exact(
        sparsity, dense):
    model = cnn()
    shapes = [(3, 3, 1, 4), (144, 16), (16, 10)]
    expected = numpy_erk(shapes, sparsity)
    np.testing.assert_allclose(
        rigl_module.layer_densities(shapes, sparsity, "erk"), expected,
        rtol=1e-12)
    sparse, report = keras_prune.sparse_init(model, sparsity, "erk")
    counts = mask_counts(sparse)
    sizes = dict(zip(("conv", "hidden", "out"), map(math.prod, shapes)))
    for (name, size), density in zip(sizes.items(), expected):
        assert abs(counts[name] - size * (1 - density)) < 1
        assert (counts[name] == 0) == (name in dense)
    total = sum(sizes.values())
    assert sum(counts.values()) == num_pruned(total, sparsity)
    assert report.prunable_zeros == num_pruned(total, sparsity)


def test_uniform_prunes_each_layer_at_the_sparsity():
    sparse, _ = keras_prune.sparse_init(mlp(), 0.7, "uniform")
    counts = mask_counts(sparse)
    assert abs(counts["d1"] - 0.7 * 64 * 24) < 1
    assert abs(counts["d2"] - 0.7 * 24 * 10) < 1
    assert sum(counts.values()) == num_pruned(64 * 24 + 24 * 10, 0.7)


def test_masks_are_the_seeded_draw_and_the_model_is_unchanged():
    """The documented draw: one NumPy generator of `seed`, per weight in
    model order, the first k of a permutation pruned."""
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    sparse, _ = keras_prune.sparse_init(model, 0.8, "erk", seed=3)
    rng = np.random.default_rng(3)
    counts = rigl_module.pruned_counts([(64, 24), (24, 10)], 0.8, "erk")
    for wrapper, k in zip(pruned_layers(sparse), counts):
        size = math.prod(wrapper.masks[0].shape)
        keep = np.ones(size, bool)
        keep[rng.permutation(size)[:k]] = False
        np.testing.assert_array_equal(numpy_(wrapper.masks[0]),
                                      keep.reshape(wrapper.masks[0].shape))
        kernel = numpy_(wrapper.prunable_weights[0])
        assert np.all(kernel[~keep.reshape(kernel.shape)] == 0)
    assert not pruned_layers(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- the updates, against NumPy ------------------------------------------


class Snapshots(keras.callbacks.Callback):
    """Kernels, biases, masks and Adam moments at each batch begin."""

    def __init__(self):
        super().__init__()
        self.states = []

    def on_train_batch_begin(self, batch, logs=None):
        model = self.model  # syncs JAX's state
        state = {"step": int(numpy_(model.optimizer.iterations))}
        for wrapper in pruned_layers(model):
            kernel = wrapper.prunable_weights[0]
            prefix = kernel.path.replace("/", "_") + "_"
            state[wrapper.layer.name] = {
                "w": numpy_(kernel).copy(),
                "b": numpy_(wrapper.layer.bias).copy(),
                "m": numpy_(wrapper.masks[0]).copy(),
                "slots": [numpy_(s).copy() for s in model.optimizer.variables
                          if s.name.startswith(prefix)],
            }
        self.states.append(state)


def numpy_gradients(state, x, y):
    """dL/dW of both kernels of the Dense-ReLU-Dense net at the masked
    weights, mean softmax cross-entropy from logits, float64."""
    w1 = state["d1"]["w"] * state["d1"]["m"]
    w2 = state["d2"]["w"] * state["d2"]["m"]
    x = x.astype(np.float64)
    z1 = x @ w1 + state["d1"]["b"]
    h = np.maximum(z1, 0)
    z2 = h @ w2 + state["d2"]["b"]
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d2 = (p - np.eye(z2.shape[1])[y]) / len(x)
    d1 = (d2 @ w2.T) * (z1 > 0)
    return {"d1": x.T @ d1, "d2": h.T @ d2}


def expected_drop(weights, keep, fraction):
    """k smallest |w| of the active weights (full sort, lower index first)."""
    active = np.flatnonzero(keep.ravel())
    k = int(math.floor(fraction * active.size))
    order = np.lexsort((active, np.abs(weights.ravel()[active])))
    return active[order[:k]], k


def check_update(pre, post, x, y, fraction):
    """Asserts one update; returns whether a grown weight had nonzero
    optimizer moments before it (one dropped at an earlier update)."""
    gradients = numpy_gradients(pre, x, y)
    reset = False
    for name in ("d1", "d2"):
        before, after = pre[name], post[name]
        keep, new = before["m"], after["m"]
        dropped, k = expected_drop(before["w"] * keep, keep, fraction)
        kept = keep.ravel().copy()
        kept[dropped] = False
        # Kept: the active weights minus the k smallest |w|, exactly.
        assert np.all(new.ravel()[kept])
        assert new.sum() == keep.sum()  # as many grown as dropped
        grown = new.ravel() & ~kept
        assert grown.sum() == k
        # Grown: the k largest |dL/dW| of the weights not kept.
        score = np.abs(gradients[name].ravel())
        candidates = ~kept
        smallest_grown = score[grown].min()
        largest_left = score[candidates & ~grown].max()
        assert smallest_grown >= largest_left - 1e-6 * score.max()
        # New weights start at exactly 0 with zero optimizer moments; the
        # survivors keep their values.
        new_ones = new & ~keep
        assert np.all(after["w"][new_ones] == 0)
        assert np.all(after["w"][keep & ~new] == 0)  # dropped: baked
        assert len(after["slots"]) == 2  # Adam's momentum and velocity
        reset |= any(slot[new_ones].any() for slot in before["slots"])
        for slot in after["slots"]:
            assert np.all(slot[new_ones] == 0)
        survivors = new & keep
        np.testing.assert_array_equal(after["w"][survivors],
                                      before["w"][survivors])
    return reset


def test_rigl_updates_match_numpy_during_fit(flat_digits):
    x, y = flat_digits
    sparse, _ = keras_prune.sparse_init(mlp(), 0.8, "erk", seed=1)
    start = mask_counts(sparse)
    sparse.compile(keras.optimizers.Adam(1e-2),
                   keras.losses.SparseCategoricalCrossentropy(
                       from_logits=True))
    steps = 2 * math.ceil(len(x) / 64)  # 46
    rigl = keras_prune.RigL(data=(x, y), total_steps=steps, delta_t=6,
                            end_fraction=0.5, batch_size=128, seed=7)
    before, after = Snapshots(), Snapshots()
    sparse.fit(x, y, epochs=2, batch_size=64, verbose=0,
               callbacks=[before, rigl, after])
    assert [u["step"] for u in rigl.updates] == [6, 12, 18]  # < 46 // 2
    assert len(before.states) == steps
    resets = []
    for pre, post in zip(before.states, after.states):
        step = pre["step"]
        if step in (6, 12, 18):
            indices = np.sort(np.random.default_rng((7, step)).choice(
                len(x), 128, replace=False))
            fraction = 0.3 / 2 * (1 + math.cos(math.pi * step / 23))
            resets.append(check_update(pre, post, x[indices], y[indices],
                                       fraction))
            assert any(not np.array_equal(pre[n]["m"], post[n]["m"])
                       for n in ("d1", "d2"))
        else:
            for name in ("d1", "d2"):
                np.testing.assert_array_equal(pre[name]["m"],
                                              post[name]["m"])
    # Training between updates never moves a mask.
    for post, pre in zip(after.states, before.states[1:]):
        for name in ("d1", "d2"):
            np.testing.assert_array_equal(post[name]["m"], pre[name]["m"])
    assert mask_counts(sparse) == start
    # Weights dropped at one update and grown again at a later one had
    # moments, which were reset.
    assert any(resets)


def numpy_rigl(model_state, x, y, keep_seed_batches, updates):
    """RigL's masks in NumPy when the weights never train (learning rate
    0): each update drops and grows from the last update's state."""
    state = {n: dict(v) for n, v in model_state.items()}
    for step, indices, fraction in updates:
        gradients = numpy_gradients(state, x[indices], y[indices])
        for name in ("d1", "d2"):
            keep = state[name]["m"]
            dropped, k = expected_drop(state[name]["w"] * keep, keep,
                                       fraction)
            kept = keep.ravel().copy()
            kept[dropped] = False
            candidates = np.flatnonzero(~kept)
            score = np.abs(gradients[name].ravel()[candidates])
            grown = candidates[np.lexsort((candidates, -score))[:k]]
            new = kept.copy()
            new[grown] = True
            new = new.reshape(keep.shape)
            state[name] = {"w": state[name]["w"] * (new & keep),
                           "b": state[name]["b"], "m": new}
    return {n: state[n]["m"] for n in ("d1", "d2")}


def test_same_masks_as_numpy_on_every_backend(flat_digits):
    """Learning rate 0: the weights never train, so every backend's
    updates start from the same state, and the masks are NumPy's."""
    x, y = flat_digits
    model = mlp(seed=4)
    sparse, _ = keras_prune.sparse_init(model, 0.8, "erk", seed=5)
    state = {w.layer.name: {"w": numpy_(w.prunable_weights[0]).copy(),
                            "b": numpy_(w.layer.bias).copy(),
                            "m": numpy_(w.masks[0]).copy()}
             for w in pruned_layers(sparse)}
    sparse.compile(keras.optimizers.SGD(0.0),
                   keras.losses.SparseCategoricalCrossentropy(
                       from_logits=True))
    rigl = keras_prune.RigL(data=(x, y), total_steps=10, delta_t=2,
                            end_fraction=1.0, batch_size=256, seed=2)
    sparse.fit(x[:640], y[:640], epochs=1, batch_size=64, verbose=0,
               callbacks=[rigl])
    updates = [(t, np.sort(np.random.default_rng((2, t)).choice(
        len(x), 256, replace=False)),
        0.15 * (1 + math.cos(math.pi * t / 10))) for t in (2, 4, 6, 8)]
    assert [u["step"] for u in rigl.updates] == [2, 4, 6, 8]
    expected = numpy_rigl(state, x, y, 2, updates)
    for wrapper in pruned_layers(sparse):
        np.testing.assert_array_equal(numpy_(wrapper.masks[0]),
                                      expected[wrapper.layer.name])


def test_strip_save_load_and_report_after_rigl(flat_digits, tmp_path):
    x, y = flat_digits
    sparse, _ = keras_prune.sparse_init(mlp(), 0.9, "uniform")
    start = mask_counts(sparse)
    sparse.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    sparse.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[
        keras_prune.RigL(data=(x, y), total_steps=23, delta_t=5)])
    assert mask_counts(sparse) == start
    total = 64 * 24 + 24 * 10
    report = keras_prune.SparsityReport(sparse)
    assert report.prunable_zeros == sum(start.values())
    assert report.prunable_sparsity == pytest.approx(
        num_pruned(total, 0.9) / total)
    plain = keras_prune.strip_pruning(sparse)
    for name, count in start.items():
        assert np.count_nonzero(
            plain.get_layer(name).get_weights()[0] == 0) == count
    path = str(tmp_path / "rigl.keras")
    sparse.save(path)
    loaded = keras.saving.load_model(path)
    assert mask_counts(loaded) == start
    np.testing.assert_allclose(numpy_(loaded.predict(x[:32], verbose=0)),
                               numpy_(sparse.predict(x[:32], verbose=0)),
                               rtol=1e-6, atol=1e-6)


# ---- bad input -------------------------------------------------------------


@pytest.mark.parametrize("arguments, message", [
    ({"data": None},
     "RigL: data is missing: pass data=(x, y), the arrays the grow "
     "gradients are computed on (e.g. the training set)."),
    ({"data": [1, 2]},
     "RigL: data must be a tuple (x, y) of arrays, got list; pass "
     "data=(x_train, y_train)."),
    ({"data": (np.zeros((4, 64)), np.zeros(3))},
     "RigL: data=(x, y) must hold the same number (> 0) of samples; got 4 "
     "inputs and 3 targets."),
    ({"total_steps": 0},
     "RigL: total_steps must be an integer >= 1, got 0; pass the "
     "training's optimizer steps (epochs x steps per epoch)."),
    ({"delta_t": 0},
     "RigL: delta_t must be an integer >= 1, got 0; the paper updates every"
     " 100 steps."),
    ({"alpha": 1.0},
     "RigL: alpha must be a fraction in (0, 1), got 1.0; the paper uses "
     "0.3."),
    ({"alpha": 0},
     "RigL: alpha must be a fraction in (0, 1), got 0; the paper uses 0.3."),
    ({"end_fraction": 0.0},
     "RigL: end_fraction must be in (0, 1], got 0.0; the paper stops "
     "updating at 0.75."),
    ({"end_fraction": 1.5},
     "RigL: end_fraction must be in (0, 1], got 1.5; the paper stops "
     "updating at 0.75."),
    ({"batch_size": 0},
     "RigL: batch_size must be a positive integer, got 0."),
    ({"total_steps": 100, "delta_t": 100},
     "RigL: no update would happen: the first is at step delta_t=100 and "
     "updates stop before step 75 (end_fraction x total_steps); lower "
     "delta_t or raise end_fraction."),
])
def test_bad_rigl_arguments_are_one_clear_error(arguments, message):
    given = {"data": (np.zeros((4, 64)), np.zeros(4)), "total_steps": 1000,
             **arguments}
    with pytest.raises(ValueError) as error:
        keras_prune.RigL(**given)
    assert str(error.value) == message


@pytest.mark.parametrize("call, message", [
    (lambda m: keras_prune.sparse_init(m, 1.0),
     "sparse_init: sparsity must be a fraction in [0, 1), got 1.0; e.g. 0.9 "
     "keeps 10 % of the weights."),
    (lambda m: keras_prune.sparse_init(m, -0.1),
     "sparse_init: sparsity must be a fraction in [0, 1), got -0.1; e.g. 0.9"
     " keeps 10 % of the weights."),
    (lambda m: keras_prune.sparse_init(m, 0.9, "er"),
     "sparse_init: distribution must be one of ['erk', 'uniform'], got "
     "'er'."),
    (lambda m: keras_prune.sparse_init(m, 0.9, exclude=["d1", "d2"]),
     "sparse_init: model {name!r} has no layer with prunable weights left to"
     " prune (Dense, Conv, Embedding, ...); check exclude=, or pass the "
     "model whose layers should be sparse."),
])
def test_bad_sparse_init_input_is_one_clear_error(call, message):
    model = mlp()
    with pytest.raises(ValueError) as error:
        call(model)
    assert str(error.value) == message.format(name=model.name)


def fit_with(model, rigl, x, y, *more):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0,
              callbacks=[*more, rigl])


def test_rigl_refuses_models_it_cannot_drive_before_training(flat_digits):
    x, y = flat_digits
    rigl = keras_prune.RigL(data=(x, y), total_steps=100, delta_t=10)
    plain = mlp()
    before = [w.copy() for w in plain.get_weights()]
    with pytest.raises(ValueError) as error:
        fit_with(plain, rigl, x, y)
    assert str(error.value) == (
        f"RigL: model {plain.name!r} has no pruned layers; start from "
        "keras_prune.sparse_init(model, sparsity).")
    for a, b in zip(before, plain.get_weights()):
        np.testing.assert_array_equal(a, b)  # no step was taken

    gradual = keras_prune.prune_low_magnitude(
        mlp(), keras_prune.PolynomialDecay(0.0, 0.8, 0, 10))
    with pytest.raises(ValueError) as error:
        fit_with(gradual, rigl, x, y, keras_prune.UpdatePruningStep())
    assert str(error.value) == (
        "RigL: the masks of 'prune_low_magnitude_d1' follow a "
        "PolynomialDecay schedule, which moves them too; start from "
        "keras_prune.sparse_init(model, sparsity) (fixed masks).")

    sparse, _ = keras_prune.sparse_init(mlp(), 0.5)
    wrong = keras_prune.RigL(data=(x[:, :32], y), total_steps=100,
                             delta_t=10)
    with pytest.raises(ValueError) as error:
        fit_with(sparse, wrong, x, y)
    assert str(error.value) == (
        f"RigL: data's inputs have shape (32,) per sample, model "
        f"{sparse.name!r} expects (64,); pass its training inputs.")


# ---- the benchmark's --quick mode -----------------------------------------



def test_benchmark_quick(bench, tmp_path):
    """benchmarks/rigl.py --quick on the backend under test: every method
    ran at every sparsity on both models, RigL kept its counts, the tables
    and the cost line are there."""
    backend = keras.backend.backend()
    record = tmp_path / "record.json"
    document = bench("rigl").main(
        ["--quick", "--backends", backend, "--json", str(record)])
    data = json.loads(record.read_text())
    (run,) = data["runs"][0]["runs"]
    assert {(r["model"], r["method"], r["sparsity"])
            for r in run["results"]} == {
        (m, k, s) for m in ("lenet", "cnn")
        for k in ("rigl", "static", "gradual") for s in (0.9, 0.95)}
    for r in run["results"]:
        assert r["sparsity_reached"] == pytest.approx(r["sparsity"],
                                                      abs=1e-3)
        assert (r["updates"] > 0) == (r["method"] == "rigl")
    assert "| lenet | 90 % |" in document
    assert "RigL update" in document
    assert not (tmp_path / "results").exists()  # --quick
