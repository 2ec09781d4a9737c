"""Sizes that show the pruning, and a sparse packed weight format.

A `.keras` file stores every weight densely, zeros included: a model pruned
to 90 % has the same file size as the dense one. `model_size` reports the
dense bytes, the `.keras` file, that file zipped (tfmot's measure, see
`keras_prune.analysis.sizes`) and the size of the packed format below.

Packed format (version 2), written by `save_packed`, read by `load_packed`
(which also reads version 1): a zip archive with

- `header.json`: `{"format": "keras-prune-packed", "version": 2,
  "keras_version", "values": "float32" | "int8", "model": <model.to_json()>,
  "weights": [entry, ...]}`, one entry per `model.weights` variable, in
  order: `path`, `shape`, `dtype`, `coding` ("dense", "bitmask" or
  "index"), `nonzeros`, `values_dtype` (the stored values' dtype),
  `index_dtype` (index coding only), `scale_shape` (present only for a
  tensor quantized by values="int8": it marks them), `nbytes`, and
  `offset`, `length`, `deflated`: where the tensor's bytes are in
  `weights.bin` and whether they are raw DEFLATE.
- `weights.bin` (stored): per tensor, the concatenation of its positions
  (none for "dense"), its values, and for int8 its float32 scales (the
  header's `nbytes` gives the three lengths), deflated when that is smaller.
  Version 1 kept each tensor in its own member `weights/NNNN` (entry field
  `member`), ~100 bytes of zip headers per tensor.

Codings of a tensor flattened in C order:

- "dense": every value.
- "bitmask": `np.packbits(w != 0)` (⌈n/8⌉ bytes), then the nonzero values.
- "index": the gaps between consecutive nonzero positions (`p[i] - p[i-1]
  - 1`, with `p[-1] = -1`), in the smallest unsigned dtype that holds the
  largest gap, then the nonzero values.

Each candidate is compressed with DEFLATE; the smallest wins, and is stored
deflated or plain, whichever is smaller (`deflated` records which).
DEFLATE's Huffman codes bring a random mask close to its entropy H(s) bits
per weight, so the packed size approaches the bound (1 - s)·b + H(s) bits
per weight for b-bit values.

Values: "float32" keeps every value exactly (in the variable's own dtype).
A model already quantized by Keras (`model.quantize("int8")`) is stored
exactly with values="float32" (its int8 kernels get the same codings) and
refused with values="int8".

"int8" quantizes floating tensors of rank >= 2 (kernels, embeddings):
symmetric, one float32 scale per slice of the last axis (the output
channel of Dense and Conv kernels), `scale = max|w| / 127`, `q =
round(w / scale)`; zeros stay exactly zero and every value is within
scale / 2 of the original. Rank-0 and rank-1 tensors (biases,
normalization statistics) stay exact.
"""

import dataclasses
import json
import math
import os
import re
import tempfile
import zipfile
import zlib

import keras
import numpy as np

from keras_prune.analysis import sizes
from keras_prune.analysis.compare import ratio_in_words
from keras_prune.deploy import files
from keras_prune.core.walk import all_layers
from keras_prune.core.layers import pruned_layers

FORMAT = "keras-prune-packed"
VERSION = 2
READABLE = (1, 2)
VALUES = ("float32", "int8")
HEADER = "header.json"
WEIGHTS = "weights.bin"
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Sizes of one model, in bytes unless said otherwise.

    Attributes:
        parameters: number of weight values (`model.count_params()`).
        nonzeros: number of those values that are not zero.
        dense_bytes: bytes of all weights stored densely in their dtypes.
        keras_bytes: size of the model's `.keras` file.
        zipped_keras_bytes: size of that file zipped with DEFLATE (tfmot's
            measure of a pruned model's size).
        packed_bytes: size of the packed file, float32 values (exact).
        packed_int8_bytes: size of the packed file, int8 values; None for
            a model already quantized by Keras (`model.quantize`).
    """

    parameters: int
    nonzeros: int
    dense_bytes: int
    keras_bytes: int
    zipped_keras_bytes: int
    packed_bytes: int
    packed_int8_bytes: int

    @property
    def sparsity(self):
        """Fraction of all weight values that are zero."""
        return 1.0 - self.nonzeros / self.parameters if self.parameters else 0.0

    def ratio(self, field):
        """`dense_bytes` divided by the size in `field`, e.g. "packed_bytes".

        None where that size is None.
        """
        value = getattr(self, field)
        return None if value is None else self.dense_bytes / value

    def to_dict(self):
        return dataclasses.asdict(self)

    def summary(self):
        rows = [
            ("parameters", f"{self.parameters:,}"),
            ("non-zeros", f"{self.nonzeros:,} ({self.sparsity:.2%} zeros)"),
        ]
        for label, field in (
            ("dense bytes", "dense_bytes"),
            (".keras file", "keras_bytes"),
            ("zipped .keras", "zipped_keras_bytes"),
            ("packed (float32)", "packed_bytes"),
            ("packed (int8)", "packed_int8_bytes"),
        ):
            value = getattr(self, field)
            if value is None:
                rows.append((label, "n/a (quantized by Keras already)"))
            else:
                versus = ratio_in_words(self.dense_bytes, value, "smaller",
                                        "larger")
                rows.append((label, f"{value:,} B ({versus} than dense)"
                             if field != "dense_bytes" else f"{value:,} B"))
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)

    def __str__(self):
        return self.summary()


def model_size(model):
    """Measures `model`: parameters, non-zeros, dense, `.keras`, packed sizes.

    The files are written to a temporary directory and removed; `model` is
    not modified.

    Args:
        model: a built Keras model without pruning wrappers (call
            `keras_prune.strip_pruning` first).

    Returns:
        A `ModelSize`.

    Example:

    ```python
    size = keras_prune.model_size(keras_prune.strip_pruning(pruned))
    print(size)
    size.ratio("packed_bytes")  # about 8.6 at 90 % sparsity
    ```
    """
    _check_packable(model, "model_size")
    arrays = [_numpy(v) for v in model.weights]
    with tempfile.TemporaryDirectory(prefix="keras-prune-size-") as directory:
        keras_path = os.path.join(directory, "model.keras")
        model.save(keras_path)
        packed = {"int8": None}
        # A model quantized by Keras has no int8 packing of its own.
        for values in VALUES[:1] if _keras_quantized(model) else VALUES:
            path = os.path.join(directory, f"model-{values}.kpack")
            save_packed(model, path, values=values)
            packed[values] = sizes.file_size(path)
        return ModelSize(
            parameters=int(sum(a.size for a in arrays)),
            nonzeros=int(sum(np.count_nonzero(a) for a in arrays)),
            dense_bytes=int(sum(a.nbytes for a in arrays)),
            keras_bytes=sizes.file_size(keras_path),
            zipped_keras_bytes=sizes.zipped_size(keras_path),
            packed_bytes=packed["float32"],
            packed_int8_bytes=packed["int8"],
        )


def save_packed(model, path, values="float32", overwrite=False):
    """Saves `model` in the sparse packed format (see the module docstring).

    The file is written to a temporary file beside `path` and moved into
    place, so `path` never holds half a file.

    Args:
        model: a built Functional or Sequential model (or any model with
            `get_config`), without pruning wrappers: call
            `keras_prune.strip_pruning` first. Not modified.
        path: the file to write, e.g. "model.kpack".
        values: "float32" (exact values, in each variable's dtype) or "int8"
            (floating kernels quantized, zeros kept exactly; refused for a
            model already quantized by Keras).
        overwrite: replace an existing file at `path`.

    Returns:
        `path`.

    Example:

    ```python
    keras_prune.save_packed(final, "model.kpack")
    same = keras_prune.load_packed("model.kpack")
    ```
    """
    if values not in VALUES:
        raise ValueError(
            f"save_packed: values={values!r} is not supported; use "
            "values='float32' (exact) or values='int8' (quantized kernels)."
        )
    path = files.checked_path(path, "save_packed")
    if os.path.isdir(path):
        raise ValueError(
            f"save_packed: {path!r} is a directory; give a file path, e.g. "
            f"{os.path.join(path, 'model.kpack')!r}."
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save_packed: the directory {directory!r} does not exist; "
            "create it first (os.makedirs) or choose another path."
        )
    if not os.access(directory, os.W_OK):
        raise PermissionError(
            f"save_packed: the directory {directory!r} cannot be written; "
            "choose another path."
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"save_packed: {path!r} already exists; pass overwrite=True to "
            "replace it, or choose another path."
        )
    _check_packable(model, "save_packed")
    quantized = _keras_quantized(model)
    if values == "int8" and quantized:
        raise ValueError(
            f"save_packed: model {model.name!r} is already quantized by "
            f"Keras ({', '.join(quantized)}); use values='float32', which "
            "stores its quantized weights exactly."
        )
    config = _model_json(model)
    entries = []
    blob = bytearray()
    for variable in model.weights:
        entry, data = _pack_tensor(_numpy(variable), values)
        squeezed = _deflate(data)
        deflated = len(squeezed) < len(data)
        if deflated:
            data = squeezed
        entry = {"path": variable.path, **entry, "offset": len(blob),
                 "length": len(data), "deflated": deflated}
        entries.append(entry)
        blob += data
    header = {
        "format": FORMAT,
        "version": VERSION,
        "keras_version": keras.__version__,
        "values": values,
        "model": json.loads(config),
        "weights": entries,
    }
    name = os.path.basename(path)
    files.remove_stale(directory, re.compile(
        r"^\." + re.escape(name) + r"\.(\d+)-\w+\.tmp$"))
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.{os.getpid()}-", suffix=".tmp",
        dir=directory
    )
    try:
        with os.fdopen(handle, "wb") as file:
            with zipfile.ZipFile(file, "w") as archive:
                _write_member(
                    archive, HEADER,
                    json.dumps(header, separators=(",", ":")).encode(),
                )
                # One stored member: each tensor is deflated on its own
                # (above), and one zip entry instead of one per tensor
                # saves ~100 bytes of zip headers per tensor.
                _write_member(archive, WEIGHTS, bytes(blob), deflate=False)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def load_packed(path, custom_objects=None):
    """Loads a model saved by `save_packed`.

    Args:
        path: a file written by `save_packed`.
        custom_objects: dict of custom classes the model's config names, as
            for `keras.saving.load_model`.

    Returns:
        A plain Keras model built from the stored config (not compiled) with
        the stored weights: bit-identical for values="float32", dequantized
        (`q * scale`, float32) for values="int8".

    Example:

    ```python
    model = keras_prune.load_packed("model.kpack")
    ```
    """
    path = files.checked_path(path, "load_packed")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"load_packed: no such file: {path!r}."
            if not os.path.exists(path) else
            f"load_packed: {path!r} is not a file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"load_packed: {path!r} is not a packed model (not a zip "
            "archive); packed models are written by keras_prune.save_packed."
        )
    try:
        header, arrays = _read_packed(path)
    except files.DAMAGE as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"load_packed: {path!r} is damaged or not a keras-prune packed "
            f"file ({type(error).__name__}: {first})."
        ) from None
    return _rebuild(path, header, arrays, custom_objects)


def _read_packed(path):
    """`(header, arrays)` of a packed file; raises one of `files.DAMAGE`."""
    limit = os.path.getsize(path) * 1100 + 2**20  # DEFLATE's ratio ≤ 1032
    with zipfile.ZipFile(path) as archive:
        try:
            header = json.loads(files.member(archive, HEADER, limit))
        except (KeyError, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(
                f"load_packed: {path!r} is not a packed model (no "
                f"{FORMAT!r} {HEADER}); packed models are written by "
                "keras_prune.save_packed."
            )
        if header.get("version") not in READABLE:
            raise ValueError(
                f"load_packed: {path!r} has format version "
                f"{header.get('version')!r}; this keras_prune reads versions "
                f"{', '.join(map(str, READABLE))}. Upgrade keras_prune to "
                "read it."
            )
        if header["version"] == 1:
            chunks = [files.member(archive, e["member"], limit)
                      for e in header["weights"]]
        else:
            blob = files.member(archive, WEIGHTS, limit)
            chunks = []
        for e in header["weights"]:
            if math.prod(e["shape"]) > 8 * limit:
                raise files.Damaged(
                    f"weight {e['path']!r} declares shape {e['shape']}, "
                    "more than this file can hold")
        if header["version"] != 1:
            for e in header["weights"]:
                data = blob[e["offset"]: e["offset"] + e["length"]]
                if len(data) != e["length"] or e["offset"] < 0:
                    raise files.Damaged(
                        f"weight {e['path']!r} lies outside the stored data")
                chunks.append(_inflate(data) if e["deflated"] else data)
        try:
            arrays = [
                _unpack_tensor(entry, chunk)
                for entry, chunk in zip(header["weights"], chunks)
            ]
        except ValueError as error:
            if str(error).startswith("load_packed:"):
                raise
            raise files.Damaged(str(error)) from None
    return header, arrays


def _rebuild(path, header, arrays, custom_objects):
    """The model of a read packed file, its weights set."""
    try:
        model = keras.models.model_from_json(
            json.dumps(header["model"]), custom_objects=custom_objects
        )
    except Exception as error:  # any failure of a damaged config: one line
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"load_packed: the model config in {path!r} could not be "
            f"rebuilt ({type(error).__name__}: {first}). If it uses custom "
            "layers, pass them as custom_objects={'Name': Class}; otherwise "
            "the file is damaged."
        ) from None
    found = [(v.path, tuple(v.shape)) for v in model.weights]
    stored = [(e["path"], tuple(e["shape"])) for e in header["weights"]]
    if [s for _, s in found] != [s for _, s in stored]:
        raise ValueError(
            f"load_packed: the model rebuilt from {path!r} has weights "
            f"{found}, but the file stores {stored}."
        )
    model.set_weights(arrays)
    return model


def _check_packable(model, caller):

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{caller} expects a keras Model, got {type(model).__name__}."
        )
    wrappers = pruned_layers(model)
    if wrappers:
        raise ValueError(
            f"{caller}: model {model.name!r} still has {len(wrappers)} "
            "pruning wrapper(s) (PruneLowMagnitude); call "
            "keras_prune.strip_pruning(model) first: a packed file holds a "
            "plain Keras model."
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"{caller}: model {model.name!r} is not built (it has no "
            "weights); call it on data or build it first."
        )


def _keras_quantized(model):
    """Layers quantized by Keras (`model.quantize`), as "name (mode)"."""
    return sorted(
        {
            f"{layer.name} ({layer.quantization_mode})"
            for layer in all_layers(model)
            if layer is not model and getattr(layer, "quantization_mode", None)
        }
    )


def _model_json(model):
    try:
        return model.to_json()
    except NotImplementedError as error:
        raise ValueError(
            f"save_packed: model {model.name!r} ({type(model).__name__}) is "
            "subclassed and has no get_config(), so it cannot be rebuilt "
            "from the packed file. Implement get_config() (and register the "
            "class with keras.saving.register_keras_serializable), or build "
            "the model with the Functional or Sequential API."
        ) from error


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _write_member(archive, name, data, deflate=True):
    """Writes `data` deflated, or plain when DEFLATE does not make it smaller
    (or `deflate` is False)."""
    compress = zipfile.ZIP_DEFLATED
    if not deflate or len(_deflate(data)) >= len(data):
        compress = zipfile.ZIP_STORED
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compress
    archive.writestr(info, data, compresslevel=9)


def _deflate(data):
    """Raw DEFLATE (level 9, no zlib header or checksum: the zip's CRC of
    the whole member covers it)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def _inflate(data):
    return zlib.decompress(data, -15)


def _quantize(array):
    """Symmetric int8, one scale per slice of the last axis."""
    peak = np.max(np.abs(array.reshape(-1, array.shape[-1])), axis=0)
    scale = (peak / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    quantized = np.clip(np.round(array / safe), -127, 127).astype(np.int8)
    return quantized, scale


def _pack_tensor(array, values):
    """Returns the header entry (without path/member) and the bytes."""
    floating = np.issubdtype(array.dtype, np.floating)
    entry = {
        "shape": list(array.shape),
        "dtype": array.dtype.name,
        "nonzeros": int(np.count_nonzero(array)),
        "values_dtype": array.dtype.name,
    }
    scales = b""
    if values == "int8" and floating and array.ndim >= 2 and array.size:
        array, scale = _quantize(array)
        scales = scale.tobytes()
        entry["values_dtype"] = "int8"
        entry["scale_shape"] = list(scale.shape)
    flat = array.reshape(-1)
    candidates = [("dense", b"", flat.tobytes(), {})]
    positions = np.flatnonzero(flat)
    if positions.size < flat.size:
        nonzero = flat[positions].tobytes()
        mask = np.packbits(flat != 0).tobytes()
        candidates.append(("bitmask", mask, nonzero, {}))
        gaps = np.diff(positions, prepend=-1) - 1
        largest = int(gaps.max()) if gaps.size else 0
        dtype = next(t for t in _UNSIGNED if largest <= np.iinfo(t).max)
        candidates.append(
            ("index", gaps.astype(dtype).tobytes(), nonzero,
             {"index_dtype": np.dtype(dtype).name})
        )
    coding, where, data, extra = min(
        candidates,
        key=lambda c: min(len(_deflate(c[1] + c[2])), len(c[1] + c[2])),
    )
    entry.update(coding=coding, **extra)
    entry["nbytes"] = {
        "positions": len(where),
        "values": len(data),
        "scales": len(scales),
    }
    return entry, where + data + scales


def _unpack_tensor(entry, data):
    lengths = entry["nbytes"]
    where = data[: lengths["positions"]]
    stored = data[lengths["positions"] : lengths["positions"] + lengths["values"]]
    scales = data[lengths["positions"] + lengths["values"] :]
    shape = tuple(entry["shape"])
    size = math.prod(shape)
    stored = np.frombuffer(stored, dtype=entry["values_dtype"])
    coding = entry["coding"]
    if coding == "dense":
        flat = stored.copy()
    else:
        if coding == "bitmask":
            bits = np.unpackbits(np.frombuffer(where, np.uint8), count=size)
            positions = np.flatnonzero(bits)
        elif coding == "index":
            gaps = np.frombuffer(where, entry["index_dtype"]).astype(np.int64)
            positions = np.cumsum(gaps + 1) - 1
        else:
            raise ValueError(
                f"load_packed: unknown coding {coding!r} of weight "
                f"{entry['path']!r}; the file is damaged or from a newer "
                "keras_prune."
            )
        flat = np.zeros(size, stored.dtype)
        flat[positions] = stored
    array = flat.reshape(shape)
    if "scale_shape" in entry:
        scale = np.frombuffer(scales, np.float32)
        array = (array.astype(np.float32) * scale).astype(entry["dtype"])
    return array
