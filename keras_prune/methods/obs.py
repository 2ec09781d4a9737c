"""SparseGPT's layer solver and the one-layer masks it is compared with.

Pure NumPy, the same on every backend: a caller hands in a layer's weights
as a (rows, cols) array (rows: output features, cols: input features, so a
Keras Dense kernel goes in transposed) and the Gram matrix XᵀX of the
layer's inputs over the calibration samples.

- `sparsegpt`: Frantar & Alistarh 2023. Input columns are visited left to
  right; a pruned weight's error is spread over the columns not yet visited
  by the Optimal Brain Surgeon update, read from the upper Cholesky factor
  of the inverse Hessian. The mask is chosen per block of columns from the
  weights as updated so far (adaptive mask selection), or per group of m
  columns for N:M.
- `wanda_keep`, `magnitude_keep`: the per-row masks of Wanda (|W|·‖X_j‖)
  and of magnitude, without any weight update.
- `reconstruction_error`: ‖(W − Ŵ)X‖² / ‖WX‖² from the Gram matrix.

Example:

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 64))
    w = rng.standard_normal((32, 64))
    gram = x.T @ x
    new_w, keep = sparsegpt(w, gram, 0.5)
    reconstruction_error(w, new_w, gram)  # 0.076; Wanda's mask alone 0.081
"""

import numbers

import numpy as np

# Columns whose OBS rank-one updates are applied one by one before the rest
# of the block gets them as one matrix product: the per-column NumPy calls
# then touch a (16, rows) slab instead of (block, rows), same arithmetic.
_SUB_BLOCK = 16
# Columns that receive the updates of all the columns before them as one
# product: a (512, k) @ (k, 4096) float32 product ran 1.4x faster than
# four (128, k) ones. Blocks inside get the rest from their own group.
_OUTER_COLUMNS = 512
# Size under which the inverse Hessian's factor is left to LAPACK. Above it
# the recursion turns the work into matrix products: on the 2-core machine
# this was written on, NumPy's own Cholesky of a 4096² matrix ran at 4-26
# GFLOP/s against 65-80 for a product of the same size.
_LAPACK_SIZE = 64
# The weight updates run in float32: on a 4096×4096 layer the sweep took
# 1.27-1.70 s against 2.61-2.73 s in float64 (one thread) and the
# reconstruction error agreed to 10 digits (benchmarks/oneshot_layer.py). The
# Hessian's factorization stays float64: XᵀX's diagonal spans 10⁴ when a few
# input features are 100× larger, and every update is read from its factor.
_UPDATE_DTYPE = np.float32


def sparsegpt(weights, gram, sparsity=0.5, *, n_m=None, block_size=128,
              damping=0.01):
    """Prunes one layer by SparseGPT, compensating with the kept weights.

    Args:
        weights: (rows, cols) float array; rows are output features, cols
            input features (a Keras Dense kernel is (in, out): pass
            `kernel.T`). Not modified.
        gram: (cols, cols) XᵀX summed or averaged over the calibration
            samples (the result is the same: damping is relative), float64
            preferred. Not modified.
        sparsity: fraction in [0, 1) pruned in every row,
            `round(cols * sparsity)` weights (at least one kept); ignored
            when `n_m` is given.
            Each block of columns prunes its share of every row, chosen by
            w² / U_ii² on the weights updated so far. (The reference code
            thresholds all rows of a block together; per row, as Wanda
            compares, every row ends with exactly its count.)
        n_m: None or (n, m): keep n of every m consecutive input columns in
            every row (2:4 is (2, 4)), chosen at the start of each group.
            cols and block_size must be multiples of m.
        block_size: columns per block of mask selection and lazy update.
        damping: λ = damping · mean(diag(XᵀX)) is added to the diagonal.

    Returns:
        (new_weights, keep): new_weights float32 (rows, cols) with exact
        zeros where pruned; keep the bool (rows, cols) mask. Both are
        Fortran-ordered, so `.T` is a C-ordered (cols, rows) Keras kernel
        without a copy. Inputs never active in the calibration data
        (XᵀX_ii = 0) get weight 0.

    Example:
        new_w, keep = sparsegpt(kernel.T, gram, n_m=(2, 4))
        kernel = new_w.T
    """
    w, h = _checked(weights, gram, "sparsegpt")
    sparsity, n_m = _checked_pattern(sparsity, n_m, w.shape[1], "sparsegpt")
    if (isinstance(block_size, bool) or not isinstance(
            block_size, numbers.Integral) or block_size < 1):
        raise ValueError(f"sparsegpt: block_size ({block_size!r}) must be a "
                         "positive integer; 128 is the paper's.")
    if n_m is not None and block_size % n_m[1]:
        raise ValueError(
            f"sparsegpt: block_size ({block_size}) must be a multiple of m "
            f"({n_m[1]}) so that no N:M group straddles two blocks; use "
            f"{max(1, block_size // n_m[1]) * n_m[1]}.")
    if (isinstance(damping, bool) or not isinstance(damping, numbers.Real)
            or not damping >= 0 or not np.isfinite(damping)):
        raise ValueError(f"sparsegpt: damping ({damping!r}) must be a finite "
                         "number >= 0; 0.01 (1 % of the mean diagonal) is "
                         "the paper's.")
    # An input that was never active gives no information about its
    # weights and a singular Hessian: zero its weights (they never changed
    # an output on the calibration data) and make its row of XᵀX harmless.
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    upper = inverse_hessian_factor(h)
    return _obs_sweep(w, upper, sparsity, n_m, int(block_size), _UPDATE_DTYPE,
                      dead)


def inverse_hessian_factor(gram):
    """The upper-triangular U with UᵀU = gram⁻¹, through float64.

    Row i of U, divided by U_ii, is the OBS update that pruning column i
    applies to the columns after it once the columns before i are fixed;
    U_ii² = [H_F⁻¹]_ii for H_F the Hessian of columns i and later, the OBS
    denominator at that point.

    Args:
        gram: (cols, cols) symmetric positive definite array (damped).

    Returns:
        float64 (cols, cols) upper-triangular array.

    Raises:
        np.linalg.LinAlgError (a ValueError) if gram is not positive
        definite in float64.
    """
    h = np.asarray(gram, dtype=np.float64)
    upper = np.zeros_like(h)
    try:
        _inverse_reversed_cholesky(h, upper)
        ok = bool(np.all(np.isfinite(upper)))
    except np.linalg.LinAlgError:
        ok = False
    if not ok:
        raise np.linalg.LinAlgError(
            "sparsegpt: the damped Hessian XᵀX is not positive definite in "
            "float64; raise damping (e.g. 0.1) or calibrate on more samples "
            "than input features.")
    return upper


def _inverse_reversed_cholesky(h, out):
    """Writes into `out` (upper part) U = V⁻¹, where h = V Vᵀ, V upper.

    h = V Vᵀ is the Cholesky factorization of h with its index order
    reversed, and UᵀU = (V Vᵀ)⁻¹ = h⁻¹: one factorization and one
    triangular inverse instead of the reference's Cholesky, inverse and
    second Cholesky. By halves, h = [[A, B], [Bᵀ, C]]: V₂₂ factors C,
    V₁₂ = B U₂₂ᵀ, V₁₁ factors the Schur complement A − V₁₂V₁₂ᵀ, and
    U₁₂ = −U₁₁ V₁₂ U₂₂. Every step but the small diagonal blocks is a
    matrix product (7/6·cols³ flops in all, the Schur update a SYRK).
    """
    n = h.shape[0]
    if n <= _LAPACK_SIZE:
        low = np.linalg.cholesky(h[::-1, ::-1])
        out[...] = np.linalg.inv(low)[::-1, ::-1]
        return
    half = n // 2
    _inverse_reversed_cholesky(h[half:, half:], out[half:, half:])
    u22 = out[half:, half:]
    v12 = h[:half, half:] @ u22.T
    _inverse_reversed_cholesky(h[:half, :half] - v12 @ v12.T,
                               out[:half, :half])
    out[:half, half:] = -(out[:half, :half] @ (v12 @ u22))


def _obs_sweep(w, upper, sparsity, n_m, block_size, dtype, dead=None):
    """SparseGPT's column sweep on prepared weights and U; see `sparsegpt`.

    Works on transposed copies, (cols, rows), so that one input column is
    one contiguous row; the results are returned as their transposed
    views, so that `.T` of each is a C-ordered Keras kernel with no copy.
    Columns in `dead` (bool, cols) start at 0. Pruning column c sets
    err_c = w_c / U_cc on the pruned rows and subtracts err_c · U[c, c+1:]
    from the columns after c;
    those subtractions are applied lazily: within a 16-column slab one by
    one, to the rest of the block as one product per slab, to a block from
    the blocks before it in its 512-column group as one product, and to a
    group from all groups before it as one product.
    """
    rows, cols = w.shape
    work = np.array(w.T, dtype=dtype, order="C")
    if dead is not None:
        work[dead] = 0
    errors = np.empty_like(work)  # every row is written before it is read
    keep = np.ones((cols, rows), dtype=bool)
    u = upper.astype(dtype)
    diag = np.diag(u)
    pruned_scale = 1 / diag
    pruned_per_row = min(int(round(cols * sparsity)), cols - 1)
    step = _SUB_BLOCK if n_m is None else n_m[1] * -(-_SUB_BLOCK // n_m[1])
    outer = block_size * max(1, _OUTER_COLUMNS // block_size)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        block = work[i1:i2]
        o1 = i1 - i1 % outer
        if i1 == o1 and i1:
            work[i1:i1 + outer] -= u[:i1, i1:i1 + outer].T @ errors[:i1]
        elif i1 > o1:
            block -= u[o1:i1, i1:i2].T @ errors[o1:i1]
        if n_m is None:
            # This block's share of every row's count, from a cumulative
            # rounding, so the shares add up to exactly pruned_per_row.
            share = (_share(pruned_per_row, i2, cols)
                     - _share(pruned_per_row, i1, cols))
            scores = block ** 2 / diag[i1:i2, None] ** 2
            _prune_smallest(scores, share, keep[i1:i2])
        for s1 in range(i1, i2, step):
            s2 = min(s1 + step, i2)
            for c in range(s1, s2):
                if n_m is not None and (c - s1) % n_m[1] == 0:
                    group = work[c:c + n_m[1]]
                    scores = group ** 2 / diag[c:c + n_m[1], None] ** 2
                    _prune_smallest(scores, n_m[1] - n_m[0],
                                    keep[c:c + n_m[1]])
                row, err = work[c], errors[c]
                np.multiply(row, pruned_scale[c] * ~keep[c], out=err)
                np.copyto(row, 0, where=~keep[c])
                work[c + 1:s2] -= u[c, c + 1:s2, None] * err
            if s2 < i2:
                work[s2:i2] -= u[s1:s2, s2:i2].T @ errors[s1:s2]
    return work.T.astype(np.float32, copy=False), keep.T


def _share(total, column, cols):
    """round(total · column / cols), halves up, in integers."""
    return (2 * total * column + cols) // (2 * cols)


def _prune_smallest(scores, count, keep):
    """Clears `keep` at the `count` smallest scores of every column of
    `scores` (inputs × rows); ties are broken deterministically."""
    if count:
        # A selection, not a sort, along contiguous rows: a stable argsort
        # along axis 0 of a (128, 4096) block was 30x slower.
        order = np.argpartition(np.ascontiguousarray(scores.T), count - 1,
                                axis=1)[:, :count]
        np.put_along_axis(keep.T, order, False, axis=1)


def wanda_keep(weights, sq_norms, sparsity=0.5, *, n_m=None):
    """Wanda's mask (Sun et al. 2024): keep the largest |W_ij|·‖X_j‖ per row.

    Compared within each output row, as the paper does: rows feed different
    outputs, so a global ranking would empty the rows whose outputs are
    small rather than the weights that matter least to each output.

    Args:
        weights: (rows, cols) array (a Dense kernel transposed).
        sq_norms: (cols,) ‖X_j‖² over the calibration samples, the diagonal
            of XᵀX.
        sparsity: fraction pruned per row, `round(cols * sparsity)`.
        n_m: None or (n, m): keep n of every m input columns per row.

    Returns:
        bool (rows, cols) keep mask.
    """
    w = _checked_weights(weights, "wanda_keep")
    norms = np.asarray(sq_norms, dtype=np.float64)
    if norms.shape != (w.shape[1],) or not np.all(np.isfinite(norms)):
        raise ValueError(
            f"wanda_keep: sq_norms must be {w.shape[1]} finite values (one "
            f"‖X_j‖² per input column), got shape {norms.shape}; pass "
            "np.diag(gram).")
    sparsity, n_m = _checked_pattern(sparsity, n_m, w.shape[1], "wanda_keep")
    scale = np.sqrt(np.maximum(norms, 0)).astype(w.dtype)
    return _row_keep(np.abs(w) * scale, sparsity, n_m)


def magnitude_keep(weights, sparsity=0.5, *, n_m=None):
    """The per-row magnitude mask: keep the largest |W_ij| of every row.

    Args:
        weights: (rows, cols) array.
        sparsity: fraction pruned per row, `round(cols * sparsity)`.
        n_m: None or (n, m): keep n of every m input columns per row.

    Returns:
        bool (rows, cols) keep mask.
    """
    w = _checked_weights(weights, "magnitude_keep")
    sparsity, n_m = _checked_pattern(sparsity, n_m, w.shape[1],
                                     "magnitude_keep")
    return _row_keep(np.abs(w), sparsity, n_m)


def _row_keep(scores, sparsity, n_m):
    """Keep-mask of the largest scores per row, or per group of m columns;
    ties are broken deterministically."""
    rows, cols = scores.shape
    if n_m is None:
        groups, count = scores, min(int(round(cols * sparsity)), cols - 1)
    else:
        groups, count = scores.reshape(rows, cols // n_m[1], n_m[1]), (
            n_m[1] - n_m[0])
    keep = np.ones(groups.shape, dtype=bool)
    if count:
        order = np.argpartition(groups, count - 1, axis=-1)[..., :count]
        np.put_along_axis(keep, order, False, axis=-1)
    return keep.reshape(rows, cols)


def reconstruction_error(weights, new_weights, gram):
    """‖(W − Ŵ)Xᵀ‖² / ‖WXᵀ‖², the layer's relative output error, from XᵀX.

    Uses the trace form ‖DXᵀ‖² = Σ (D·XᵀX) ⊙ D, in float64.

    Args:
        weights: (rows, cols) original weights.
        new_weights: (rows, cols) pruned weights.
        gram: (cols, cols) XᵀX (a scale factor cancels out).

    Returns:
        float: 0.0 for identical outputs; inf where WXᵀ is zero but the
        difference is not.
    """
    w, h = _checked(weights, gram, "reconstruction_error")
    w = w.astype(np.float64)
    new = np.asarray(new_weights, dtype=np.float64)
    if new.shape != w.shape:
        raise ValueError(
            f"reconstruction_error: new_weights has shape {new.shape}, "
            f"weights {w.shape}; pass the pruned version of the same layer.")
    diff = w - new
    num = float(np.sum((diff @ h) * diff))
    den = float(np.sum((w @ h) * w))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return num / den


def _checked_weights(weights, caller):
    """`weights` as a float array (not copied when it is one), checked
    to be 2-D and finite; callers never write to it."""
    w = np.asarray(weights)
    if w.dtype.kind != "f":
        w = w.astype(np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(
            f"{caller}: weights must be a non-empty 2-D (rows, cols) array, "
            f"got shape {w.shape}; pass a Dense kernel transposed (kernel.T).")
    bad = 0 if np.isfinite(w).all() else int(np.sum(~np.isfinite(w)))
    if bad:
        raise ValueError(f"{caller}: weights hold {bad} non-finite values "
                         "(NaN or inf); fix the layer before pruning it.")
    return w


def _checked(weights, gram, caller):
    """`weights` (see `_checked_weights`) and a float64 copy of `gram`,
    checked against each other."""
    w = _checked_weights(weights, caller)
    h = np.array(gram, dtype=np.float64)
    cols = w.shape[1]
    if h.shape != (cols, cols):
        raise ValueError(
            f"{caller}: gram has shape {h.shape}, but weights have {cols} "
            f"input columns; pass XᵀX of shape ({cols}, {cols}) for inputs X "
            f"of shape (samples, {cols}).")
    bad = 0 if np.isfinite(h).all() else int(np.sum(~np.isfinite(h)))
    if bad:
        raise ValueError(f"{caller}: gram holds {bad} non-finite values (NaN "
                         "or inf); accumulate XᵀX in float64 from finite "
                         "activations.")
    return w, h


def _checked_pattern(sparsity, n_m, cols, caller):
    """`sparsity` as a float in [0, 1) and `n_m` as None or (n, m)."""
    if n_m is not None:
        try:
            n, m = n_m
        except (TypeError, ValueError):
            n = m = None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                   for v in (n, m)) or not 0 < n < m:
            raise ValueError(f"{caller}: n_m ({n_m!r}) must be two integers "
                             "0 < n < m, n kept in every m; pass (2, 4) for "
                             "2:4.")
        if cols % m:
            raise ValueError(
                f"{caller}: {cols} input columns are not a multiple of m "
                f"({m}) of n_m ({n}, {m}); N:M groups m consecutive input "
                "columns, pick an m that divides the input size.")
        return 0.0, (int(n), int(m))
    if (isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real)
            or not 0 <= sparsity < 1):
        raise ValueError(f"{caller}: sparsity ({sparsity!r}) must be a "
                         "number in [0, 1), the fraction pruned per row; "
                         "pass e.g. 0.5.")
    return float(sparsity), None
