"""Block, N:M, global scope, per-layer control and one-shot pruning,
trained on real data (sklearn digits) on every backend."""

import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core import patterns
from keras_prune.core.patterns import num_pruned
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy

L = keras.layers


def mlp():
    inputs = keras.Input((64,))
    x = L.Dense(48, activation="relu", name="d1")(inputs)
    x = L.Dense(32, activation="relu", name="d2")(x)
    outputs = L.Dense(10, name="out")(x)
    return keras.Model(inputs, outputs)


def cnn():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = L.Conv2D(16, 3, activation="relu", name="c2")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10, name="out")(x)
    return keras.Model(inputs, outputs)


def train(model, digits, epochs=3, callbacks=None, images=False):
    (x, y), _ = digits
    x = x.reshape(-1, 8, 8, 1) if images else x.reshape(len(x), -1)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    if callbacks is None:
        callbacks = [keras_prune.UpdatePruningStep()]
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0,
              callbacks=callbacks)
    return x


def effective(wrapper):
    """The weights the forward pass uses: w * mask."""
    return [
        numpy(v) * numpy(m) for v, m in zip(wrapper.prunable_weights,
                                            wrapper.masks)
    ]


def kernels(model):
    return {
        layer.name: numpy(layer.kernel)
        for layer in model.layers
        if hasattr(layer, "kernel")
    }


def schedule(final, end=40):
    # 1437 training digits / batch 64 = 23 steps per epoch.
    return keras_prune.PolynomialDecay(0.0, final, 0, end, frequency=10)


def reload(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    return keras.saving.load_model(path)


def assert_same_outputs(a, b, x):
    np.testing.assert_array_equal(numpy(a(x[:32])), numpy(b(x[:32])))


# ---- block sparsity --------------------------------------------------------


@pytest.mark.parametrize("block,pooling", [((1, 4), "AVG"), ((2, 2), "MAX")])
def test_block_sparsity_after_training(digits, tmp_path, block, pooling):
    pruned = keras_prune.prune_low_magnitude(
        cnn(), schedule(0.75), block_size=block, block_pooling_type=pooling
    )
    x = train(pruned, digits, images=True)
    for wrapper in pruned_layers(pruned):
        for value, mask in zip(effective(wrapper), wrapper.masks):
            view = numpy(mask).reshape(patterns.matrix_view(mask.shape))
            rows, cols = view.shape
            nh, nw = -(-rows // block[0]), -(-cols // block[1])
            padded = np.pad(view, ((0, nh * block[0] - rows),
                                   (0, nw * block[1] - cols)), mode="edge")
            blocks = padded.reshape(nh, block[0], nw, block[1])
            kept = blocks.any(axis=(1, 3))
            # Every block all kept or all pruned; exact count of blocks.
            assert (blocks.all(axis=(1, 3)) == kept).all()
            assert int((~kept).sum()) == num_pruned(kept.size, 0.75)
            assert ((value == 0) >= ~numpy(mask)).all()
    stripped = keras_prune.strip_pruning(pruned)
    loaded = reload(pruned, tmp_path)
    assert_same_outputs(pruned, stripped, x)
    assert_same_outputs(pruned, loaded, x)
    assert loaded.get_layer("prune_low_magnitude_c2").block_size == block


def test_block_partial_edges_are_scored_over_real_weights():
    # 1x4 blocks over 6 columns: the second block of each row covers only
    # columns 4-5; AVG is their mean, not diluted by padding.
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 0.9, 0.9],
                       [0.1, 0.1, 0.1, 0.1, 2.0, 2.0]])
    keep, threshold = patterns.block_mask(scores, 0.5, (1, 4), "AVG")
    assert keep.astype(int).tolist() == [[1, 1, 1, 1, 0, 0],
                                         [0, 0, 0, 0, 1, 1]]
    assert threshold == pytest.approx(0.9)


# ---- N:M ---------------------------------------------------------------------


def test_gradual_n_m_follows_schedule_and_survives(digits, tmp_path):
    pruned = keras_prune.prune_low_magnitude(
        mlp(), schedule(0.5, end=40), sparsity_m_by_n=(2, 4)
    )
    (x, y), _ = digits
    x = x.reshape(len(x), -1)
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Step 20 of a cubic ramp to 50 %: part of the way, not yet 2:4.
    pruned.fit(x[:64 * 21], y[:64 * 21], batch_size=64, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    wrapper = pruned_layers(pruned)[0]
    partial = int((~numpy(wrapper.masks[0])).sum())
    expected = num_pruned(64 * 48, keras_prune.PolynomialDecay(
        0.0, 0.5, 0, 40).sparsity_at(20))
    assert partial == expected < 64 * 48 // 2
    assert not keras_prune.check_n_m(pruned, 2, 4).ok
    pruned.fit(x, y, batch_size=64, epochs=2, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    result = keras_prune.check_n_m(pruned, 2, 4)
    assert result.ok, str(result)
    assert len(result.checked) == 3
    for wrapper in pruned_layers(pruned):
        for mask in wrapper.masks:
            assert int((~numpy(mask)).sum()) == mask.shape[0] * mask.shape[1] // 2
    stripped = keras_prune.strip_pruning(pruned)
    loaded = reload(pruned, tmp_path)
    assert keras_prune.check_n_m(stripped, 2, 4).ok
    assert keras_prune.check_n_m(loaded, 2, 4).ok
    assert loaded.get_layer("prune_low_magnitude_d1").sparsity_m_by_n == (2, 4)
    assert_same_outputs(pruned, loaded, x)
    assert_same_outputs(pruned, stripped, x)


def test_one_shot_n_m_on_conv_along_input_channels(digits):
    # Default schedule with (4, 8): ConstantSparsity(0.5, 0), one shot.
    # c1 has 1 input channel: its partial group keeps it (nothing pruned);
    # c2 has 8: exactly 4 of every 8 along the input channels.
    pruned = keras_prune.prune_low_magnitude(cnn(), sparsity_m_by_n=(4, 8))
    train(pruned, digits, epochs=1, images=True)
    result = keras_prune.check_n_m(pruned, 4, 8)
    assert result.ok, str(result)
    c1, c2, out = pruned_layers(pruned)
    assert numpy(c1.masks[0]).all()
    keep = numpy(c2.masks[0])  # (3, 3, 8, 16)
    assert (keep.sum(axis=2) == 4).all()
    # A model that breaks the pattern is reported group by group.
    plain = cnn()
    broken = keras_prune.check_n_m(plain, 2, 4)
    assert not broken.ok
    assert len(broken.violations) == 3 * 3 * 16 * 2 + 10 * (256 // 4)
    path, group, nonzero = broken.violations[0]
    assert path == "c2/kernel" and nonzero == 4


def test_n_m_mask_partial_group_and_ties():
    scores = np.array([[0.5], [0.1], [0.3], [0.3], [0.2], [0.9]])
    keep, _ = patterns.n_m_mask(scores, (2, 4), axis=0)
    # Group 1: 0.1 and the first 0.3 go (ties: lower index first); partial
    # group [0.2, 0.9] counts as padded with two zeros: kept.
    assert keep.ravel().tolist() == [True, False, False, True, True, True]


# ---- global scope ---------------------------------------------------------------


def test_global_scope_total_is_exact_and_survives(digits, tmp_path):
    model = mlp()
    pruned = keras_prune.prune_low_magnitude(model, schedule(0.9),
                                             scope="global")
    x = train(pruned, digits)
    wrappers = pruned_layers(pruned)
    total = sum(int(np.prod(w.masks[0].shape)) for w in wrappers)
    zeros = [int((~numpy(w.masks[0])).sum()) for w in wrappers]
    assert sum(zeros) == num_pruned(total, 0.9)
    # Allocation follows the weights: not 90 % in every layer.
    assert len({round(z / np.prod(w.masks[0].shape), 3)
                for z, w in zip(zeros, wrappers)}) == 3
    loaded = reload(pruned, tmp_path)
    assert loaded.get_layer("prune_low_magnitude_d2").scope == "global"
    assert_same_outputs(pruned, loaded, x)
    assert_same_outputs(pruned, keras_prune.strip_pruning(pruned), x)


def test_global_weighting_by_size_prunes_large_layers_more():
    model = mlp()
    plain, _ = keras_prune.prune_now(model, 0.8)
    sized, _ = keras_prune.prune_now(model, 0.8, global_weighting="size")

    def sparsity(pruned, name):
        mask = numpy(pruned.get_layer(f"prune_low_magnitude_{name}").masks[0])
        return float((~mask).mean())

    assert sparsity(sized, "d1") > sparsity(plain, "d1")
    assert sparsity(sized, "out") < sparsity(plain, "out")


# ---- per-layer control ----------------------------------------------------------


def test_per_layer_overrides_and_exclude(digits, tmp_path):
    model = mlp()
    before = numpy(model.get_layer("out").kernel)
    pruned = keras_prune.prune_low_magnitude(
        model,
        schedule(0.5),
        per_layer={
            "d1": 0.9,
            lambda layer: layer.name.startswith("d2"): {
                "sparsity_m_by_n": (2, 4)
            },
        },
        exclude=["out"],
    )
    assert [w.layer.name for w in pruned_layers(pruned)] == ["d1", "d2"]
    d1, d2 = pruned_layers(pruned)
    assert d1.pruning_schedule.final_sparsity == 0.9
    assert d2.pruning_schedule.final_sparsity == 0.5
    x = train(pruned, digits)
    assert int((~numpy(d1.masks[0])).sum()) == num_pruned(64 * 48, 0.9)
    assert keras_prune.check_n_m(pruned, 2, 4).ok
    # The excluded head trained normally: dense, and not the original.
    head = numpy(pruned.get_layer("out").kernel)
    assert (head != 0).all() and not np.array_equal(head, before)
    np.testing.assert_array_equal(numpy(model.get_layer("out").kernel), before)
    assert_same_outputs(pruned, reload(pruned, tmp_path), x)


def test_per_layer_sparsity_under_global_scope_leaves_the_ranking():
    pruned, _ = keras_prune.prune_now(mlp(), 0.8, per_layer={"out": 0.3})
    out = pruned.get_layer("prune_low_magnitude_out")
    assert out.scope == "layer"
    assert int((~numpy(out.masks[0])).sum()) == num_pruned(320, 0.3)
    rest = [w for w in pruned_layers(pruned) if w is not out]
    total = sum(int(np.prod(w.masks[0].shape)) for w in rest)
    zeros = sum(int((~numpy(w.masks[0])).sum()) for w in rest)
    assert zeros == num_pruned(total, 0.8)


def test_xnnpack_policy_prunes_only_1x1_convs():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, strides=2, name="stem")(inputs)
    x = L.Conv2D(16, 1, name="pw")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, name="fc")(x)
    policy = keras_prune.PruneForLatencyOnXNNPack()
    pruned = keras_prune.prune_low_magnitude(keras.Model(inputs, outputs),
                                             pruning_policy=policy)
    assert [w.layer.name for w in pruned_layers(pruned)] == ["pw"]
    with pytest.raises(ValueError, match=re.escape(
            "PruneForLatencyOnXNNPack prunes only 1x1 Conv2D layers")):
        keras_prune.prune_low_magnitude(mlp(), pruning_policy=policy)


# ---- one-shot -------------------------------------------------------------------


def test_prune_now_global_then_fine_tune_holds_masks(digits):
    model = mlp()
    train(model, digits, epochs=2, callbacks=[])
    original = [w.copy() for w in model.get_weights()]
    pruned, report = keras_prune.prune_now(model, 0.9, scope="global")
    wrappers = pruned_layers(pruned)
    total = sum(int(np.prod(w.masks[0].shape)) for w in wrappers)
    assert sum(int((~numpy(w.masks[0])).sum()) for w in wrappers) == (
        num_pruned(total, 0.9))
    assert isinstance(report, keras_prune.SparsityReport)
    # One threshold: every kept |w| > it >= every pruned |w|.
    values = [np.abs(w) for w in model.get_weights()[::2]]
    keeps = [numpy(w.masks[0]) for w in wrappers]
    threshold = float(numpy(wrappers[0].thresholds[0]))
    assert min(v[k].min() for v, k in zip(values, keeps)) > threshold
    assert max(v[~k].max() for v, k in zip(values, keeps)) == threshold
    masks = [numpy(w.masks[0]) for w in wrappers]
    # Ordinary fine-tuning: no callback needed, masks and zeros held.
    train(pruned, digits, epochs=1, callbacks=[])
    for wrapper, mask in zip(wrappers, masks):
        np.testing.assert_array_equal(numpy(wrapper.masks[0]), mask)
        assert (numpy(wrapper.prunable_weights[0])[~mask] == 0).all()
    for a, b in zip(model.get_weights(), original):
        np.testing.assert_array_equal(a, b)


def test_prune_now_layer_scope_and_custom_criterion():
    model = mlp()
    pruned, _ = keras_prune.prune_now(model, 0.5, scope="layer")
    for wrapper in pruned_layers(pruned):
        mask = numpy(wrapper.masks[0])
        assert int((~mask).sum()) == num_pruned(mask.size, 0.5)

    def first_rows_matter(layer, variable, weights):
        # Rank by row index: the last rows are pruned first.
        rows = np.arange(weights.shape[0], 0, -1, dtype="float32")
        return np.broadcast_to(rows[:, None], weights.shape)

    pruned, _ = keras_prune.prune_now(model, 0.5, scope="layer",
                                      criterion=first_rows_matter)
    mask = numpy(pruned.get_layer("prune_low_magnitude_d1").masks[0])
    assert mask[:32].all() and not mask[32:].any()


# ---- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(block_size=(1, 64)),
         "block_size=(1, 64) is larger than the (64, 48) matrix view of "
         "layer 'd1', weight 'd1/kernel' of shape (64, 48)"),
        (dict(sparsity_m_by_n=(4, 4)),
         "sparsity_m_by_n must be (m, n) with 0 < m < n: m zeros in every "
         "n consecutive weights, e.g. (2, 4); got (4, 4)."),
        (dict(sparsity_m_by_n=(2, 4),
              pruning_schedule=keras_prune.ConstantSparsity(0.9, 0)),
         "sparsity_m_by_n=(2, 4) prunes exactly 50% of the weights, but the "
         "pruning schedule ends at 90%."),
        (dict(per_layer={"dense_9": 0.5}),
         "per_layer names the layer 'dense_9', which is not in the model. "
         "Its layers are: 'input_layer"),
        (dict(exclude=["hed"]),
         "exclude names the layer 'hed', which is not in the model."),
        (dict(per_layer={"d1": {"sparsty": 0.5}}),
         "per_layer['d1']: unknown argument(s) ['sparsty']"),
        (dict(scope="global", exclude=["d1", "d2", "out"]),
         "scope='global' found no prunable weight to rank"),
        (dict(scope="global", block_size=(1, 4)),
         "scope='global' ranks single weights across layers; it does not "
         "combine with block_size or sparsity_m_by_n"),
        (dict(scope="all"), "scope must be 'layer', 'global' or 'row', got 'all'."),
    ],
)
def test_bad_pattern_and_scope_arguments(kwargs, message):
    model = mlp()
    with pytest.raises(ValueError, match=re.escape(message)):
        keras_prune.prune_low_magnitude(model, **kwargs)


def test_n_m_on_embedding_is_refused():
    inputs = keras.Input((5,), dtype="int32")
    outputs = L.Embedding(20, 8, name="emb")(inputs)
    with pytest.raises(ValueError, match=re.escape(
            "sparsity_m_by_n=(2, 4) needs an input dimension to group, and "
            "layer 'emb', weight 'emb/embeddings' of shape (20, 8) has none")):
        keras_prune.prune_low_magnitude(keras.Model(inputs, outputs),
                                        sparsity_m_by_n=(2, 4))


# ---- global threshold: exact selection -------------------------------------


def _stable_sort_masks(arrays, sparsity):
    """Reference: concatenate, stable argsort, prune the first k."""
    flat = np.concatenate(
        [np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]
    )
    k = num_pruned(flat.size, sparsity)
    order = np.argsort(flat, kind="stable")
    keep = np.ones(flat.size, dtype=bool)
    keep[order[:k]] = False
    threshold = float(flat[order[k - 1]]) if k else 0.0
    bounds = np.cumsum([0] + [np.size(a) for a in arrays])
    return [
        keep[a:b].reshape(np.shape(x))
        for a, b, x in zip(bounds[:-1], bounds[1:], arrays)
    ], threshold


def _assert_global_exact(arrays, sparsity):
    fns = [lambda a=a: a for a in arrays]
    masks, threshold = patterns.global_masks(
        fns, [np.size(a) for a in arrays], sparsity
    )
    expected, expected_threshold = _stable_sort_masks(arrays, sparsity)
    assert threshold == expected_threshold
    assert len(masks) == len(expected)
    for mask, want in zip(masks, expected):
        assert mask.dtype == bool and mask.shape == want.shape
        np.testing.assert_array_equal(mask, want)


def _random_scores(rng, size, zeros, ties):
    scores = np.abs(rng.standard_normal(size)).astype(np.float32)
    if ties:  # heavy ties: one or two decimals
        scores = np.round(scores, int(rng.integers(1, 3))).astype(np.float32)
    scores[rng.random(size) < zeros] = 0
    return scores


@pytest.mark.parametrize("sample", [1 << 20, 64, 3])
@pytest.mark.parametrize("seed", range(6))
def test_global_masks_match_a_stable_sort(monkeypatch, sample, seed):
    # Small samples give loose brackets that sometimes miss: every path.
    monkeypatch.setattr(patterns, "_SAMPLE", sample)
    rng = np.random.default_rng(seed)
    for _ in range(12):
        arrays = []
        for _ in range(int(rng.integers(1, 6))):
            size = int(rng.choice([1, 2, 9, 100, 1000, 10_000, 100_000]))
            zeros = float(rng.choice([0, 0.3, 0.8, 0.9, 0.95, 1.0]))
            scores = _random_scores(rng, size, zeros, rng.random() < 0.4)
            if size % 10 == 0 and rng.random() < 0.5:
                scores = scores.reshape(10, -1)
            arrays.append(scores)
        for sparsity in (0.0, 0.5, 0.9, 0.99, float(rng.random())):
            _assert_global_exact(arrays, sparsity)


@pytest.mark.parametrize("zeros", [0.0, 0.8, 0.9])
def test_global_masks_on_weights_pruned_before(zeros):
    # A schedule's later updates: the zeros are the earlier global selection
    # (at 90 %, they are exactly the k to prune: no selection).
    rng = np.random.default_rng(1)
    arrays = [_random_scores(rng, n, 0, False) for n in (50_000, 30_000, 7)]
    if zeros:
        keeps, _ = _stable_sort_masks(arrays, zeros)
        arrays = [a * k for a, k in zip(arrays, keeps)]
    for sparsity in (0.5, 0.8, 0.9, 0.95):
        _assert_global_exact(arrays, sparsity)


def test_global_masks_all_zero_tensor_and_zero_ties(monkeypatch):
    # More zeros than k: the first k zeros (tensor order, flat index) go,
    # and the tie is split inside a tensor, across scan chunks.
    monkeypatch.setattr(patterns, "_CHUNK", 7)
    rng = np.random.default_rng(2)
    arrays = [
        _random_scores(rng, 1000, 0.5, False),
        np.zeros((20, 30), dtype=np.float32),
        _random_scores(rng, 500, 0.9, True),
    ]
    for sparsity in (0.1, 0.3, 0.6, 0.7, 0.99):
        _assert_global_exact(arrays, sparsity)
    _assert_global_exact([np.zeros(10, np.float32)] * 3, 0.5)
    _assert_global_exact([np.zeros(1, np.float32)], 0.9)  # k = 0


@pytest.mark.parametrize(
    "side", ["below", "above", "too many candidates", "no sample"]
)
def test_global_masks_bracket_fallback_is_exact(monkeypatch, side):
    calls = []
    fallback = patterns._fallback
    monkeypatch.setattr(
        patterns, "_fallback", lambda *a: calls.append(1) or fallback(*a)
    )
    if side == "too many candidates":
        monkeypatch.setattr(patterns, "_CANDIDATES", 0)
    rng = np.random.default_rng(3)
    arrays = [
        _random_scores(rng, 40_000, 0.3, True),
        _random_scores(rng, 25_000, 0.0, False).reshape(250, 100),
    ]
    scores = np.concatenate([a.reshape(-1) for a in arrays])
    nonzero = np.sort(scores[scores > 0])
    bracket = {
        # The k-th (at 50 %, about the 29 % quantile of the nonzeros) lies
        # below the bracket, above it, and inside a very wide one.
        "below": (nonzero[-100], nonzero[-1]),
        "above": (nonzero[0], nonzero[100]),
        "too many candidates": (nonzero[0], nonzero[-1]),
    }.get(side)
    if bracket is None:
        monkeypatch.setattr(
            patterns, "_zeros_and_sample",
            lambda fns, stride: (
                [int((np.asarray(f()) == 0).sum()) for f in fns],
                np.zeros(0, np.float32),
            ),
        )
    else:
        monkeypatch.setattr(
            patterns, "_bracket",
            lambda sample, rank, n: tuple(np.float32(b) for b in bracket),
        )
    for sparsity in (0.5, 0.9):
        _assert_global_exact(arrays, sparsity)
    if side != "no sample":  # an empty sample brackets everything
        assert len(calls) == 2


def test_global_masks_periodic_layout_fools_the_sample(monkeypatch):
    # A strided sample (every 100th score) that sees only large values, then
    # only small ones: the bracket misses, the fallback stays exact.
    monkeypatch.setattr(patterns, "_SAMPLE", 1000)
    calls = []
    fallback = patterns._fallback
    monkeypatch.setattr(
        patterns, "_fallback", lambda *a: calls.append(1) or fallback(*a)
    )
    rng = np.random.default_rng(4)
    small = rng.uniform(0.01, 1, 100_000).astype(np.float32)
    large = small.copy()
    large[::100] = 10.0
    tiny = small + 1
    tiny[::100] = 0.001
    _assert_global_exact([large[:50_000], large[50_000:]], 0.5)
    _assert_global_exact([tiny], 0.5)
    assert len(calls) == 2


def test_global_masks_float64_scores_compare_as_float32():
    rng = np.random.default_rng(5)
    arrays = [rng.random(3000), rng.random((30, 40)).astype(np.float32)]
    arrays[0][::2] = np.float64(0.5) + 1e-12  # ties once rounded to float32
    arrays[1][0] = 0.5
    for sparsity in (0.2, 0.5, 0.75):
        _assert_global_exact(arrays, sparsity)


def test_update_global_masks_bakes_exactly_and_leaves_kept_weights():
    model = mlp()
    rng = np.random.default_rng(6)
    for layer in model.layers[1:]:
        w = rng.standard_normal(layer.kernel.shape).astype("float32")
        w[rng.random(w.shape) < 0.3] = 0.0
        w[:, 0] = np.round(w[:, 0], 1)  # ties
        layer.kernel.assign(w)
    originals = [numpy(layer.kernel) for layer in model.layers[1:]]
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.8, 0), scope="global"
    )
    wrappers = pruned_layers(pruned)
    scores = wrappers[0].scores()
    assert scores[0].flags.writeable  # a copy, not the weights
    scores[0][...] = -1
    threshold = keras_prune.training.updater.update_global_masks(wrappers, 0.8, 3)
    expected, expected_threshold = _stable_sort_masks(
        [np.abs(w) for w in originals], 0.8
    )
    assert threshold == expected_threshold
    for wrapper, w, keep in zip(wrappers, originals, expected):
        np.testing.assert_array_equal(numpy(wrapper.masks[0]), keep)
        kernel = numpy(wrapper.prunable_weights[0])
        np.testing.assert_array_equal(kernel, np.where(keep, w, 0))
        assert not np.signbit(kernel[~keep]).any()
        assert float(numpy(wrapper.thresholds[0])) == np.float32(threshold)
        assert int(numpy(wrapper.pruning_step)) == 3


def test_update_global_masks_with_given_scores_and_size_weighting():
    model = mlp()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0), scope="global",
        global_weighting="size",
    )
    wrappers = pruned_layers(pruned)
    weights = [numpy(w.prunable_weights[0]) for w in wrappers]
    weighted = [np.abs(w) / np.sqrt(np.float32(w.size)) for w in weights]
    for score, want in zip(wrappers[0].scores() + wrappers[1].scores(),
                           weighted):
        np.testing.assert_array_equal(score, want)
    given = [[np.round(np.abs(w), 1)] for w in weights]
    copies = [[s.copy() for s in g] for g in given]
    threshold = keras_prune.training.updater.update_global_masks(
        wrappers, 0.5, 1, scores=given
    )
    expected, expected_threshold = _stable_sort_masks(
        [g[0] for g in given], 0.5
    )
    assert threshold == expected_threshold
    for wrapper, w, keep, g, c in zip(wrappers, weights, expected, given,
                                      copies):
        np.testing.assert_array_equal(numpy(wrapper.masks[0]), keep)
        np.testing.assert_array_equal(
            numpy(wrapper.prunable_weights[0]), np.where(keep, w, 0)
        )
        np.testing.assert_array_equal(g[0], c[0])  # the scores untouched
