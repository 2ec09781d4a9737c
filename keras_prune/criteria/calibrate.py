"""Calibration statistics: what each layer's inputs look like on data.

Criteria that need `ACTIVATIONS` (Wanda; SparseGPT) score a kernel with
statistics of the inputs its layer sees on calibration data: for every
input feature j the squared norm sum_t x_tj^2 over the calibration rows t
(Wanda's ||X_j||_2, squared), and optionally the Gram matrix X^T X
(SparseGPT's Hessian, up to a factor 2).

They are collected inside the pruning wrappers of a pruned *copy*: the
wrapper of each measured layer hands its input to an observer
(`PruneLowMagnitude.set_input_observer`) during an eager forward pass over
the calibration batches, so layers that custom blocks call from their own
`call` (keras-hub's transformer layers) are measured too, and the user's
model is never run, hooked or modified. The batches are run with
`training=False`; the observers are removed afterwards, even on error.

Supported layers: `Dense` and `EinsumDense`. Their input features are the
kernel axes contracted with the input: Dense `(in, out)` -> axis 0;
EinsumDense "abc,cde->abde" -> c; "abcd,cde->abe" -> c and d (flattened in
the kernel's order, row-major). Every other input axis (batch, sequence)
counts as calibration rows ("tokens"). Convolutions are not measured (their
features would need im2col patches): a calibration criterion leaves them,
and embeddings, dense.

Memory per layer (F = input features, the product of the contracted kernel
axes): the squared norms F x 8 bytes; the Gram matrix, when asked for,
F^2 x 8 bytes (float64: sums over many tokens of values that differ by
orders of magnitude; 4096 features -> 128 MiB). One batch's inputs are
converted to a float64 NumPy array of rows x F at a time.

Keras's own GPTQ (`keras.src.quantizers.gptq_core.stream_hessians`) is
not reused: it lives in private modules, replaces `layer.call` on the
model it is given, keeps a float32 Hessian scaled by 2/N, and finds an
EinsumDense kernel's input axis by guessing from the largest dimension,
which is wrong when heads x head_dim exceeds the hidden size. Its config
takes a dataset and a tokenizer; ours takes tokenized arrays, like `fit`.
"""

import collections.abc
import string

import keras
import numpy as np
from keras import ops

from keras_prune import backend

SUPPORTED = (keras.layers.Dense, keras.layers.EinsumDense)


class FeatureLayout:
    """How a layer's input meets its kernel.

    Attributes:
        equation: the layer's product as a NumPy einsum equation
            (`np.einsum(equation, inputs, kernel)`; Dense: "...a,ab->...b").
        feature_axes: the kernel axes contracted with the input, in order.
        feature_shape: their sizes; `features` their product (F).
        kernel_shape: the kernel's shape.
    """

    def __init__(self, layer, kernel):
        if isinstance(layer, keras.layers.EinsumDense):
            self.equation = layer.equation
        elif isinstance(layer, keras.layers.Dense):
            self.equation = "...a,ab->...b"
        else:
            raise ValueError(
                f"calibration statistics measure Dense and EinsumDense "
                f"layers; {layer.name!r} is a {type(layer).__name__}."
            )
        inputs, rest = self.equation.split(",")
        self._inputs, (self._kernel, output) = inputs, rest.split("->")
        shared = [c for c in self._kernel if c in inputs and c in output]
        if shared:
            raise ValueError(
                f"EinsumDense {layer.name!r} ({self.equation!r}) keeps kernel "
                f"axis {shared[0]!r} in its output: calibration statistics "
                "support kernels whose input axes are all contracted."
            )
        self.kernel_shape = tuple(int(d) for d in kernel.shape)
        self.feature_axes = tuple(
            i for i, c in enumerate(self._kernel) if c in inputs
        )
        self.feature_shape = tuple(
            self.kernel_shape[i] for i in self.feature_axes
        )
        self.features = int(np.prod(self.feature_shape, dtype=np.int64))

    def rows(self, inputs):
        """The input as a float64 `(rows, F)` array: feature axes last, in
        the kernel's order; every other axis flattened into rows."""
        x = np.asarray(inputs)
        spec = self._inputs
        if "..." in spec:
            free = [c for c in string.ascii_letters if c not in self.equation]
            spec = spec.replace("...", "".join(free[: x.ndim - len(spec) + 3]))
        order = [spec.index(self._kernel[i]) for i in self.feature_axes]
        others = [i for i in range(x.ndim) if i not in order]
        x = np.transpose(x, others + order)
        return x.reshape(-1, self.features).astype(np.float64, copy=False)

    def broadcast(self, per_feature):
        """A `(F,)` array reshaped to broadcast against the kernel."""
        shape = [1] * len(self.kernel_shape)
        for axis, size in zip(self.feature_axes, self.feature_shape):
            shape[axis] = size
        return np.reshape(per_feature, shape)

    def as_rows(self, kernel):
        """The kernel as a `(outputs, F)` matrix: one row per output, its
        columns in the order of the Gram matrix (what SparseGPT solves)."""
        outputs = [a for a in range(len(self.kernel_shape))
                   if a not in self.feature_axes]
        moved = np.transpose(kernel, outputs + list(self.feature_axes))
        return moved.reshape(-1, self.features)

    def from_rows(self, matrix):
        """Inverse of `as_rows`: a `(outputs, F)` matrix in kernel shape."""
        outputs = [a for a in range(len(self.kernel_shape))
                   if a not in self.feature_axes]
        order = outputs + list(self.feature_axes)
        moved = np.reshape(matrix, [self.kernel_shape[a] for a in order])
        return np.transpose(moved, np.argsort(order))


class InputStatistics:
    """Statistics of one layer's inputs on the calibration data.

    Attributes:
        path: the path of the layer's kernel (the key in
            `CalibrationStatistics`).
        layout: the layer's `FeatureLayout`.
        rows: how many input rows (samples x tokens) were summed.
        squared_norms: `(F,)` float64, sum over rows of x_j^2.
        gram: `(F, F)` float64 X^T X, or None when not collected.
    """

    def __init__(self, layer, kernel, gram=False):
        self.path = kernel.path
        self.layout = FeatureLayout(layer, kernel)
        features = self.layout.features
        self.rows = 0
        self.squared_norms = np.zeros(features, dtype=np.float64)
        self.gram = np.zeros((features, features)) if gram else None

    def update(self, inputs):
        """Adds one batch of the layer's inputs (any backend's tensor)."""
        x = self.layout.rows(ops.convert_to_numpy(inputs))
        self.rows += x.shape[0]
        self.squared_norms += np.einsum("ij,ij->j", x, x)
        if self.gram is not None:
            self.gram += x.T @ x

    def norms(self):
        """||X_j||_2 per input feature, shaped to broadcast against the
        kernel (float64)."""
        return self.layout.broadcast(np.sqrt(self.squared_norms))

    @property
    def nbytes(self):
        """Bytes the statistics hold."""
        extra = 0 if self.gram is None else self.gram.nbytes
        return self.squared_norms.nbytes + extra

    def __repr__(self):
        return (f"InputStatistics({self.path!r}, features={self.layout.features}"
                f", rows={self.rows}, gram={self.gram is not None})")


class CalibrationStatistics(collections.abc.Mapping):
    """Kernel path -> `InputStatistics`, for every measured layer.

    Attributes:
        batches: how many calibration batches were run.
        samples: how many samples (the batches' first dimension) in all.
    """

    def __init__(self, statistics=(), batches=0, samples=0):
        self._by_path = {s.path: s for s in statistics}
        self.batches = batches
        self.samples = samples

    def __getitem__(self, key):
        path = key if isinstance(key, str) else key.path
        return self._by_path[path]

    def __iter__(self):
        return iter(self._by_path)

    def __len__(self):
        return len(self._by_path)

    @property
    def nbytes(self):
        """Bytes all the statistics hold together."""
        return sum(s.nbytes for s in self._by_path.values())

    def __str__(self):
        lines = [
            f"Calibration statistics: {len(self)} layers, {self.samples:,} "
            f"samples in {self.batches} batches, {self.nbytes:,} bytes"
        ]
        for s in self._by_path.values():
            gram = ", Gram" if s.gram is not None else ""
            lines.append(f"  {s.path}: {s.layout.features} features, "
                         f"{s.rows:,} rows{gram}")
        return "\n".join(lines)


def measured(wrappers):
    """The wrappers (of a pruned model) whose layer statistics describe."""
    return [w for w in wrappers if isinstance(w.layer, SUPPORTED)]


def run_observed(model, batches, observers):
    """Runs `model` eagerly on every batch, `observers[wrapper](inputs)`
    seeing each wrapper's input; removes the observers afterwards.

    `observers`: a list of `(wrapper, fn)`; a wrapper is anything with
    `set_input_observer` (`PruneLowMagnitude`).
    """
    try:
        for wrapper, fn in observers:
            wrapper.set_input_observer(fn)
        with backend.no_gradients():
            for batch in batches:
                model(batch, training=False)
    finally:
        for wrapper, _ in observers:
            wrapper.set_input_observer(None)


def collect(model, batches, wrappers, gram=False):
    """`CalibrationStatistics` of the layers of `wrappers` inside `model`.

    Args:
        model: the pruned copy holding the wrappers (run, not modified).
        batches: a list of checked input batches (`calibration_batches`).
        wrappers: the `PruneLowMagnitude` wrappers of Dense/EinsumDense
            layers to measure.
        gram: also accumulate each layer's X^T X (float64, F^2 x 8 bytes).
    """
    found = [
        InputStatistics(w.layer, w.prunable_weights[0], gram) for w in wrappers
    ]
    run_observed(model, batches, [(w, s.update) for w, s in zip(wrappers, found)])
    for wrapper, statistics in zip(wrappers, found):
        if statistics.rows == 0:
            raise ValueError(
                f"layer {wrapper.layer.name!r} received no calibration input: "
                "the model does not call it on its inputs. Exclude it "
                f"(exclude=[{wrapper.layer.name!r}])."
            )
    samples = sum(_length(batch) for batch in batches)
    return CalibrationStatistics(found, len(batches), samples)


# ---- calibration data ----------------------------------------------------------


def calibration_batches(data, model, batch_size=32):
    """The calibration data as a list of checked input batches.

    Args:
        data: the model's inputs only (no labels): an array (a dict of
            arrays for models with named inputs, e.g. a keras-hub backbone's
            `{"token_ids", "padding_mask"}`), split into batches of
            `batch_size`; or an iterable (list, generator, `tf.data`) of
            such batches. Held in memory: statistics and the
            reconstruction report run over it twice.
        model: the model it is for: its inputs' names, shapes and dtypes
            are checked when it declares them.
        batch_size: the batch size for arrays.

    Raises:
        ValueError: one line naming the value and what the model expects,
            for empty data or a batch of the wrong shape or dtype.
    """
    if isinstance(data, (dict, np.ndarray)) or ops.is_tensor(data):
        data = _numpy(data)
        n = _length(data)
        batches = [
            keras.tree.map_structure(lambda x: x[i : i + batch_size], data)
            for i in range(0, n, batch_size)
        ]
    elif isinstance(data, collections.abc.Iterable) and not isinstance(
            data, (str, bytes)):
        batches = [_numpy(batch) for batch in data]
    else:
        raise ValueError(
            "calibration_data must be the model's inputs (an array, a dict "
            "of arrays, or an iterable of such batches), got "
            f"{type(data).__name__}."
        )
    if not batches or any(_length(b) == 0 for b in batches):
        raise ValueError(
            "calibration_data is empty: give at least one sample of the "
            "model's inputs."
        )
    expected = _expected_inputs(model)
    for i, batch in enumerate(batches):
        _check_batch(i, batch, expected)
    return batches


def _numpy(data):
    if isinstance(data, (tuple, list)):
        raise ValueError(
            f"calibration_data: a batch is a {type(data).__name__}; give the "
            "model's inputs only (no labels): an array, or a dict of arrays "
            "by input name."
        )
    if isinstance(data, dict):
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in data.items()}
    return np.asarray(ops.convert_to_numpy(data))


def _length(batch):
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch
    return int(first.shape[0]) if np.ndim(first) else 0


def _expected_inputs(model):
    """`{name: (shape, dtype)}` of the model's inputs; None when it
    declares none (a subclassed model) or several without names."""
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a subclassed model
        return None
    if isinstance(inputs, dict):
        return {k: (tuple(t.shape), t.dtype) for k, t in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return None
    return {None: (tuple(inputs.shape), inputs.dtype)}


def _check_batch(i, batch, expected):
    if expected is None:
        return
    if None in expected:
        if isinstance(batch, dict):
            raise ValueError(
                f"calibration_data: batch {i} is a dict ({sorted(batch)}); "
                "the model takes one array input."
            )
        return _check_array(i, "", batch, *expected[None])
    if not isinstance(batch, dict) or set(batch) != set(expected):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"calibration_data: batch {i} is {got}; the model takes a dict "
            f"of {sorted(expected)}."
        )
    for name, (shape, dtype) in expected.items():
        _check_array(i, f" {name!r}", batch[name], shape, dtype)


def _check_array(i, name, value, shape, dtype):
    fits = value.ndim == len(shape) and all(
        d is None or d == v for d, v in zip(shape[1:], value.shape[1:])
    )
    if not fits:
        raise ValueError(
            f"calibration_data: batch {i}{name} has shape {value.shape}; the "
            f"model expects {shape} (inputs only, no labels)."
        )
    integer = "int" in str(dtype) or "bool" in str(dtype)
    if value.dtype.kind not in ("iub" if integer else "iubf"):
        raise ValueError(
            f"calibration_data: batch {i}{name} has dtype {value.dtype}; the "
            f"model expects {dtype}."
        )
