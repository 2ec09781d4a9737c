"""`compare_models`: what pruning bought, models side by side.

For each model: its parameters and non-zero parameters (`SparsityReport`),
the bytes of its `.keras` file and of that file zipped with DEFLATE
(tfmot's measure: a `.keras` file stores zeros densely, so pruning shows in
the zipped size), the optimizer state the file holds, the median latency of
`predict_on_batch` (`keras_prune.analysis.sizes`) and, with data, its
accuracy. `keras-prune compare` prints this comparison.
"""

import dataclasses
import json
import math
import os
import statistics
import string
import tempfile

import keras
import numpy as np

from keras_prune import datasets
from keras_prune.analysis.report import SparsityReport
from keras_prune.analysis import sizes

# Batch size of the accuracy evaluation (only speed depends on it).
EVALUATION_BATCH = 256
# Timed calls per model and batch size at most: the median settles within a
# few hundred, and more only makes a typo run for days.
MAX_REPEATS = 10_000
# The random inputs of one timed batch, per model, at most (bytes).
MAX_INPUT_BYTES = 2**30


class DataMismatchError(ValueError):
    """Data a model cannot take, or cannot be scored on.

    Attributes:
        reason: which model, what it takes and what the data holds, without
            the fix (callers with other options phrase their own).
    """

    def __init__(self, reason):
        super().__init__(
            f"{reason} Pass data made for the model, or leave data out to "
            "compare the rest."
        )
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ComparedModel:
    """What `compare_models` measured for one model.

    Attributes:
        label: how the table names it (the file's name, or the model's).
        path: the file measured when it was given (`None` for a model saved
            to a temporary file for measuring).
        model: the model's name.
        params: every weight value of the model (not the masks or counters
            of pruning wrappers).
        nonzero_params: those that are not zero.
        prunable_sparsity: `SparsityReport.prunable_sparsity`.
        file_bytes: the size of the `.keras` file.
        zipped_bytes: the size of that file zipped with `ZIP_DEFLATED`.
        optimizer_values: the optimizer state saved in the file (values).
        latency_s: batch size -> median seconds per `predict_on_batch` call,
            or None when not measured.
        accuracy: the share of samples whose highest output is the label,
            or None without data.
    """

    label: str
    path: str | None
    model: str
    params: int
    nonzero_params: int
    prunable_sparsity: float
    file_bytes: int
    zipped_bytes: int
    optimizer_values: int
    latency_s: dict | None = None
    accuracy: float | None = None

    def to_dict(self):
        """JSON-able plain types (latency keyed by the batch size as text)."""
        return {
            "path": self.path,
            "model": self.model,
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "prunable_sparsity": self.prunable_sparsity,
            "file_bytes": self.file_bytes,
            "zipped_bytes": self.zipped_bytes,
            "optimizer_values": self.optimizer_values,
            "latency_s": None if self.latency_s is None else {
                str(batch): seconds for batch, seconds in self.latency_s.items()
            },
            "accuracy": self.accuracy,
        }


class ModelComparison:
    """The result of `compare_models`: models side by side.

    Attributes:
        models: a tuple of `ComparedModel`, in the order given; the first
            is the one the others are compared with.
        backend: the Keras backend that ran the models.
        latency: how latency was measured (`method`, `unit`, `statistic`,
            `warmup`, `repeats`, `batch_sizes`, and `skipped`: why it was
            not measured, or None), or None when it was not asked for.
        data: the data accuracy was measured on (`name`, or None for
            arrays, and `test_samples`), or None.

    Renderings: `summary()` / `str()` (a table: one column per model, then
    one per later model against the first), `to_dict()`, `to_json()`.
    """

    def __init__(self, models, backend, latency=None, data=None):
        self.models = tuple(models)
        self.backend = backend
        self.latency = latency
        self.data = data

    def __getitem__(self, index):
        return self.models[index]

    def __iter__(self):
        return iter(self.models)

    def __len__(self):
        return len(self.models)

    def to_dict(self):
        """JSON-able: `backend`, one key per model (`"a"`, `"b"`, ... in
        order, each `ComparedModel.to_dict()`), `latency` and `data`."""
        result = {"backend": self.backend}
        for key, entry in zip(string.ascii_lowercase, self.models):
            result[key] = entry.to_dict()
        result["latency"] = None if self.latency is None else dict(self.latency)
        result["data"] = None if self.data is None else dict(self.data)
        return result

    def to_json(self, indent=2):
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self):
        """The comparison as an aligned plain-text table, with notes."""
        first, others = self.models[0], self.models[1:]
        letters = string.ascii_uppercase
        rows = [("", *(m.label for m in self.models),
                 *(f"{letters[i]} vs A" for i in range(1, len(self.models))))]

        def row(label, cells, compare=None):
            vs = [""] * len(others) if compare is None else [
                compare(first, other) for other in others]
            rows.append((label, *cells, *vs))

        row("parameters", [f"{m.params:,}" for m in self.models])
        row("non-zero parameters", [f"{m.nonzero_params:,}" for m in self.models],
            lambda a, b: ratio_in_words(a.nonzero_params, b.nonzero_params,
                                        "fewer", "more"))
        row("prunable sparsity", [f"{m.prunable_sparsity:.2%}" for m in self.models])
        for label, key in (("file size", "file_bytes"),
                           ("zipped size", "zipped_bytes")):
            row(label, [f"{getattr(m, key):,} B" for m in self.models],
                lambda a, b, key=key: ratio_in_words(
                    getattr(a, key), getattr(b, key), "smaller", "larger"))
        if self._latency_measured:
            for batch in self.latency["batch_sizes"]:
                versus = iter(self.latency["versus_first"][str(batch)])
                row(f"latency, batch {batch}",
                    [f"{m.latency_s[batch] * 1000:.3f} ms" for m in self.models],
                    lambda a, b, versus=versus: latency_in_words(next(versus)))
        if self.data is not None:
            what = (f"{self.data['name']}, {self.data['test_samples']:,} test "
                    "images" if self.data["name"] else
                    f"{self.data['test_samples']:,} samples")
            row(f"accuracy ({what})", [f"{m.accuracy:.2%}" for m in self.models],
                lambda a, b: f"{(b.accuracy - a.accuracy) * 100:+.2f} points")
        row("optimizer state in file",
            [f"{m.optimizer_values:,} values" for m in self.models])
        lines = align_rows(rows)
        if len({m.optimizer_values for m in self.models}) > 1:
            lines.append(
                "note: the files hold different optimizer state, which counts "
                "in their sizes; compare models saved alike (e.g. both "
                "uncompiled) to see what pruning saves."
            )
        if self._latency_measured:
            lines.append(
                f"latency: median of {self.latency['repeats']} predict_on_batch "
                f"calls after {self.latency['warmup']} warm-up calls, random "
                f"inputs, {self.backend} backend, the models taking turns in "
                "rotating order;\nvs A: the median of the per-round time "
                "ratios and its 95 % interval (an interval holding 1, or a "
                f"median within {SAME_WITHIN:.0%} of it: no measurable "
                "difference)"
            )
        elif self.latency is not None:
            lines.append(f"latency not measured: {self.latency['skipped']}")
        return "\n".join(lines)

    @property
    def _latency_measured(self):
        return self.latency is not None and self.latency["skipped"] is None

    def __str__(self):
        return self.summary()

    def __repr__(self):
        labels = ", ".join(repr(m.label) for m in self.models)
        return f"<ModelComparison of {labels} on {self.backend}>"


def compare_models(models, data=None, *, files=None, batch_sizes=(1, 32),
                   repeats=20, warmup=3, verbose=0):
    """Measures models side by side: sizes, zeros, latency, accuracy.

    Nothing is modified: a model given as an object is saved to a
    temporary `.keras` file (as it is, with its optimizer state if it is
    compiled) to measure the file sizes.

    Args:
        models: two or more Keras models, or paths of saved `.keras` files
            (loaded with `keras.saving.load_model`, in safe mode); the first
            is the one the others are compared with (e.g. the dense model).
        data: for accuracy: the name of a data set of `keras_prune.datasets`
            (its test split is used) or `(x, y)` arrays, `y` holding class
            indices; None skips accuracy. Images are reshaped to a model's
            input when the number of values matches (a `(None, 64)` model
            takes the 8x8 digits flattened).
        files: for models given as objects, the `.keras` file each was
            loaded from, measured instead of a temporary copy.
        batch_sizes: the batch sizes to time; a batch's random inputs may
            take up to `MAX_INPUT_BYTES` (1 GiB) per model.
        repeats: timed `predict_on_batch` calls per model and batch size
            (the models take turns call by call); 0 skips the latency; at
            most `MAX_REPEATS` (10,000).
        warmup: untimed calls per model and batch size first (the first
            call compiles on TensorFlow and JAX).
        verbose: 0 silent; 1 prints what is measured and Keras progress
            bars (to stdout); 2 the same lines without the bars (for a log
            file: Keras's bars write ANSI codes and carriage returns).

    Returns:
        A `ModelComparison`.

    Raises:
        DataMismatchError: if `data` does not fit a model's input, or a
            model has not one output of a score per class.
        keras_prune.datasets.DataUnavailableError: if the named data set is
            not installed.
        ValueError: for fewer than two models, bad `batch_sizes` or
            `repeats` (checked before any measuring).

    Example:

    ```python
    comparison = keras_prune.compare_models([dense, pruned], data=(x, y),
                                            repeats=5)
    print(comparison)                  # the table
    comparison[1].nonzero_params       # the pruned model's non-zeros
    comparison.to_dict()["b"]["zipped_bytes"]
    ```
    """
    models = list(models)
    if not 2 <= len(models) <= len(string.ascii_lowercase):
        raise ValueError(
            f"compare_models needs 2 to {len(string.ascii_lowercase)} models, "
            f"got {len(models)}: give the baseline first, then the others."
        )
    check_repeats(repeats)
    batch_sizes = [int(batch) for batch in batch_sizes]
    if not batch_sizes or any(batch < 1 for batch in batch_sizes):
        raise ValueError(f"batch_sizes must be at least 1, got {batch_sizes}.")
    files = list(files) if files is not None else [None] * len(models)
    if len(files) != len(models):
        raise ValueError(
            f"files must name one file per model: {len(models)} models, "
            f"{len(files)} files."
        )
    for i, model in enumerate(models):
        if isinstance(model, (str, os.PathLike)):
            files[i] = os.fspath(model)
            models[i] = keras.saving.load_model(files[i])
    labels = _labels(models, files)
    if repeats:
        _check_input_bytes(models, labels, batch_sizes)
    say = print if verbose else (lambda _: None)
    # The data is checked against every model before anything is measured.
    inputs, labels_y, data_info = _data(data, models, labels)
    entries = [_measure(model, path, label)
               for model, path, label in zip(models, files, labels)]
    latency = None
    if repeats:
        skipped, ratios = _time(models, batch_sizes, repeats, warmup,
                                entries, verbose, say)
        latency = {
            "method": "predict_on_batch", "unit": "seconds",
            "statistic": "median", "warmup": warmup, "repeats": repeats,
            "batch_sizes": batch_sizes, "order": "interleaved, rotating",
            "skipped": skipped, "versus_first": ratios,
            "confidence": 0.95, "same_within": SAME_WITHIN,
        }
    if inputs is not None:
        for i, (model, x) in enumerate(zip(models, inputs)):
            what = (f"{data_info['name']} test images" if data_info["name"]
                    else "samples")
            say(f"evaluating {labels[i]} on {len(x):,} {what}")
            scores = model.predict(x, batch_size=EVALUATION_BATCH,
                                   verbose=1 if verbose == 1 else 0)
            accuracy = float(np.mean(np.argmax(scores, -1) == labels_y))
            entries[i] = dataclasses.replace(entries[i], accuracy=accuracy)
    return ModelComparison(entries, keras.backend.backend(), latency, data_info)


def check_repeats(repeats, name="repeats"):
    """A ValueError naming `name` unless 0 <= repeats <= MAX_REPEATS."""
    if repeats < 0:
        raise ValueError(
            f"{name} must be 0 (no latency) or more, got {repeats}.")
    if repeats > MAX_REPEATS:
        raise ValueError(
            f"{name}={repeats:,} is more than compare times ({MAX_REPEATS:,} "
            "calls per model and batch size; the median settles within a "
            "few hundred): give at most that."
        )


def _check_input_bytes(models, labels, batch_sizes):
    """A ValueError, before any measuring, for a batch whose random inputs
    would not fit in MAX_INPUT_BYTES."""
    for model, label in zip(models, labels):
        per_sample = sizes.sample_bytes(model)
        for batch in batch_sizes:
            if per_sample and batch * per_sample > MAX_INPUT_BYTES:
                raise ValueError(
                    f"batch size {batch:,} needs "
                    f"{batch * per_sample / 2**30:,.1f} GiB of random inputs "
                    f"for {label} ({per_sample:,} bytes a sample), more than "
                    f"the {MAX_INPUT_BYTES / 2**30:g} GiB compare allows: "
                    f"time batch sizes up to {MAX_INPUT_BYTES // per_sample:,}."
                )


def _labels(models, files):
    """The files' names (their base names if those differ), else the
    models' names; led by the model's letter where they repeat."""
    names = [path if path is not None else model.name
             for model, path in zip(models, files)]
    short = [os.path.basename(name) for name in names]
    if len(set(short)) == len(short):
        return short
    if len(set(names)) == len(names):
        return names
    return [f"{letter}: {name}"
            for letter, name in zip(string.ascii_uppercase, names)]


def _data(data, models, labels):
    """`(inputs per model, labels, data info)`, or Nones without data."""
    if data is None:
        return None, None, None
    name = None
    if isinstance(data, str):
        name = data
        _, (x, y) = datasets.load(name)
    else:
        x, y = data
    x, y = np.asarray(x), np.asarray(y)
    classes = int(y.max()) + 1
    inputs = []
    for model, label in zip(models, labels):
        _check_classifier(model, label, name, classes)
        inputs.append(inputs_for(model, x, label, name))
    return inputs, y, {"name": name, "test_samples": int(len(y))}


def _check_classifier(model, label, name, classes):
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    what = f"accuracy on {name}" if name else "accuracy"
    if len(inputs) != 1 or len(outputs) != 1:
        raise DataMismatchError(
            f"{label} has {len(inputs)} input(s) and {len(outputs)} "
            f"output(s); {what} needs one input and one output of {classes} "
            "class scores."
        )
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[-1] != classes:
        raise DataMismatchError(
            f"{label} outputs shape {out_shape}; {what} needs {classes} class "
            f"scores per sample, shape (None, {classes})."
        )


def inputs_for(model, x, label=None, name=None):
    """`x` as `model`'s single input takes it: as it is, or reshaped.

    Args:
        model: a model with one input.
        x: the samples, e.g. images `(N, 8, 8, 1)`.
        label: how messages name the model (default: its name).
        name: the data set's name, for messages.

    Returns:
        `x`, reshaped to the input's shape if the number of values per
        sample matches and the shapes differ.

    Raises:
        DataMismatchError: if `x` cannot be fed to the model.
    """
    label = model.name if label is None else label
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise DataMismatchError(
            f"{label} has {len(inputs)} inputs; the data fits models with "
            "one input."
        )
    shape = tuple(inputs[0].shape)[1:]
    sample = x.shape[1:]
    if len(shape) == len(sample) and all(
        d is None or d == s for d, s in zip(shape, sample)
    ):
        return x
    if None not in shape and math.prod(shape) == math.prod(sample):
        return x.reshape((len(x),) + shape)
    what = f"{name} images" if name else "the samples"
    raise DataMismatchError(
        f"{label} takes inputs of shape {shape}, but {what} have shape "
        f"{sample} ({math.prod(sample)} values); they cannot be reshaped to "
        "fit."
    )


def _measure(model, path, label):
    try:
        report = SparsityReport(model)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot report on {label}: {err}") from None
    optimizer = getattr(model, "optimizer", None)
    if path is None:
        with tempfile.TemporaryDirectory(prefix="keras-prune-compare-") as d:
            saved = os.path.join(d, "model.keras")
            model.save(saved)
            file_bytes, zipped = sizes.file_size(saved), sizes.zipped_size(saved)
    else:
        file_bytes, zipped = sizes.file_size(path), sizes.zipped_size(path)
    return ComparedModel(
        label=label,
        path=path,
        model=model.name,
        params=report.all_total,
        nonzero_params=report.nonzero,
        prunable_sparsity=report.prunable_sparsity,
        file_bytes=file_bytes,
        zipped_bytes=zipped,
        optimizer_values=0 if optimizer is None else sum(
            math.prod(v.shape) for v in optimizer.variables),
    )


def _time(models, batch_sizes, repeats, warmup, entries, verbose, say):
    """Fills the entries' latency; returns `(why it was skipped or None,
    each later model's time ratio against the first, per batch size)`."""
    found, ratios = {}, {}
    try:
        for batch in batch_sizes:
            inputs = [sizes.random_inputs(model, batch) for model in models]
            say(f"timing predict_on_batch, batch size {batch}: {warmup} "
                f"warm-up and {repeats} timed calls per model")
            times = sizes.latency_samples(
                models, inputs, repeats, warmup,
                progress=_rounds_bar(repeats) if verbose == 1 else None)
            found[batch] = [statistics.median(t) for t in times]
            ratios[str(batch)] = [
                measured_ratio(*sizes.paired_ratio(times[0], other))
                for other in times[1:]]
    except ValueError as err:
        say(f"latency not measured: {err}")
        return str(err), None
    for i, entry in enumerate(entries):
        entries[i] = dataclasses.replace(
            entry, latency_s={batch: found[batch][i] for batch in batch_sizes})
    return None, ratios


def _rounds_bar(repeats):
    """A progress callback for `sizes.latency_samples`: Keras's bar,
    started when the warm-up ends, so that its estimate of the time left
    counts timed rounds only (started before, it divided the warm-up's
    compilation, seconds, among the first rounds of milliseconds)."""
    bar = []

    def progress(done):
        if done == 0:
            bar[:] = [keras.utils.Progbar(repeats, unit_name="round",
                                          interval=10.0)]
        else:
            bar[0].update(done)
    return progress


# A time ratio within this of 1 is reported as no measurable difference
# even when the interval excludes 1: a model timed against an identical copy
# (fresh models, 20 rounds) came out up to 7.4 % apart, with an interval
# excluding 1 in 3 of 90 runs (benchmarks/results/compare_noise.md).
SAME_WITHIN = 0.10


def measured_ratio(median, low, high):
    """A later model's time / the first's: median of the per-round ratios,
    its 95 % interval, and whether the difference is measurable."""
    measurable = not (low <= 1.0 <= high) and abs(median - 1.0) >= SAME_WITHIN
    return {"time_ratio": median, "low": low, "high": high,
            "measurable": measurable}


def latency_in_words(ratio):
    """A later model's latency against the first's, e.g. "1.32x faster
    (1.25-1.40x)" with the 95 % interval, or "no measurable difference
    (0.97-1.04x)" when the interval holds 1 or the median is within
    SAME_WITHIN of it."""
    r, low, high = ratio["time_ratio"], ratio["low"], ratio["high"]
    if not ratio["measurable"]:
        return f"no measurable difference ({1 / high:.2f}-{1 / low:.2f}x)"
    if r <= 1:
        return f"{1 / r:.2f}x faster ({1 / high:.2f}-{1 / low:.2f}x)"
    return f"{r:.2f}x slower ({low:.2f}-{high:.2f}x)"


def ratio_in_words(a, b, better, worse):
    """How `b` compares with `a`, e.g. "2.50x smaller" (a / b) or "1.20x
    larger"; "same", "about the same", or "" when either is 0."""
    if a == b:
        return "same"
    if a == 0 or b == 0:
        return ""
    ratio = max(a, b) / min(a, b)
    if f"{ratio:.2f}" == "1.00":
        return "about the same"
    return f"{ratio:.2f}x {better if a > b else worse}"


def align_rows(rows):
    """Text lines of a table: the first column left-aligned, the others
    right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        ).rstrip()
        for row in rows
    ]
