"""SparseGPT's layer solver and the one-layer Wanda / magnitude masks
(keras_prune/methods/obs.py). NumPy only, so every backend gets the same
numbers; the file runs under each backend like the rest of the suite."""

import numpy as np
import pytest

from keras_prune.methods import obs


def layer(seed=0, rows=12, cols=16, samples=64, outliers=()):
    """(W, X, XᵀX) with N(0, 1) inputs, `outliers` features scaled up."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols))
    x = rng.standard_normal((samples, cols))
    for feature, scale in outliers:
        x[:, feature] *= scale
    return w, x, x.T @ x


def test_exact_counts_per_row_at_half():
    w, _, gram = layer(cols=40)
    new, keep = obs.sparsegpt(w, gram, 0.5, block_size=16)
    assert keep.dtype == bool and new.dtype == np.float32
    assert (keep.sum(axis=1) == 20).all()
    assert (new[~keep] == 0).all() and not np.signbit(new[~keep]).any()
    assert (new[keep] != 0).all()


@pytest.mark.parametrize("n_m", [(2, 4), (4, 8)])
def test_n_m_every_group(n_m):
    n, m = n_m
    w, _, gram = layer(cols=32)
    new, keep = obs.sparsegpt(w, gram, n_m=n_m, block_size=16)
    groups = keep.reshape(w.shape[0], -1, m).sum(axis=2)
    assert (groups == n).all()
    assert (new[~keep] == 0).all()
    for mask in (obs.wanda_keep(w, np.diag(gram), n_m=n_m),
                 obs.magnitude_keep(w, n_m=n_m)):
        assert (mask.reshape(w.shape[0], -1, m).sum(axis=2) == n).all()


def test_no_pruning_without_damping_keeps_the_weights():
    w, _, gram = layer()
    new, keep = obs.sparsegpt(w, gram, 0.0, damping=1e-10)
    assert keep.all()
    np.testing.assert_allclose(new, w, rtol=1e-6, atol=1e-6)


def test_sparsegpt_beats_wanda_beats_magnitude_with_outliers():
    rng = np.random.default_rng(3)
    outliers = zip(rng.choice(64, 3, replace=False), rng.uniform(20, 100, 3))
    w, _, gram = layer(rows=32, cols=64, samples=256, outliers=outliers)
    for sparsity, n_m in ((0.5, None), (0, (2, 4))):
        sgpt, _ = obs.sparsegpt(w, gram, sparsity, n_m=n_m)
        wanda = w * obs.wanda_keep(w, np.diag(gram), sparsity, n_m=n_m)
        magnitude = w * obs.magnitude_keep(w, sparsity, n_m=n_m)
        errors = [obs.reconstruction_error(w, new, gram)
                  for new in (sgpt, wanda, magnitude)]
        assert errors[0] < errors[1] < errors[2], (n_m, errors)


def test_one_pruned_weight_gets_the_least_squares_update():
    # One weight pruned per row in a single block: SparseGPT fixes the
    # columns before the pruned one, so the rest must be the least-squares
    # optimum over the columns after it, for the same damped Hessian.
    w, _, gram = layer(rows=6, cols=8, samples=32)
    damping = 0.01
    new, keep = obs.sparsegpt(w, gram, 1 / 8, block_size=8, damping=damping)
    h = gram + damping * np.mean(np.diag(gram)) * np.eye(8)
    assert ((~keep).sum(axis=1) == 1).all()
    for row in range(6):
        q = int(np.flatnonzero(~keep[row])[0])
        free = np.arange(q + 1, 8)
        # Minimise (w − ŵ)ᵀH(w − ŵ) with ŵ_q = 0 and ŵ_j = w_j for j < q.
        expected = w[row].copy()
        expected[q] = 0
        delta = np.zeros(8)
        delta[q] = w[row, q]
        if free.size:
            shift = np.linalg.solve(h[np.ix_(free, free)],
                                    h[free] @ delta)
            expected[free] += shift
        np.testing.assert_allclose(new[row], expected, rtol=1e-4, atol=1e-5)
        # Never worse than only zeroing the weight.
        zeroed = w[row] * keep[row]
        assert (obs.reconstruction_error(w[row:row + 1], new[row:row + 1], h)
                <= obs.reconstruction_error(w[row:row + 1],
                                            zeroed[None], h) + 1e-9)


def test_first_column_pruned_is_the_closed_form_obs_update():
    # Pruning input 0 lets every other weight move: the OBS closed form
    # δ = −w_0 · H⁻¹[:, 0] / H⁻¹[0, 0].
    w, _, gram = layer(rows=5, cols=6, samples=20)
    w[:, 0] = 1e-3  # the smallest saliency, so input 0 is the one pruned
    new, keep = obs.sparsegpt(w, gram, 1 / 6, block_size=6, damping=0.0)
    assert not keep[:, 0].any() and keep[:, 1:].all()
    inv = np.linalg.inv(gram)
    expected = w - np.outer(w[:, 0], inv[:, 0]) / inv[0, 0]
    np.testing.assert_allclose(new, expected, rtol=1e-4, atol=1e-6)


def test_dead_inputs_are_zeroed():
    w, x, _ = layer()
    x[:, [2, 9]] = 0
    gram = x.T @ x
    new, keep = obs.sparsegpt(w, gram, 0.25)
    assert (new[:, [2, 9]] == 0).all()
    assert ((~keep).sum(axis=1) == 4).all()
    assert np.isfinite(new).all()


def test_inputs_are_not_modified():
    w, _, gram = layer()
    gram[3] = gram[:, 3] = 0  # a dead input: its weights are zeroed
    for weights in (w, w.astype(np.float32)):
        before = (weights.copy(), gram.copy())
        obs.sparsegpt(weights, gram, 0.5)
        obs.sparsegpt(weights, gram, n_m=(2, 4))
        obs.wanda_keep(weights, np.diag(gram))
        np.testing.assert_array_equal(weights, before[0])
        np.testing.assert_array_equal(gram, before[1])


def test_gram_scale_does_not_matter():
    w, _, gram = layer()
    a, keep_a = obs.sparsegpt(w, gram, 0.5)
    b, keep_b = obs.sparsegpt(w, gram / 64, 0.5)
    np.testing.assert_array_equal(keep_a, keep_b)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_wanda_with_equal_norms_is_magnitude():
    w, _, _ = layer()
    np.testing.assert_array_equal(obs.wanda_keep(w, np.full(16, 4.0), 0.5),
                                  obs.magnitude_keep(w, 0.5))


def test_reconstruction_error_matches_the_outputs():
    w, x, gram = layer()
    new = w * obs.magnitude_keep(w, 0.5)
    direct = (np.sum(((w - new) @ x.T) ** 2) / np.sum((w @ x.T) ** 2))
    assert obs.reconstruction_error(w, new, gram) == pytest.approx(direct)
    assert obs.reconstruction_error(w, w, gram) == 0.0


def test_singular_hessian_without_damping_is_a_clear_error():
    w, x, _ = layer(samples=4)  # rank 4 < 16 inputs
    with pytest.raises(np.linalg.LinAlgError, match="raise damping"):
        obs.sparsegpt(w, x.T @ x, 0.5, damping=0.0)


W, _, G = layer()


@pytest.mark.parametrize("call, message", [
    (lambda: obs.sparsegpt(W[0], G), "weights must be a non-empty 2-D"),
    (lambda: obs.sparsegpt(W, G[:8, :8]),
     r"gram has shape \(8, 8\), but weights have 16 input columns"),
    (lambda: obs.sparsegpt(W, G, 1.0), r"sparsity \(1.0\) must be a number "
                                       r"in \[0, 1\)"),
    (lambda: obs.sparsegpt(W, G, -0.1), r"sparsity \(-0.1\)"),
    (lambda: obs.sparsegpt(W, G, n_m=(4, 4)),
     r"n_m \(\(4, 4\)\) must be two integers 0 < n < m"),
    (lambda: obs.sparsegpt(W, G, n_m=(2, 3)),
     r"16 input columns are not a multiple of m \(3\)"),
    (lambda: obs.sparsegpt(W, G, n_m=(2, 4), block_size=6),
     r"block_size \(6\) must be a multiple of m \(4\)"),
    (lambda: obs.sparsegpt(W, G, block_size=0), r"block_size \(0\) must be "
                                                "a positive integer"),
    (lambda: obs.sparsegpt(W, G, damping=-1.0), r"damping \(-1.0\)"),
    (lambda: obs.sparsegpt(np.where(W > 1, np.nan, W), G),
     "weights hold .* non-finite values"),
    (lambda: obs.sparsegpt(W, G * np.inf), "gram holds 256 non-finite"),
    (lambda: obs.wanda_keep(W, np.ones(3)), "sq_norms must be 16 finite"),
    (lambda: obs.reconstruction_error(W, W[:3], G),
     r"new_weights has shape \(3, 16\)"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
