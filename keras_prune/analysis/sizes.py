"""Sizes and speed of saved models: what `keras-prune compare` measures.

Sizes follow tfmot's pruning tutorial: the bytes of the saved file, and of
that file zipped with DEFLATE. A `.keras` file stores every weight densely,
zeros included, so pruning shows in the zipped size, not in the file size.

Latency is the median wall time of `model.predict_on_batch` (compiled by
Keras on TensorFlow and JAX, eager on torch) after warm-up calls, on fixed
random inputs. Keras computes with dense kernels: unstructured zeros make a
model compress better, not run faster.
"""

import math
import os
import statistics
import tempfile
import time
import zipfile

import numpy as np


def file_size(path):
    """Returns the size of the file at `path` in bytes.

    Example:

    ```python
    file_size("model.keras")  # e.g. 231_530
    ```
    """
    return os.path.getsize(path)


def zipped_size(path):
    """Returns the size in bytes of `path` zipped with `ZIP_DEFLATED`.

    The zip is written to a temporary directory and removed; `path` is only
    read.

    Args:
        path: a file, e.g. a saved `.keras` model.

    Returns:
        The size of a zip archive holding that one file (tfmot's measure of
        how much the zeros of a pruned model compress).

    Example:

    ```python
    zipped_size("pruned.keras") < zipped_size("dense.keras")  # True at 90 %
    ```
    """
    with tempfile.TemporaryDirectory(prefix="keras-prune-zip-") as directory:
        archive_path = os.path.join(directory, "model.zip")
        with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, os.path.basename(path))
        return os.path.getsize(archive_path)


def sample_bytes(model):
    """Bytes of one sample of `model`'s inputs as `random_inputs` makes
    them (float64 while drawn), or None where a shape is unknown."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    total = 0
    for tensor in inputs:
        shape = tuple(tensor.shape)[1:]
        if any(d is None for d in shape):
            return None
        itemsize = max(8, np.dtype(tensor.dtype).itemsize)
        total += math.prod(shape) * itemsize
    return total


def random_inputs(model, batch_size, seed=0):
    """Fixed random inputs of `model`'s input shapes for a batch.

    Float inputs are standard normal, integer inputs (token ids) are zeros.

    Args:
        model: a built Functional or Sequential model.
        batch_size: the leading dimension.
        seed: seed of the values.

    Returns:
        One array, or a list for a model with several inputs.

    Raises:
        ValueError: if the model has no symbolic inputs (subclassed) or an
            input dimension other than the batch is unknown.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"model {model.name!r} has no symbolic inputs (a subclassed "
            "model?), so its input shape is unknown."
        )
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in inputs:
        shape = tuple(tensor.shape)[1:]
        if any(d is None for d in shape):
            raise ValueError(
                f"input {tensor.name!r} of model {model.name!r} has shape "
                f"{tuple(tensor.shape)}: a dimension besides the batch is "
                "unknown, so no input can be made up for it."
            )
        dtype = np.dtype(tensor.dtype)
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal((batch_size,) + shape).astype(dtype)
        else:
            array = np.zeros((batch_size,) + shape, dtype)
        arrays.append(array)
    return arrays[0] if len(arrays) == 1 else arrays


def latency_samples(models, inputs, repeats=20, warmup=3, progress=None):
    """Seconds of every timed `predict_on_batch` call, per model.

    The models take turns call by call, so that a slowdown of the machine
    (another process, a frequency change) hits all of them alike, and the
    order rotates from round to round (round r starts with model r mod n),
    so that going first or last in a round favours none: with a fixed order
    a model compared with itself came out 1.02-1.18x "faster" on torch.

    Args:
        models: list of Keras models.
        inputs: list of their inputs (see `random_inputs`), one per model.
        repeats: timed calls per model (> 0).
        warmup: untimed calls per model first (compilation, caches).
        progress: optional callable, called with the number of finished
            rounds: 0 once the warm-up is done (so that an estimate of the
            time left can leave out compilation), then 1 ... repeats after
            each round of timed calls.

    Returns:
        A list per model of `repeats` floats, in round order: round i of
        every model ran in the same round, so they pair up.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    for model, x in zip(models, inputs):
        for _ in range(warmup):
            model.predict_on_batch(x)
    if progress is not None:
        progress(0)
    times = [[] for _ in models]
    n = len(models)
    for done in range(1, repeats + 1):
        for k in range(n):
            i = (done - 1 + k) % n
            start = time.perf_counter()
            # predict_on_batch returns NumPy: the work has finished.
            models[i].predict_on_batch(inputs[i])
            times[i].append(time.perf_counter() - start)
        if progress is not None:
            progress(done)
    return times


def paired_ratio(a, b, confidence=0.95):
    """The median of the per-round ratios b[i] / a[i] (times of the same
    rounds), with a distribution-free confidence interval of that median.

    The interval is a pair of order statistics of the ratios, whose ranks
    come from the binomial distribution (no assumption on the timings'
    distribution); with fewer than 6 rounds it is the whole range.

    Returns:
        `(median, low, high)`.
    """
    ratios = sorted(y / x for x, y in zip(a, b))
    n = len(ratios)
    # The largest k with P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2:
    # [ratios[k - 1], ratios[n - k]] then covers the median with at least
    # `confidence`.
    tail, k, cumulative = (1 - confidence) / 2, 0, 0.0
    while k < n // 2:
        cumulative += math.comb(n, k) / 2**n
        if cumulative > tail:
            break
        k += 1
    low, high = (ratios[k - 1], ratios[n - k]) if k else (ratios[0], ratios[-1])
    return statistics.median(ratios), low, high
