"""`export`: Keras's `model.export` for stripped models, checked first, with
the file's size.

Formats and what each backend can do (Keras 3.15):

| format | TensorFlow | JAX | PyTorch |
|---|---|---|---|
| "onnx" | tf2onnx | jax2onnx | torch.onnx (onnxscript) |
| "tf_saved_model" | yes | jax2tf | needs torch_xla (refused) |
| "litert" (`.tflite`) | TFLite converter | refused by Keras | needs litert-torch (refused) |

Pruned zeros are kept as zeros in every format: ONNX initializers and
SavedModel variables hold the dense kernels; LiteRT's converter stores them
densely unless `sparsity=True` asks it for its sparse tensor encoding
(`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`).
"""

import importlib.util
import io
import os
import zipfile

import keras

from keras_prune.core.layers import pruned_layers

FORMATS = ("onnx", "tf_saved_model", "litert")

# Python packages each (format, backend) needs, beyond the backend itself.
_NEEDS = {
    ("onnx", "tensorflow"): ("onnx", "tf2onnx"),
    ("onnx", "jax"): ("onnx", "jax2onnx"),
    ("onnx", "torch"): ("onnx", "onnxscript"),
    ("tf_saved_model", "tensorflow"): (),
    ("tf_saved_model", "jax"): ("tensorflow",),
    ("tf_saved_model", "torch"): ("tensorflow", "torch_xla"),
    ("litert", "tensorflow"): (),
    ("litert", "torch"): ("litert_torch",),
}
_UNSUPPORTED = {
    ("litert", "jax"): (
        "Keras exports LiteRT from the TensorFlow and PyTorch backends only; "
        "run with KERAS_BACKEND=tensorflow (a model saved to .keras loads "
        "on any backend)"
    ),
}
_PIP = {
    "torch_xla": "torch_xla (no CPU wheel for torch 2.13; export the "
    "SavedModel from KERAS_BACKEND=tensorflow or jax instead)",
    "litert_torch": "litert-torch (or export from KERAS_BACKEND=tensorflow)",
}


class ExportResult:
    """What `export` wrote.

    Attributes:
        path: the file (ONNX, LiteRT) or directory (SavedModel).
        format: the format.
        backend: the Keras backend that exported it.
        bytes: size on disk (a directory: all its files).
        zipped_bytes: the same zipped with DEFLATE (tfmot's measure).
    """

    def __init__(self, path, format, backend, bytes, zipped_bytes):
        self.path = path
        self.format = format
        self.backend = backend
        self.bytes = bytes
        self.zipped_bytes = zipped_bytes

    def to_dict(self):
        return dict(vars(self))

    def __repr__(self):
        return (
            f"ExportResult(path={self.path!r}, format={self.format!r}, "
            f"backend={self.backend!r}, bytes={self.bytes:,}, "
            f"zipped_bytes={self.zipped_bytes:,})"
        )


def _files(path):
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for name in sorted(names):
                full = os.path.join(root, name)
                yield full, os.path.relpath(full, path)
    else:
        yield path, os.path.basename(path)


def _sizes(path):
    total = sum(os.path.getsize(full) for full, _ in _files(path))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for full, name in _files(path):
            archive.write(full, name)
    return total, len(buffer.getvalue())


def _input_signature(model):
    """Specs of the model's inputs (Keras wants a called model otherwise,
    and JAX's predict does not mark it called)."""
    if isinstance(model, keras.Sequential):
        inputs = list(model.inputs or []) or None
    else:
        inputs = getattr(model, "_inputs_struct", None)  # Functional
    if inputs is None:
        return None  # subclassed: Keras uses the shapes of its first call

    def spec(tensor):
        return keras.InputSpec(
            shape=tuple(tensor.shape), dtype=tensor.dtype, name=tensor.name
        )

    if isinstance(model, keras.Sequential):
        return [spec(tensor) for tensor in inputs]
    return [keras.tree.map_structure(spec, inputs)]


def _check(model, path, format, backend, sparsity, overwrite):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"export expects a keras Model, got {type(model).__name__}."
        )
    if format not in FORMATS:
        raise ValueError(
            f"format must be one of {list(FORMATS)}, got {format!r}."
        )
    if pruned_layers(model):
        raise ValueError(
            f"export: model {model.name!r} still has pruning wrappers; call "
            "keras_prune.strip_pruning(model) first (an exported model "
            "holds plain layers with the zeros baked in)."
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"export: model {model.name!r} is not built; call it on data "
            "or build it first."
        )
    if sparsity and format != "litert":
        raise ValueError(
            f"sparsity=True applies to format='litert' (the TFLite "
            f"converter's sparse encoding), not {format!r}; ONNX and "
            "SavedModel keep the zeros in dense tensors (zip the file, or "
            "use keras_prune.save_packed, to see them in bytes)."
        )
    why = _UNSUPPORTED.get((format, backend))
    if why:
        raise ValueError(f"format={format!r} on the {backend} backend: {why}.")
    missing = [
        name for name in _NEEDS[(format, backend)]
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        names = ", ".join(_PIP.get(name, name) for name in missing)
        raise ImportError(
            f"format={format!r} on the {backend} backend needs {names}: "
            "pip install 'keras-prune[export]'."
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True to replace it, or choose "
            "another path."
        )


def export(model, path, format="onnx", *, sparsity=False, overwrite=False,
           input_signature=None, verbose=False, **kwargs):
    """Exports a stripped model with `model.export`, checked first.

    Args:
        model: a built, stripped (`strip_pruning`) Keras model; not
            modified.
        path: the file (".onnx", ".tflite") or SavedModel directory.
        format: "onnx" (every backend), "tf_saved_model" (TensorFlow, JAX),
            "litert" (TensorFlow).
        sparsity: LiteRT only: store the kernels in TFLite's sparse
            encoding (`optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`
            added to the converter's); outputs unchanged.
        overwrite: replace an existing `path` (refused otherwise).
        input_signature: as in `model.export`; default: the model's inputs
            with their batch dimension left free.
        verbose: Keras's export messages.
        **kwargs: passed to `model.export` (e.g. `opset_version`, LiteRT
            converter settings such as `optimizations`).

    Returns:
        `ExportResult` (path, format, backend, bytes, zipped_bytes).

    Example:

    ```python
    final = keras_prune.strip_pruning(pruned)
    result = keras_prune.export(final, "model.onnx")          # any backend
    keras_prune.export(final, "model.tflite", format="litert",
                       sparsity=True)                         # TensorFlow
    ```
    """
    backend = keras.backend.backend()
    path = os.fspath(path)
    _check(model, path, format, backend, sparsity, overwrite)
    if sparsity:
        import tensorflow as tf

        optimizations = list(kwargs.pop("optimizations", None) or [])
        if tf.lite.Optimize.EXPERIMENTAL_SPARSITY not in optimizations:
            optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
        kwargs["optimizations"] = optimizations
    if input_signature is None:
        input_signature = _input_signature(model)
    if os.path.exists(path):
        import shutil

        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    model.export(
        path,
        format=format,
        verbose=verbose,
        input_signature=input_signature,
        **kwargs,
    )
    total, zipped = _sizes(path)
    return ExportResult(path, format, backend, total, zipped)
