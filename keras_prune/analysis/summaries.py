"""`PruningSummaries`: pruning curves in TensorBoard, on every backend.

Per pruned weight, the sparsity of its mask and its magnitude threshold are
written as TensorBoard scalars, and the sparsity of all pruned weights goes
into the callback `logs` as "sparsity", where `History`, `CSVLogger` and the
progress bar see it.

The event files are written with TensorFlow's own summary writer when
TensorFlow is installed (only `tf.summary.write`, which does not need the
`tensorboard` package that tensorflow-cpu leaves out), else with
`tensorboardX`. Viewing them needs the `tensorboard` package, on any machine;
TensorFlow alone reads them back (`tf.data.TFRecordDataset` +
`tf.compat.v1.Event`, see docs/visualize.md).
"""

import importlib.util
import os

import keras
import numpy as np

from keras_prune.core.layers import pruned_layers

_MISSING = (
    "PruningSummaries writes TensorBoard event files with TensorFlow or "
    "tensorboardX, and neither is installed: `pip install tensorflow-cpu` "
    "or `pip install tensorboardX`."
)


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-weight mask sparsity and thresholds for TensorBoard.

    The same name as tfmot's callback. For every weight masked by a
    `PruneLowMagnitude` wrapper, two scalars (tag names use the weight's
    path, e.g. "dense/kernel"):

    - `sparsity/<path>`: the fraction of the mask that is off;
    - `threshold/<path>`: the magnitude threshold of the last mask update;

    and `sparsity`: all masked weights together (zeros over entries). The
    step of each value is the optimizer's iteration count, the number of
    training steps done, the step that pruning schedules count. Files go to
    `log_dir/train` (where `keras.callbacks.TensorBoard(log_dir)` writes its
    training curves); view them with `tensorboard --logdir log_dir`.

    The same overall sparsity is put into the epoch `logs` as "sparsity"
    (and into batch logs at the batches written), so `History`,
    `CSVLogger` and the progress bar record it: list `PruningSummaries`
    before a `CSVLogger` in `callbacks`.

    Args:
        log_dir: folder for the event files.
        update_freq: "epoch" (default): at the end of every epoch. "batch":
            after every batch. An integer N: after every N training steps,
            and at the end of each epoch. Reading the masks syncs the model
            state (on JAX) and copies them to the host: per batch, that is
            slow for large models.

    Raises:
        ImportError: at construction, when neither TensorFlow nor
            tensorboardX is installed.
        ValueError: for an unknown `update_freq`.

    Example:

    ```python
    pruned.fit(x, y, epochs=2, callbacks=[
        keras_prune.UpdatePruningStep(),
        keras_prune.PruningSummaries(log_dir="logs"),
    ])
    ```
    """

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(
                log_dir):
            raise ValueError(
                "log_dir must be the directory the TensorBoard summaries go "
                "to (a non-empty str or os.PathLike, e.g. 'logs/pruning'), "
                f"got {log_dir!r}."
            )
        if update_freq == "batch":
            every = 1
        elif update_freq == "epoch":
            every = None
        elif (
            isinstance(update_freq, (int, np.integer))
            and not isinstance(update_freq, bool)
            and update_freq > 0
        ):
            every = int(update_freq)
        else:
            raise ValueError(
                'update_freq must be "epoch", "batch" or a positive number '
                f"of batches, got {update_freq!r}."
            )
        self._writer_class = _writer_class()
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._every = every
        self._writer = None
        self._step = None
        self._batch_begin = 0
        self._written = None
        self._last = None

    @property
    def writer_dir(self):
        """The folder the event files go to: `log_dir/train`."""
        return os.path.join(self.log_dir, "train")

    def on_train_begin(self, logs=None):
        if not pruned_layers(self.model):
            raise ValueError(
                f"PruningSummaries: model {self.model.name!r} has no pruned "
                "layers, so there is no mask to summarize. Wrap it with "
                "keras_prune.prune_low_magnitude() first."
            )
        self._writer = self._writer_class(self.writer_dir)
        self._step = None
        self._written = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._every is None:
            return
        if self._step is None:
            self._step = _iterations(self.model)
        self._batch_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        if self._every is None:
            return
        before = self._step
        self._step += batch - self._batch_begin + 1
        # With steps_per_execution, one call covers several steps.
        if self._step // self._every > before // self._every:
            sparsity = self._write(self._step)
            if logs is not None:
                logs["sparsity"] = sparsity

    def on_epoch_end(self, epoch, logs=None):
        step = _iterations(self.model)
        if self._written == step:
            sparsity = self._last
        else:
            sparsity = self._write(step)
        if logs is not None:
            logs["sparsity"] = sparsity

    def on_train_end(self, logs=None):
        # Closed, not only flushed: tensorboardX's flush leaves the events
        # still queued for its writer thread unwritten. A later fit opens a
        # new event file in the same folder; TensorBoard reads them all.
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, step):
        self.model  # On JAX, syncs the trainer's state into the variables.
        values, zeros, total = {}, 0, 0
        for wrapper in pruned_layers(self.model):
            for variable, mask, threshold in zip(
                wrapper.prunable_weights, wrapper.masks, wrapper.thresholds
            ):
                keep = keras.ops.convert_to_numpy(mask.value)
                off = int(keep.size - np.count_nonzero(keep))
                values[f"sparsity/{variable.path}"] = off / keep.size
                values[f"threshold/{variable.path}"] = float(
                    keras.ops.convert_to_numpy(threshold.value)
                )
                zeros += off
                total += int(keep.size)
        sparsity = zeros / total if total else 0.0
        values["sparsity"] = sparsity
        self._writer.scalars(values, step)
        self._written, self._last = step, sparsity
        return sparsity


def _iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _writer_class():
    """The first event-file writer that can be imported, else ImportError."""
    if importlib.util.find_spec("tensorflow") is not None:
        return _TFWriter
    if importlib.util.find_spec("tensorboardX") is not None:
        return _TensorBoardXWriter
    raise ImportError(_MISSING)


class _TFWriter:
    """TensorFlow's event writer, with the scalar format TensorBoard reads.

    `tf.summary.scalar` needs the `tensorboard` package; it only adds this
    metadata to `tf.summary.write`, which is part of TensorFlow.
    """

    def __init__(self, logdir):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(logdir)
        self._metadata = tf.compat.v1.SummaryMetadata()
        self._metadata.plugin_data.plugin_name = "scalars"
        # DATA_CLASS_SCALAR (tensorflow/core/framework/summary.proto).
        self._metadata.data_class = 1

    def scalars(self, values, step):
        tf = self._tf
        with self._writer.as_default():
            for tag, value in values.items():
                tf.summary.write(
                    tag,
                    tf.constant(value, dtype=tf.float32),
                    step=tf.constant(step, dtype=tf.int64),
                    metadata=self._metadata,
                )

    def close(self):
        self._writer.close()


class _TensorBoardXWriter:
    def __init__(self, logdir):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir)

    def scalars(self, values, step):
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, global_step=step)

    def close(self):
        self._writer.close()
