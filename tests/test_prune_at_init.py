"""Pruning at initialization (SNIP, GraSP, SynFlow), checked against NumPy.

The references here are independent of the package: SynFlow's gradient of
R = sum(output) for a Dense -> BatchNorm -> Dense net written out by hand,
GraSP's Hessian-gradient product by central finite differences of the
analytic gradient of a softmax regression. The same reference on every
backend means the same masks on every backend.
"""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned

EPS = 1e-3  # BatchNormalization's epsilon, set explicitly below
# Keras adds it to the variance as a float32 constant, in float64 too.
EPS64 = float(np.float32(EPS))


def mlp_with_bn(seed=0, sizes=(6, 5, 3)):
    """Dense -> BatchNorm -> ReLU -> Dense with fixed, NumPy-drawn values."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((sizes[0],))
    x = keras.layers.Dense(sizes[1], name="d1")(inputs)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Dense(sizes[2], name="d2")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("d1").set_weights([
        rng.normal(size=(sizes[0], sizes[1])), rng.normal(size=sizes[1])])
    model.get_layer("bn").set_weights([
        rng.normal(size=sizes[1]), rng.normal(size=sizes[1]),
        rng.normal(size=sizes[1]), rng.uniform(0.5, 2, size=sizes[1])])
    model.get_layer("d2").set_weights([
        rng.normal(size=(sizes[1], sizes[2])), rng.normal(size=sizes[2])])
    return model


def numpy_synflow(model, m1, m2):
    """|w * dR/dw| of both kernels, by hand, on the absolute masked net."""
    w1, b1 = (np.abs(v).astype(np.float64)
              for v in model.get_layer("d1").get_weights())
    gamma, beta, mean, var = (np.abs(v).astype(np.float64)
                              for v in model.get_layer("bn").get_weights())
    w2, _ = (np.abs(v).astype(np.float64)
             for v in model.get_layer("d2").get_weights())
    w1, w2 = w1 * m1, w2 * m2
    scale = gamma / np.sqrt(var + EPS64)
    h = np.ones(w1.shape[0]) @ w1 + b1
    a = scale * (h - mean) + beta
    live = a > 0  # ReLU's derivative
    d_a = w2.sum(axis=1) * live  # dR/da
    d_h = d_a * scale
    g1 = np.outer(np.ones(w1.shape[0]), d_h)
    g2 = np.outer(np.maximum(a, 0), np.ones(w2.shape[1]))
    return np.abs(w1 * g1), np.abs(w2 * g2)


def numpy_synflow_masks(model, sparsity, rounds):
    """SynFlow's rounds in NumPy (ties: lower flat index pruned first)."""
    s1 = model.get_layer("d1").get_weights()[0].shape
    s2 = model.get_layer("d2").get_weights()[0].shape
    keep = np.ones(np.prod(s1) + np.prod(s2), bool)
    for k in range(1, rounds + 1):
        m1 = keep[:np.prod(s1)].reshape(s1)
        m2 = keep[np.prod(s1):].reshape(s2)
        flat = np.concatenate([s.ravel() for s in numpy_synflow(model, m1,
                                                                m2)])
        flat[~keep] = -1
        target = sparsity if k == rounds else 1 - (1 - sparsity) ** (k /
                                                                     rounds)
        keep = np.ones(flat.size, bool)
        keep[np.argsort(flat, kind="stable")[:num_pruned(flat.size,
                                                         target)]] = False
    return keep[:np.prod(s1)].reshape(s1), keep[np.prod(s1):].reshape(s2)


def kept(pruned):
    """{layer name: bool keep-mask} read from the baked kernels."""
    return {w.layer.name: keras.ops.convert_to_numpy(
        w.prunable_weights[0]) != 0 for w in pruned_layers(pruned)}


def test_synflow_scores_equal_the_hand_computed_gradient():
    model = mlp_with_bn()
    scores = keras_prune.synflow_scores(model)
    ones1 = np.ones((6, 5))
    ones2 = np.ones((5, 3))
    want1, want2 = numpy_synflow(model, ones1, ones2)
    # float64 values, but Keras 3.15's matmul rounds float64 products to
    # float32 on JAX and torch (see keras_prune.backend.float64_scope).
    np.testing.assert_allclose(scores["d1/kernel"], want1, rtol=1e-6)
    np.testing.assert_allclose(scores["d2/kernel"], want2, rtol=1e-6)


@pytest.mark.parametrize("rounds", [1, 7])
def test_synflow_masks_equal_numpy_rounds(rounds):
    # A NumPy reference, so every backend must give these very masks.
    model = mlp_with_bn(seed=3)
    pruned, _ = keras_prune.prune_at_init(model, 0.8, rounds=rounds)
    m1, m2 = numpy_synflow_masks(model, 0.8, rounds)
    masks = kept(pruned)
    np.testing.assert_array_equal(masks["d1"], m1)
    np.testing.assert_array_equal(masks["d2"], m2)


def collapsing_mlp():
    """8 -> 8 -> 256 -> 256 -> 4: two large layers between small ones.

    SynFlow's scores sum to R in every layer (conservation), so one shot
    ranks the large layers' weights ~32x below the small ones' and a high
    compression removes a large layer entirely; magnitude does too once
    that layer's weights are drawn small."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((8,))
    x = inputs
    sizes = [8, 8, 256, 256, 4]
    scales = [1.0, 0.1, 1.0, 1.0]
    for i, (n, m, scale) in enumerate(zip(sizes, sizes[1:], scales)):
        layer = keras.layers.Dense(m, activation="relu", name=f"l{i}")
        x = layer(x)
        layer.set_weights([rng.normal(scale=scale, size=(n, m)),
                           np.zeros(m)])
    return keras.Model(inputs, x)


def collapsed_layers(pruned):
    return sorted(name for name, m in kept(pruned).items() if not m.any())


def test_collapse_check_needs_no_training():
    model = collapsing_mlp()
    sparsity = 0.995  # 1 - 0.005: about 333 of 66,656 weights kept
    one_shot, _ = keras_prune.prune_at_init(model, sparsity, rounds=1)
    magnitude, _ = keras_prune.prune_at_init(model, sparsity, "magnitude")
    iterative, _ = keras_prune.prune_at_init(model, sparsity, rounds=100)
    assert collapsed_layers(one_shot) != []
    assert collapsed_layers(magnitude) != []
    assert collapsed_layers(iterative) == []


def test_user_model_is_not_modified_and_sparsity_is_exact():
    model = mlp_with_bn()
    before = [np.array(w) for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = np.arange(16) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for method in ("synflow", "snip", "grasp", "magnitude", "random"):
        pruned, _ = keras_prune.prune_at_init(
            model, 0.7, method, rounds=5, data=(x, y), loss=loss)
        zeros = sum(int((~m).sum()) for m in kept(pruned).values())
        assert zeros == num_pruned(6 * 5 + 5 * 3, 0.7), method
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_snip_is_taylor_on_one_batch():
    model = mlp_with_bn(seed=1)
    x = np.random.default_rng(1).normal(size=(16, 6)).astype("float32")
    y = np.arange(16) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    snip, _ = keras_prune.prune_at_init(model, 0.6, "snip", data=(x, y),
                                        loss=loss, batch_size=16)
    taylor, _ = keras_prune.prune_now(model, 0.6, "global", "taylor",
                                      data=(x, y), loss=loss, batch_size=16)
    for name, mask in kept(snip).items():
        np.testing.assert_array_equal(mask, kept(taylor)[name])
    context = keras_prune.criteria.ScoringContext(
        model=snip, data=(x, y), loss=loss, batch_size=16)
    for wrapper in pruned_layers(snip):
        (a,) = wrapper.scores(context, keras_prune.criteria.get("snip"))
        (b,) = wrapper.scores(context, keras_prune.criteria.get("taylor"))
        np.testing.assert_array_equal(a, b)


def softmax_regression(seed=0):
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((5,)),
                              keras.layers.Dense(4, name="d")])
    model.get_layer("d").set_weights([rng.normal(size=(5, 4)),
                                      rng.normal(size=4)])
    x = rng.normal(size=(12, 5)).astype("float32")
    y = rng.integers(0, 4, size=12)
    return model, x, y


def numpy_grasp(model, x, y, temperature=200.0, step=1e-4):
    """-w * Hg of the kernel; Hg by central differences of the analytic
    gradient of mean CE(softmax((xW + b) / T)) along g."""
    w, b = (v.astype(np.float64) for v in model.get_layer("d").get_weights())
    x = x.astype(np.float64)
    onehot = np.eye(w.shape[1])[y]

    def gradient(w):
        z = (x @ w + b) / temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return x.T @ (p - onehot) / (len(x) * temperature)

    g = gradient(w)
    scale = step / np.abs(g).max()
    hg = (gradient(w + scale * g) - gradient(w - scale * g)) / (2 * scale)
    return -w * hg


def test_grasp_matches_finite_differences_and_removes_the_highest():
    model, x, y = softmax_regression()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    reference = numpy_grasp(model, x, y)
    pruned, _ = keras_prune.prune_at_init(model, 0.5, "grasp", data=(x, y),
                                          loss=loss)
    # Scores of the unpruned weights: a wrapped copy whose masks are ones.
    wrapped = keras_prune.prune_low_magnitude(model,
                                              keras_prune.FixedMasks(0.5))
    context = keras_prune.criteria.ScoringContext(
        model=wrapped, data=(x, y), loss=loss, batch_size=32)
    (wrapper,) = pruned_layers(wrapped)
    (scores,) = wrapper.scores(context, keras_prune.criteria.get("grasp"))
    # The criterion returns -(GraSP score) shifted to be non-negative.
    shifted = -reference - (-reference).min()
    np.testing.assert_allclose(scores, shifted,
                               atol=1e-4 * np.abs(reference).max())
    # GraSP removes the highest -w * Hg: the 10 of 20 with the largest go.
    order = np.argsort(reference.ravel())
    want = np.zeros(reference.size, bool)
    want[order[:10]] = True
    np.testing.assert_array_equal(kept(pruned)["d"].ravel(), want)


def test_batchnorm_dropout_model_prunes_with_synflow_masks_hold_in_fit():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),  # its seed is an integer variable
        keras.layers.Dense(3),
    ])
    pruned, _ = keras_prune.prune_at_init(model, 0.9, rounds=20)
    before = kept(pruned)
    assert not any(not m.any() for m in before.values())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=32)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    pruned.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = kept(pruned)
    for name in before:
        assert not (after[name] & ~before[name]).any(), name
    stripped = keras_prune.strip_pruning(pruned)
    for layer in stripped.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            np.testing.assert_array_equal(kernel != 0,
                                          before[layer.name])


def two_outputs():
    inputs = keras.Input((4,))
    return keras.Model(inputs, [keras.layers.Dense(2)(inputs),
                                keras.layers.Dense(3)(inputs)])


@pytest.mark.parametrize("call, message", [
    (lambda m: keras_prune.prune_at_init(m, 0.5, "snip"),
     "criterion must have data when it is 'snip' (the scores are gradients "
     "of the loss): pass data=(x, y) (or an iterable of (x, y) batches) and "
     "loss=, or use method='synflow', which needs no data."),
    (lambda m: keras_prune.prune_at_init(m, 0.5, "grasp"),
     "criterion must have data when it is 'grasp' (the scores are gradients "
     "of the loss): pass data=(x, y) (or an iterable of (x, y) batches) and "
     "loss=, or use method='synflow', which needs no data."),
    (lambda m: keras_prune.prune_at_init(m, 1.0),
     "prune_at_init: sparsity must be a fraction in [0, 1), got 1.0; e.g. "
     "0.99 for 100x compression."),
    (lambda m: keras_prune.prune_at_init(m, -0.1),
     "prune_at_init: sparsity must be a fraction in [0, 1), got -0.1; e.g. "
     "0.99 for 100x compression."),
    (lambda m: keras_prune.prune_at_init(m, 0.5, rounds=0),
     "prune_at_init: rounds must be an integer >= 1, got 0; SynFlow's paper "
     "uses 100."),
    (lambda m: keras_prune.prune_at_init(m, 0.5, "obd"),
     "prune_at_init: method must be one of ['synflow', 'snip', 'grasp', "
     "'magnitude', 'random'], got 'obd'."),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError) as error:
        call(mlp_with_bn())
    assert str(error.value) == message


def test_synflow_refuses_a_model_with_two_outputs():
    model = two_outputs()
    with pytest.raises(ValueError) as error:
        keras_prune.prune_at_init(model, 0.5)
    assert str(error.value) == (
        f"SynFlow sums the model's output, and model {model.name!r} has 2 "
        "outputs; pass a model with one output tensor, e.g. "
        "keras.Model(model.inputs, model.outputs[0]).")
