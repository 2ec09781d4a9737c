"""Scores + target sparsity -> masks.

Masks are computed on the host with NumPy, only at schedule steps, by O(n)
selection (`np.partition`), never a full sort: measured 4 ms for 1 M weights
vs 115-284 ms for a sort (DESIGN.md, decision 4). `keras.ops.argpartition`
and `keras.ops.quantile` are avoided on purpose: the first casts floats to
int32 on TF and torch, the second fails above 2**24 elements on torch.
"""

import numpy as np


def num_pruned(size, sparsity):
    """How many of `size` weights a target `sparsity` removes.

    `round(size * sparsity)` (half to even), capped so that at least one
    weight survives, as in tfmot.
    """
    if size == 0:
        return 0
    return min(int(round(size * float(sparsity))), size - 1)


def magnitude_mask(scores, sparsity):
    """Keep-mask that prunes exactly `num_pruned(n, sparsity)` weights.

    The weights with the smallest scores are pruned. Ties at the threshold are
    broken deterministically: among equal scores, the one with the lower flat
    (row-major) index is pruned first.

    Args:
        scores: array of non-negative importance scores (e.g. `|w|`).
        sparsity: fraction in [0, 1) of the entries to prune.

    Returns:
        `(mask, threshold)`: a bool array of `scores.shape` (True = kept) and
        the largest pruned score (0.0 when nothing is pruned).

    Example:

    >>> mask, t = magnitude_mask(np.array([0.3, 0.1, 0.2, 0.1]), 0.5)
    >>> mask.tolist(), float(t)
    ([True, False, True, False], 0.1)
    """
    scores = np.asarray(scores)
    flat = scores.reshape(-1)
    k = num_pruned(flat.size, sparsity)
    if k == 0:
        return np.ones(scores.shape, dtype=bool), 0.0
    keep, threshold = prune_smallest(flat, k)
    return keep.reshape(scores.shape), threshold


def prune_smallest(flat, k):
    """Keep-mask of 1-D `flat` with its `k` smallest entries pruned.

    Among equal values the lower index is pruned first. Returns `(keep,
    threshold)`, threshold = the largest pruned value (0.0 when k == 0).
    """
    if k <= 0:
        return np.ones(flat.shape, dtype=bool), 0.0
    threshold = _kth_smallest(flat, k)
    keep = flat > threshold
    below = 0 if threshold == 0 else int(np.count_nonzero(flat < threshold))
    ties_pruned = k - below
    if ties_pruned < int(np.count_nonzero(flat == threshold)):
        # Keep the ties after the last pruned one. Located chunk by chunk:
        # at a threshold of 0 (a kernel pruned before) the ties are most of
        # the weights, and their index list cost 6 ms at 4 M.
        last = _tie_position(flat, threshold, ties_pruned) + 1
        np.greater_equal(flat[last:], threshold, out=keep[last:])
    return keep, float(threshold)


def _kth_smallest(flat, k):
    """The k-th smallest (1-based) of non-negative `flat`, in O(n).

    Exact zeros are counted first: `np.partition` degenerates when a large
    block of equal values lies below the k-th element, which is what a
    kernel pruned at the previous update holds (measured at 4 M weights with
    80-90 % zeros: 105-176 ms instead of 1-5 ms with the shortcut).
    """
    is_zero = flat == 0
    zeros = int(np.count_nonzero(is_zero))
    if zeros >= k:  # the k smallest are all zeros
        return flat.dtype.type(0)
    if zeros:
        # np.compress: ~3 ms at 4 M weights, boolean indexing ~18 ms.
        nonzero = np.compress(~is_zero, flat)
        return np.partition(nonzero, k - zeros - 1)[k - zeros - 1]
    return np.partition(flat, k - 1)[k - 1]


def row_mask(scores, sparsity, axes):
    """Keep-mask pruning `num_pruned(row size, sparsity)` in every row.

    A row is one output of the layer: the scores along the input `axes`
    (every other axis indexes the rows), so each output keeps the same
    number of its inputs (Wanda's per-output comparison). O(n): each row's
    k-th score by `np.partition`; among ties the lower index (row-major
    over `axes`) is pruned first, as in `magnitude_mask`.

    Returns:
        `(mask, threshold)`, threshold = the largest pruned score.

    Example:

    >>> w = np.array([[0.1, 5.0], [0.2, 6.0], [0.3, 0.0], [0.4, 1.0]])
    >>> row_mask(w, 0.5, (0,))[0].astype(int).tolist()
    [[0, 1], [0, 1], [1, 0], [1, 0]]
    """
    scores = np.asarray(scores)
    axes = tuple(a % scores.ndim for a in axes)
    others = tuple(a for a in range(scores.ndim) if a not in axes)
    moved = np.transpose(scores, others + axes)
    rows = moved.reshape(-1, int(np.prod([scores.shape[a] for a in axes])))
    k = num_pruned(rows.shape[1], sparsity)
    if k == 0:
        return np.ones(scores.shape, dtype=bool), 0.0
    kth = np.partition(rows, k - 1, axis=1)[:, k - 1 : k]
    keep = rows > kth
    # Rows with more than k scores <= their k-th have ties at it: of those,
    # prune the first (k - below) and keep the rest. Only these rows (few,
    # outside masks pruned before) pay for it: 1.3 s -> 0.3 s at 4096^2.
    tied_rows = np.flatnonzero(rows.shape[1] - np.count_nonzero(keep, 1) > k)
    if tied_rows.size:
        sub, cut = rows[tied_rows], kth[tied_rows]
        tied = sub == cut
        ties_pruned = k - np.count_nonzero(sub < cut, axis=1, keepdims=True)
        keep[tied_rows] |= tied & (np.cumsum(tied, axis=1) > ties_pruned)
    keep = keep.reshape(moved.shape)
    keep = np.transpose(keep, np.argsort(others + axes))
    return keep, float(kth.max())


# ---- block sparsity -----------------------------------------------------------


def matrix_view(shape):
    """The 2-D view block sparsity works on: `(-1, shape[-1])`.

    A Dense kernel `(in, out)` is itself; a Conv kernel `(..., in, out)`
    becomes `(kernel positions * in, out)`, so a block never mixes output
    channels of different rows and `(1, 4)` blocks are four consecutive
    output channels of one input row.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        return (1, int(np.prod(shape, dtype=np.int64)))
    return (int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1]))


def block_mask(scores, sparsity, block_size, pooling="AVG"):
    """Keep-mask pruning whole blocks of the matrix view of `scores`.

    Blocks tile the view from (0, 0); where a dimension does not divide by
    the block, the last block of that row/column is partial and is scored
    over the weights it really covers (tfmot pads and misaligns them). The
    number of pruned blocks is exactly `num_pruned(blocks, sparsity)`; ties
    between block scores prune the lower block index (row-major) first.

    Args:
        scores: array of non-negative scores (e.g. `|w|`), any rank >= 1.
        sparsity: fraction in [0, 1) of the blocks to prune.
        block_size: `(rows, cols)` of a block in the matrix view.
        pooling: "AVG" (mean score of a block) or "MAX".

    Returns:
        `(mask, threshold)`: bool array of `scores.shape`, True = kept, and
        the largest pruned block score.

    Example:

    >>> w = np.array([[1., 2., 0.1, 0.2], [3., 4., 0.3, 0.1]])
    >>> block_mask(w, 0.5, (1, 2))[0].astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    scores = np.asarray(scores)
    view = scores.reshape(matrix_view(scores.shape))
    (rows, cols), (bh, bw) = view.shape, block_size
    nh, nw = -(-rows // bh), -(-cols // bw)
    padded = np.full((nh * bh, nw * bw), np.nan, dtype=np.float64)
    padded[:rows, :cols] = view
    blocks = padded.reshape(nh, bh, nw, bw)
    pool = np.nanmax if pooling == "MAX" else np.nanmean
    block_scores = pool(blocks, axis=(1, 3))
    keep_blocks, threshold = magnitude_mask(block_scores, sparsity)
    keep = np.repeat(np.repeat(keep_blocks, bh, axis=0), bw, axis=1)
    return keep[:rows, :cols].reshape(scores.shape), threshold


# ---- N:M sparsity ---------------------------------------------------------------


def n_m_mask(scores, m_by_n, sparsity=None, axis=-2):
    """Keep-mask with at least m zeros in every n consecutive weights.

    `m_by_n = (m, n)` as in tfmot's `sparsity_m_by_n`: `(2, 4)` prunes 2 of
    every 4 consecutive weights along `axis` (the input dimension), the
    pattern sparse tensor cores run ("2:4"). In each group the `m`
    smallest scores are the candidates (lower index first among ties).

    Gradual N:M: with `sparsity` below `m / n`, only the
    `num_pruned(size, sparsity)` smallest candidates are pruned, so masks
    grow into the pattern as a schedule ramps up; at `sparsity >= m / n` (or
    None) every candidate is pruned and the pattern is exact.

    When the axis length is not a multiple of `n`, the last group is partial
    and is treated as padded with zeros (tfmot's rule): a partial group of
    `r` weights keeps at most `min(r, n - m)`.

    Returns:
        `(mask, threshold)`, threshold = the largest pruned score.

    Example:

    >>> w = np.array([[0.1], [0.4], [0.3], [0.2]])
    >>> n_m_mask(w, (2, 4), axis=0)[0].ravel().tolist()
    [False, True, True, False]
    """
    m, n = m_by_n
    scores = np.asarray(scores)
    moved = np.moveaxis(scores, axis, -1)
    length = moved.shape[-1]
    rows = moved.reshape(-1, length)
    pad = -length % n
    # Padding scores -inf: the pad entries are the first candidates of the
    # partial group, so they take its zero slots.
    padded = np.pad(
        rows.astype(np.float64), ((0, 0), (0, pad)), constant_values=-np.inf
    )
    groups = padded.reshape(rows.shape[0], -1, n)
    order = np.argsort(groups, axis=-1, kind="stable")[..., :m]
    candidate = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(candidate, order, True, axis=-1)
    candidate = candidate.reshape(rows.shape[0], -1)[:, :length]
    flat_candidates = np.flatnonzero(candidate)
    flat_scores = rows.reshape(-1)
    keep = np.ones(rows.size, dtype=bool)
    k = len(flat_candidates)
    if sparsity is not None:
        k = min(k, num_pruned(rows.size, sparsity))
    chosen, _ = prune_smallest(flat_scores[flat_candidates], k)
    pruned = flat_candidates[~chosen]
    keep[pruned] = False
    threshold = float(flat_scores[pruned].max()) if len(pruned) else 0.0
    keep = np.moveaxis(keep.reshape(moved.shape), -1, axis)
    return keep, threshold


def n_m_violations(values, m_by_n, axis=-2):
    """Groups of `values` (along `axis`) holding fewer than m exact zeros.

    Partial last groups count as padded with zeros, as `n_m_mask` prunes
    them. Returns a list of `(group index tuple, non-zeros in the group)`;
    the index is the position of the group in the array with `axis` moved
    last and divided into groups of n.
    """
    m, n = m_by_n
    moved = np.moveaxis(np.asarray(values), axis, -1)
    length = moved.shape[-1]
    pad = -length % n
    padded = np.pad(
        moved != 0, [(0, 0)] * (moved.ndim - 1) + [(0, pad)]
    )
    nonzero = padded.reshape(moved.shape[:-1] + (-1, n)).sum(-1)
    bad = np.argwhere(nonzero > n - m)
    return [
        (tuple(int(i) for i in index), int(nonzero[tuple(index)]))
        for index in bad
    ]


# ---- global threshold ---------------------------------------------------------------

# Pass 1 of `global_masks` samples about this many scores (a fixed stride).
_SAMPLE = 1 << 20
# Half-width of the bracket around the sample's estimate of the k-th score:
# this many binomial standard deviations of its rank in the sample, plus
# 1/1024 of the sample, plus 2.
_BRACKET_SD = 6.0
# Pass 2 gathers at most max(this, n / 16) candidates (12 bytes each).
_CANDIDATES = 1 << 20
# `_tie_position` scans a tensor in chunks of this many scores.
_CHUNK = 1 << 20


def global_masks(score_fns, sizes, sparsity):
    """One magnitude threshold across several tensors; exact total count.

    Prunes exactly `k = num_pruned(sum(sizes), sparsity)` entries over all
    the tensors together: the smallest scores, ties pruned in order (tensor
    order, then flat index), which is what a stable sort of all the scores
    concatenated would prune, but in O(n) and without holding the scores
    together: two passes over the tensors, one tensor at a time, each
    calling its score function again.

    1. Count the exact zeros and take a strided sample of the other scores
       (about `_SAMPLE` in all). When the zeros alone reach k, the threshold
       is 0 and one pass sets the masks (`_masks_at`): no selection at all.
       Otherwise the sample brackets the k-th score: `0 < lo <= hi`, 6
       standard deviations of its sample rank either side (`_bracket`).
    2. Keep the scores above `hi`, count those below `lo`, and gather the
       flat indices and values of the candidates in `[lo, hi]` (0.3-0.7 %
       of 100 M normal weights); the k-th is `np.partition`ed among them
       and the ties at it are broken by index (`_select_candidates`).

    If the bracket misses (a sample unlike the tensors, e.g. a layout
    periodic with the stride), the counts of pass 2 tell on which side the
    k-th lies; `_fallback` gathers the scores of that side, partitions them
    and sets the masks: two more passes, still exact.

    Memory: the masks (1 byte per score), one tensor's scores and
    temporaries, the sample (4 bytes a value) and the candidates (12 bytes
    each, at most `max(2**20, n / 16)` of them); the fallback adds at most
    the float32 scores of one side of the bracket (<= 1x the scores).

    Args:
        score_fns: one callable per tensor returning its (non-negative)
            scores as an array of any shape, compared as float32. Each array
            is only read, and not kept after the next call, so a callable
            may return a view, or reuse one buffer.
        sizes: the number of scores of each tensor.
        sparsity: fraction in [0, 1) of all entries to prune.

    Returns:
        `(masks, threshold)`: one bool keep-mask per tensor (of its scores'
        shape), and the global threshold (the largest pruned score).
    """
    total = int(sum(sizes))
    k = num_pruned(total, sparsity)
    if k == 0:
        return [np.ones(np.shape(fn()), dtype=bool) for fn in score_fns], 0.0
    zeros, sample = _zeros_and_sample(score_fns, max(1, total // _SAMPLE))
    zero_total = sum(zeros)
    if zero_total >= k:  # threshold 0: the first k zeros are pruned
        return _masks_at(score_fns, np.float32(0), k, ties=zeros), 0.0
    lo, hi = _bracket(sample, k - zero_total, total - zero_total)
    del sample
    cap = max(_CANDIDATES, total // 16)
    masks, below, count, candidates = _bracket_pass(score_fns, lo, hi, cap)
    if candidates is not None and below < k <= below + count:
        threshold = _select_candidates(masks, candidates, k, below)
        return masks, float(threshold)
    del masks, candidates  # the bracket missed or held too many
    return _fallback(score_fns, total, k, zero_total, (lo, hi), below, count)


def _flat_scores(fn):
    """`(scores as float32, their flat view)` of one score function."""
    scores = np.asarray(fn(), dtype=np.float32)
    return scores, scores.reshape(-1)


def _zeros_and_sample(score_fns, stride):
    """Pass 1: exact zeros per tensor, and every `stride`-th positive score.

    The sample positions are global (a multiple of `stride` in the scores
    concatenated), so tensor boundaries do not bias it.
    """
    zeros, samples, offset = [], [], 0
    for fn in score_fns:
        _, flat = _flat_scores(fn)
        # `== 0` then a count of bools: 2x faster than counting the floats.
        zeros.append(int(np.count_nonzero(flat == 0)))
        part = flat[-offset % stride :: stride]
        samples.append(part[part > 0])  # a copy: no reference to `flat` kept
        offset += flat.size
    return zeros, np.concatenate(samples)


def _bracket(sample, rank, nonzero):
    """`(lo, hi)` holding the `rank`-th smallest of `nonzero` positive scores.

    From the sorted sample's values either side of the estimated rank;
    `lo` > 0, so that every zero counts as below it; `hi` may be inf.
    """
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    m = sample.size
    if m == 0:
        return tiny, np.float32(np.inf)
    q = min(rank / nonzero, 1.0)
    center = q * m
    half = _BRACKET_SD * np.sqrt(m * q * (1 - q)) + m / 1024 + 2
    i_lo, i_hi = int(np.floor(center - half)), int(np.ceil(center + half))
    kth = [i for i in (i_lo, i_hi) if 0 <= i < m]
    if kth:
        sample.partition(kth)
    lo = sample[i_lo] if i_lo >= 0 else tiny
    hi = sample[i_hi] if i_hi < m else np.float32(np.inf)
    return max(np.float32(lo), tiny), np.float32(hi)


def _bracket_pass(score_fns, lo, hi, cap):
    """Pass 2: `(masks, below, count, candidates)` for the bracket `[lo, hi]`.

    `masks`: `scores > hi` per tensor; `below`: how many scores are below
    `lo` (every zero among them); `count`: how many lie in `[lo, hi]`;
    `candidates`: per tensor `(flat indices, values)` of those, or None
    once there are more than `cap` of them (only counted from then on).
    """
    masks, candidates, below, count = [], [], 0, 0
    for fn in score_fns:
        scores, flat = _flat_scores(fn)
        keep = flat > hi
        below += int(np.count_nonzero(flat < lo))
        inside = flat >= lo
        inside ^= keep  # keep implies inside: what is left is lo <= s <= hi
        if candidates is None:
            count += int(np.count_nonzero(inside))
        else:
            indices = np.flatnonzero(inside)
            count += indices.size
            candidates.append((indices, flat[indices]))
            if count > cap:
                candidates = None
        masks.append(keep.reshape(scores.shape))
    return masks, below, count, candidates


def _select_candidates(masks, candidates, k, below):
    """The k-th smallest score among the candidates; completes the masks.

    `below` scores are smaller than every candidate. Candidates above the
    threshold are kept; of those equal to it, the first `k - below - (the
    candidates below it)` in (tensor, flat index) order are pruned and the
    rest kept. Returns the threshold.
    """
    pooled = np.concatenate([values for _, values in candidates])
    rank = k - below - 1
    pooled.partition(rank)
    threshold = pooled[rank]
    ties_left = k - below - int(np.count_nonzero(pooled < threshold))
    del pooled
    for keep, (indices, values) in zip(masks, candidates):
        flat = keep.reshape(-1)
        flat[indices[values > threshold]] = True
        tied = indices[values == threshold]
        flat[tied[ties_left:]] = True
        ties_left = max(ties_left - tied.size, 0)
    return threshold


def _fallback(score_fns, total, k, zeros, bracket, below, count):
    """Exact selection when the bracket `(lo, hi)` missed the k-th score.

    With the counts of pass 2 (`below` lo, `count` in the bracket), the
    scores of the side holding the k-th (or of the bracket itself, when it
    held too many candidates) are gathered with `np.compress` into one
    buffer (NaNs go with those above `hi`: `np.partition` sorts them last,
    as the selection always did), partitioned, and `_masks_at` sets the
    masks: two more passes.
    """
    lo, hi = bracket
    if k <= below:  # in (0, lo)
        size, smaller = below - zeros, zeros

        def select(s):
            return (s < lo) & (s != 0)

    elif k <= below + count:  # in [lo, hi]
        size, smaller = count, below

        def select(s):
            return (s >= lo) & (s <= hi)

    else:  # above hi, and NaNs
        size, smaller = total - below - count, below + count

        def select(s):
            return ~(s <= hi)

    gathered = np.empty(size, dtype=np.float32)
    filled = 0
    for fn in score_fns:
        _, flat = _flat_scores(fn)
        part = np.compress(select(flat), flat)
        gathered[filled : filled + part.size] = part
        filled += part.size
    rank = k - smaller - 1
    gathered = gathered[:filled]
    gathered.partition(rank)
    threshold = gathered[rank]
    ties_left = k - smaller - int(np.count_nonzero(gathered < threshold))
    del gathered
    return _masks_at(score_fns, threshold, ties_left), float(threshold)


def _masks_at(score_fns, threshold, ties_left, ties=None):
    """Keep-masks at `threshold`: the first `ties_left` ties are pruned.

    One pass: `scores > threshold` in the tensors whose ties are all
    pruned, `scores >= threshold` after the last pruned tie, and the tensor
    holding it is split at that tie (`_tie_position`). `ties`: the count
    of ties per tensor when known (the zeros of pass 1).
    """
    masks = []
    for i, fn in enumerate(score_fns):
        scores, flat = _flat_scores(fn)
        tied = (
            ties[i] if ties is not None
            else int(np.count_nonzero(flat == threshold))
        )
        if ties_left >= tied:  # every tie of this tensor is pruned
            keep = flat > threshold
            ties_left -= tied
        elif ties_left == 0:  # every tie of this tensor is kept
            keep = flat >= threshold
        else:
            keep = flat > threshold
            last = _tie_position(flat, threshold, ties_left) + 1
            np.greater_equal(flat[last:], threshold, out=keep[last:])
            ties_left = 0
        masks.append(keep.reshape(scores.shape))
    return masks


def _tie_position(flat, value, nth):
    """Flat index of the `nth` (1-based) entry equal to `value`.

    Chunk by chunk, so that the indices of many ties (a threshold of 0 in
    weights mostly pruned already) are never held at once.
    """
    for start in range(0, flat.size, _CHUNK):
        hits = np.flatnonzero(flat[start : start + _CHUNK] == value)
        if nth <= hits.size:
            return start + int(hits[nth - 1])
        nth -= hits.size
    raise ValueError(f"fewer than {nth} more entries equal {value}")
