"""Size accounting and the sparse packed format: round trips, sizes, errors."""

import json
import math
import os
import zipfile
import zlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.deploy import compression
from tests.conftest import numpy


def lenet_300_100():
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def small_cnn():
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def pruned_stripped(model, sparsity):
    """Random nonzero biases, then a global one-shot prune and strip."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    pruned, _ = keras_prune.prune_now(model, sparsity)
    return keras_prune.strip_pruning(pruned)


def inputs(model, n=4):
    shape = (n,) + tuple(model.inputs[0].shape)[1:]
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def codings(path):
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read(compression.HEADER))
    return {entry["path"]: entry for entry in header["weights"]}


@pytest.fixture(scope="module")
def lenet():
    keras.utils.set_random_seed(0)
    return pruned_stripped(lenet_300_100(), 0.9)


@pytest.mark.parametrize("build", [lenet_300_100, small_cnn])
def test_float32_round_trip_is_exact(build, tmp_path):
    model = pruned_stripped(build(), 0.8)
    path = compression.save_packed(model, tmp_path / "model.kpack")
    loaded = keras_prune.load_packed(path)
    assert type(loaded) is type(model)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for original, restored in zip(model.weights, loaded.weights):
        a, b = numpy(original), numpy(restored)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), original.path
    x = inputs(model)
    np.testing.assert_array_equal(
        loaded.predict_on_batch(x), model.predict_on_batch(x)
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "mixed_float16"])
def test_float32_values_keep_other_dtypes_exact(dtype, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(30, dtype=dtype),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )
    model = pruned_stripped(model, 0.7)
    loaded = keras_prune.load_packed(
        keras_prune.save_packed(model, tmp_path / "m.kpack")
    )
    for original, restored in zip(model.weights, loaded.weights):
        a, b = numpy(original), numpy(restored)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), original.path


def test_codings_follow_sparsity(tmp_path):
    model = pruned_stripped(small_cnn(), 0.8)
    path = keras_prune.save_packed(model, tmp_path / "model.kpack")
    entries = codings(path)
    # Prunable kernels are stored sparse, dense tensors (biases, BN) dense.
    for variable in model.weights:
        entry = entries[variable.path]
        assert entry["nonzeros"] == np.count_nonzero(numpy(variable))
        if variable.path.endswith("kernel"):
            assert entry["coding"] in ("bitmask", "index")
        elif entry["nonzeros"] == math.prod(entry["shape"]):
            assert entry["coding"] == "dense"


def test_index_coding_round_trips_very_sparse_tensor(tmp_path):
    model = keras.Sequential([keras.Input((500,)), keras.layers.Dense(400)])
    kernel = np.zeros((500, 400), "float32")
    rng = np.random.default_rng(2)
    # 0.2 % nonzeros with one gap of 150,000 zeros: needs uint32 gaps.
    positions = np.sort(rng.choice(np.arange(150_001, kernel.size), 400, False))
    kernel.reshape(-1)[positions] = rng.normal(size=400)
    kernel[0, 0] = 1.5
    model.layers[0].kernel.assign(kernel)
    path = keras_prune.save_packed(model, tmp_path / "model.kpack")
    entry = codings(path)[model.layers[0].kernel.path]
    assert entry["coding"] == "index"
    assert entry["index_dtype"] == "uint32"
    loaded = keras_prune.load_packed(path)
    assert numpy(loaded.layers[0].kernel).tobytes() == kernel.tobytes()


@pytest.mark.parametrize("build", [lenet_300_100, small_cnn])
def test_int8_keeps_zeros_and_stays_within_half_a_step(build, tmp_path):
    model = pruned_stripped(build(), 0.8)
    path = keras_prune.save_packed(model, tmp_path / "m.kpack", values="int8")
    loaded = keras_prune.load_packed(path)
    for original, restored in zip(model.weights, loaded.weights):
        a, b = numpy(original), numpy(restored)
        if a.ndim < 2:
            assert a.tobytes() == b.tobytes(), original.path
            continue
        np.testing.assert_array_equal(b[a == 0], 0)
        scale = np.max(np.abs(a.reshape(-1, a.shape[-1])), axis=0) / 127
        # Float32 rounding of q * scale adds up to an ulp of the value.
        assert np.all(np.abs(a - b) <= scale / 2 + 1e-6 * np.abs(a))
    x = inputs(model, 32)
    expected = model.predict_on_batch(x)
    error = np.max(np.abs(loaded.predict_on_batch(x) - expected))
    # Measured on the three backends: at most 0.010 for LeNet outputs up to
    # 1.8, 0.004 for CNN outputs up to 1.1 (0.6 % of the largest output).
    assert error <= 0.02 * np.max(np.abs(expected))


def test_sizes_at_90_percent_near_the_entropy_bound(lenet, tmp_path):
    size = keras_prune.model_size(lenet)
    s = 0.9
    entropy = -s * math.log2(s) - (1 - s) * math.log2(1 - s)
    bound = 32 / ((1 - s) * 32 + entropy)
    assert bound == pytest.approx(8.72, abs=0.01)
    # Measured on the three backends: 9.9x float32, 27.3x int8 (zipped
    # .keras: 8.4x). Magnitude pruning keeps the large glorot weights, whose
    # exponent bytes DEFLATE shortens, so float32 passes the bound's b = 32.
    assert size.ratio("packed_bytes") >= 8.0
    assert size.ratio("packed_int8_bytes") >= 20.0
    assert size.packed_bytes < size.zipped_keras_bytes < size.keras_bytes


def test_model_size_numbers_are_consistent(lenet, tmp_path):
    size = keras_prune.model_size(lenet)
    arrays = [numpy(v) for v in lenet.weights]
    assert size.parameters == lenet.count_params() == sum(a.size for a in arrays)
    assert size.nonzeros == sum(int(np.count_nonzero(a)) for a in arrays)
    assert size.dense_bytes == 4 * size.parameters
    lenet.save(tmp_path / "m.keras")
    assert size.keras_bytes == os.path.getsize(tmp_path / "m.keras")
    for values, field in (("float32", "packed_bytes"), ("int8", "packed_int8_bytes")):
        path = keras_prune.save_packed(lenet, tmp_path / f"{values}.kpack", values=values)
        assert getattr(size, field) == os.path.getsize(path)
    assert "packed (int8)" in str(size)
    assert size.to_dict()["nonzeros"] == size.nonzeros


def test_model_size_says_larger_for_a_larger_file():
    # A tiny dense model: its .keras file (config and metadata) is far larger
    # than its 60 bytes of weights; the summary says "larger", not "0.01x
    # smaller".
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    size = keras_prune.model_size(model)
    lines = dict(line.split("  ", 1) for line in str(size).splitlines())
    assert lines["dense bytes"].strip() == "60 B"
    larger = size.keras_bytes / size.dense_bytes
    assert lines[".keras file"].strip() == (
        f"{size.keras_bytes:,} B ({larger:.2f}x larger than dense)")


def test_model_size_does_not_modify_the_model(lenet):
    before = [numpy(v).copy() for v in lenet.weights]
    keras_prune.model_size(lenet)
    for a, v in zip(before, lenet.weights):
        assert a.tobytes() == numpy(v).tobytes()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_keras_quantize_after_strip_keeps_pruned_zeros(mode):
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, use_bias=False)]
    )
    final = pruned_stripped(model, 0.8)
    kernel = numpy(final.layers[0].kernel).copy()
    final.quantize(mode)
    # Row i of the output for the identity input is row i of the kernel
    # Keras computes with (int8/int4 values, scales, input quantization).
    effective = final.predict_on_batch(np.eye(64, dtype="float32"))
    np.testing.assert_array_equal(effective[kernel == 0], 0)
    assert np.max(np.abs(effective - kernel)) <= 0.1 * np.max(np.abs(kernel))


def test_keras_quantized_model_packs_exactly(tmp_path):
    final = pruned_stripped(lenet_300_100(), 0.8)
    final.quantize("int8")
    path = keras_prune.save_packed(final, tmp_path / "m.kpack")
    loaded = keras_prune.load_packed(path)
    for original, restored in zip(final.weights, loaded.weights):
        a, b = numpy(original), numpy(restored)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), original.path
    x = inputs(final)
    np.testing.assert_array_equal(
        loaded.predict_on_batch(x), final.predict_on_batch(x)
    )
    int8_kernel = codings(path)[final.layers[0].kernel.path]
    assert int8_kernel["dtype"] == "int8"
    assert int8_kernel["coding"] in ("bitmask", "index")
    size = keras_prune.model_size(final)
    assert size.packed_bytes == os.path.getsize(path)
    assert size.packed_int8_bytes is None and size.ratio("packed_int8_bytes") is None
    assert "n/a (quantized by Keras already)" in str(size)
    with pytest.raises(ValueError, match=r"already quantized by Keras.*'float32'"):
        keras_prune.save_packed(final, tmp_path / "q.kpack", values="int8")


def test_wrapped_model_must_be_stripped_first(tmp_path):
    pruned, _ = keras_prune.prune_now(lenet_300_100(), 0.5)
    path = tmp_path / "m.kpack"
    with pytest.raises(ValueError, match=r"3 pruning wrapper.*strip_pruning"):
        keras_prune.save_packed(pruned, path)
    with pytest.raises(ValueError, match=r"strip_pruning\(model\) first"):
        keras_prune.model_size(pruned)
    assert not path.exists()


def test_bad_values_argument_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"values='int4'.*'float32'.*'int8'"):
        keras_prune.save_packed(lenet_300_100(), tmp_path / "m", values="int4")


def test_refuses_to_overwrite_without_overwrite_true(tmp_path):
    path = tmp_path / "m.kpack"
    path.write_bytes(b"keep me")
    model = lenet_300_100()
    with pytest.raises(FileExistsError, match=r"m.kpack.*overwrite=True"):
        keras_prune.save_packed(model, path)
    assert path.read_bytes() == b"keep me"
    keras_prune.save_packed(model, path, overwrite=True)
    assert keras_prune.load_packed(path).count_params() == model.count_params()
    assert os.listdir(tmp_path) == ["m.kpack"]  # no temporary file left


def test_not_a_packed_model(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt.*not a packed model"):
        keras_prune.load_packed(text)
    other = tmp_path / "model.keras"
    lenet_300_100().save(other)
    with pytest.raises(ValueError, match=r"model.keras.*not a packed model"):
        keras_prune.load_packed(other)


def test_newer_format_version_asks_for_upgrade(tmp_path):
    path = keras_prune.save_packed(lenet_300_100(), tmp_path / "m.kpack")
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    header = json.loads(members[compression.HEADER])
    header["version"] = 99
    members[compression.HEADER] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"version 99.*Upgrade keras_prune"):
        keras_prune.load_packed(path)


def test_reads_version_1_files(tmp_path):
    """Version 1 stored one deflated zip member per tensor."""
    model = pruned_stripped(lenet_300_100(), 0.9)
    path = keras_prune.save_packed(model, tmp_path / "v2.kpack", values="int8")
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read(compression.HEADER))
        blob = archive.read(compression.WEIGHTS)
    assert header["version"] == 2
    members = {}
    for index, entry in enumerate(header["weights"]):
        data = blob[entry["offset"]: entry["offset"] + entry["length"]]
        if entry.pop("deflated"):
            data = zlib.decompress(data, -15)
        del entry["offset"], entry["length"]
        entry["member"] = f"weights/{index:04d}"
        members[entry["member"]] = data
    header["version"] = 1
    old = tmp_path / "v1.kpack"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(compression.HEADER, json.dumps(header))
        for name, data in members.items():
            archive.writestr(name, data)
    x = inputs(model)
    np.testing.assert_array_equal(
        numpy(keras_prune.load_packed(old).predict_on_batch(x)),
        numpy(keras_prune.load_packed(path).predict_on_batch(x)),
    )


class NoConfig(keras.Model):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.dense(x)


class AutoConfig(keras.Model):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_without_get_config(tmp_path):
    model = NoConfig(3)
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"NoConfig.*no get_config\(\)"):
        keras_prune.save_packed(model, tmp_path / "m.kpack")
    assert not (tmp_path / "m.kpack").exists()


def test_subclassed_model_needs_custom_objects(tmp_path):
    model = AutoConfig(3)
    model(np.zeros((1, 4), "float32"))
    path = keras_prune.save_packed(model, tmp_path / "m.kpack")
    with pytest.raises(ValueError, match=r"AutoConfig.*custom_objects="):
        keras_prune.load_packed(path)
    loaded = keras_prune.load_packed(path, custom_objects={"AutoConfig": AutoConfig})
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
