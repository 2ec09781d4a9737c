"""`keras_prune.export` of stripped models on every backend: ONNX (loaded
back with onnxruntime, zeros kept in the initializers), SavedModel, LiteRT
(with the converter's sparse encoding); each checked against Keras's
outputs, and every refusal's message."""

import importlib.util
import os

import keras
import numpy as np
import pytest

import keras_prune
from tests.conftest import numpy

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def stripped():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            # No pooling layer: jax2onnx 0.17 writes NHWC pooling windows
            # that onnxruntime rejects (docs/compression.md).
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    pruned, _ = keras_prune.prune_now(model, 0.8)
    return keras_prune.strip_pruning(pruned)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((5, 12, 12, 1)).astype("float32")


def kernels(model):
    return [numpy(layer.kernel) for layer in model.layers
            if hasattr(layer, "kernel")]


def test_onnx_matches_and_keeps_zeros(stripped, x, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    before = [numpy(w).copy() for w in stripped.weights]
    result = keras_prune.export(stripped, tmp_path / "m.onnx")
    assert result.format == "onnx" and result.backend == BACKEND
    assert result.bytes == os.path.getsize(tmp_path / "m.onnx")
    assert 0 < result.zipped_bytes < result.bytes

    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = numpy(stripped.predict_on_batch(x))
    assert np.max(np.abs(out - expected)) <= 1e-5 * np.max(np.abs(expected))

    # Every kernel is an initializer (up to layout: conv kernels become
    # OIHW): the same values, so the same exact zeros.
    initializers = [
        onnx.numpy_helper.to_array(t)
        for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer
    ]
    for kernel in kernels(stripped):
        matches = [
            a for a in initializers
            if a.size == kernel.size
            and np.array_equal(np.sort(a.ravel()), np.sort(kernel.ravel()))
        ]
        assert matches, f"no initializer holds the kernel {kernel.shape}"
        assert np.sum(matches[0] == 0) == np.sum(kernel == 0) > 0
    for a, w in zip(before, stripped.weights):
        assert a.tobytes() == numpy(w).tobytes()


@pytest.mark.skipif(BACKEND == "torch", reason="refused on torch (tested)")
def test_saved_model_matches(stripped, x, tmp_path):
    tf = pytest.importorskip("tensorflow")
    result = keras_prune.export(stripped, tmp_path / "sm",
                                format="tf_saved_model")
    assert os.path.isdir(result.path) and result.bytes > 0
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    served = loaded.serve(x).numpy()
    np.testing.assert_allclose(
        served, numpy(stripped.predict_on_batch(x)), rtol=1e-5, atol=1e-6)


def _interpret(path, x):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older stacks: TensorFlow's own
        from tensorflow.lite import Interpreter
    interpreter = Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="LiteRT: TensorFlow")
def test_litert_matches_and_sparse_encoding_is_smaller(stripped, x, tmp_path):
    expected = numpy(stripped.predict_on_batch(x))
    dense = keras_prune.export(stripped, tmp_path / "d.tflite", format="litert")
    sparse = keras_prune.export(stripped, tmp_path / "s.tflite",
                                format="litert", sparsity=True)
    for result in (dense, sparse):
        out = _interpret(result.path, x)
        assert np.max(np.abs(out - expected)) <= 1e-5 * np.max(np.abs(expected))
    # 80 % zeros: the sparse encoding stores the non-zeros and indices.
    assert sparse.bytes < 0.6 * dense.bytes, (sparse.bytes, dense.bytes)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="supported there")
def test_litert_refused_off_tensorflow(stripped, tmp_path):
    if BACKEND == "jax":
        with pytest.raises(ValueError, match=(
                r"format='litert' on the jax backend: Keras exports LiteRT "
                r"from the TensorFlow and PyTorch backends only; run with "
                r"KERAS_BACKEND=tensorflow")):
            keras_prune.export(stripped, tmp_path / "m.tflite", format="litert")
    elif importlib.util.find_spec("litert_torch") is None:
        with pytest.raises(ImportError, match=(
                r"format='litert' on the torch backend needs litert-torch "
                r"\(or export from KERAS_BACKEND=tensorflow\): pip install "
                r"'keras-prune\[export\]'")):
            keras_prune.export(stripped, tmp_path / "m.tflite", format="litert")
    assert not os.path.exists(tmp_path / "m.tflite")


@pytest.mark.skipif(BACKEND != "torch", reason="torch only")
def test_saved_model_on_torch_names_torch_xla(stripped, tmp_path):
    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla installed")
    with pytest.raises(ImportError, match=r"needs torch_xla .* instead\): pip install"):
        keras_prune.export(stripped, tmp_path / "sm", format="tf_saved_model")


def test_missing_package_names_the_extra(stripped, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ImportError, match=(
            rf"format='onnx' on the {BACKEND} backend needs onnx: pip "
            r"install 'keras-prune\[export\]'")):
        keras_prune.export(stripped, tmp_path / "m.onnx")


def test_bad_input_is_refused_before_any_work(stripped, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        keras_prune.export(stripped, target)
    assert target.read_bytes() == b"mine"
    with pytest.raises(ValueError, match=r"format must be one of \['onnx', "
                       r"'tf_saved_model', 'litert'\], got 'tflite'"):
        keras_prune.export(stripped, tmp_path / "a", format="tflite")
    with pytest.raises(ValueError, match=r"sparsity=True applies to "
                       r"format='litert'.*not 'onnx'"):
        keras_prune.export(stripped, tmp_path / "b.onnx", sparsity=True)
    pruned = keras_prune.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match=r"still has pruning wrappers; call "
                       r"keras_prune.strip_pruning\(model\) first"):
        keras_prune.export(pruned, tmp_path / "c.onnx")
    with pytest.raises(TypeError, match="expects a keras Model, got Dense"):
        keras_prune.export(keras.layers.Dense(2), tmp_path / "d.onnx")
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_structurally_pruned_model_exports(x, tmp_path):
    """apply_plan's smaller model is a plain Keras model: it exports too."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    plan = keras_prune.plan_pruning(model, ratio=0.5)
    small = keras_prune.apply_plan(model, plan)
    assert small.layers[1].filters == 8
    result = keras_prune.export(small, tmp_path / "small.onnx")
    session = ort.InferenceSession(result.path)
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = numpy(small.predict_on_batch(x))
    assert np.max(np.abs(out - expected)) <= 1e-5 * np.max(np.abs(expected))
