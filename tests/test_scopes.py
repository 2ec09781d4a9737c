"""Block, N:M, global scope, per-layer control and one-shot pruning,
trained on real data (sklearn digits) on every backend."""

import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import patterns
from keras_prune.patterns import num_pruned
from keras_prune.pruning import pruned_layers
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
        (dict(scope="all"), "scope must be 'layer' or 'global', got 'all'."),
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
