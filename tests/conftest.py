"""Test set-up shared by every backend run.

Two simulated CPU devices so that the distribution tests (JAX DataParallel,
TF MirroredStrategy) run on this 2-core machine; this must happen before the
backend initializes, hence at conftest import.
"""

import importlib
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.utils.set_random_seed(0)
    yield
    # Without Python's full garbage collection (free_memory=True): one
    # gc.collect() over a heap holding TensorFlow, JAX or PyTorch costs
    # ~0.5 s a test, a third of the suite's time (JAX: 23.8 min with it,
    # 14.4 without; peak memory 6 GB). Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def digits():
    from keras_prune.datasets import load_digits

    return load_digits()


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """Imports benchmark modules by name; results files go to tmp_path.

    The scripts' modules (common, patterns, structured, ...) are forgotten
    afterwards, so that no test imports them by accident under those names.
    """
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path / "results"))
    yield importlib.import_module
    for name in set(sys.modules) - before:
        if str(BENCHMARKS) in (getattr(sys.modules[name], "__file__", "")
                               or ""):
            del sys.modules[name]


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))
