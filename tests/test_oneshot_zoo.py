"""Wanda and SparseGPT on keras-hub's language backbones as a user would
run them (Llama, Gemma, GPT-2, BERT built from small configs, random
weights, nothing downloaded), on every backend: exact N:M masks on every
Dense/EinsumDense kernel, the user's model untouched, strip + `.keras`
round trip computing the same outputs, and Keras's int8 quantization
keeping the pruned weights at zero."""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy
from tests.test_zoo import HUB
from tests.test_zoo import _inputs

hub = pytest.importorskip("keras_hub")


def kernels(model):
    """Every Dense/EinsumDense kernel of `model`, by path."""
    return {layer.kernel.path: numpy(layer.kernel)
            for layer in model._flatten_layers()
            if isinstance(layer, (keras.layers.Dense,
                                  keras.layers.EinsumDense))}


# Each backbone with one method here, the other elsewhere (tests/test_wanda.py
# prunes Llama by Wanda, tests/test_sparsegpt.py GPT-2 by SparseGPT), so both
# methods meet all four at half the suite's time.
CASES = [("llama", "sparsegpt"), ("gemma", "wanda"), ("gemma", "sparsegpt"),
         ("gpt2", "wanda"), ("bert", "sparsegpt")]


@pytest.mark.parametrize("name, criterion", CASES)
def test_language_backbone_prunes_2_4_end_to_end(name, criterion, tmp_path):
    model = HUB[name]()
    x = _inputs(model, seed=1)
    expected = keras.tree.map_structure(numpy, model(x))
    before = [numpy(v).copy() for v in model.weights]
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion=criterion, sparsity_m_by_n=(2, 4),
        calibration_data=x, batch_size=2)
    for a, v in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(v))
    keras.tree.map_structure(np.testing.assert_array_equal,
                             keras.tree.map_structure(numpy, model(x)),
                             expected)
    wrappers = pruned_layers(pruned)
    assert wrappers and all(isinstance(
        w.layer, (keras.layers.Dense, keras.layers.EinsumDense))
        for w in wrappers)
    assert keras_prune.check_n_m(pruned, 2, 4).ok
    for w in wrappers:
        keep = numpy(w.masks[0])
        assert (~keep).sum() == keep.size // 2, w.name
    assert set(report.reconstruction.errors()) == {
        w.prunable_weights[0].path for w in wrappers}
    stripped = keras_prune.strip_pruning(pruned)
    out = keras.tree.map_structure(numpy, pruned(x))
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5),
        keras.tree.map_structure(numpy, stripped(x)), out)
    stripped.save(tmp_path / "stripped.keras")
    loaded = keras.saving.load_model(tmp_path / "stripped.keras")
    keras.tree.map_structure(
        np.testing.assert_array_equal,
        keras.tree.map_structure(numpy, loaded(x)),
        keras.tree.map_structure(numpy, stripped(x)))
    zeros = {path: k == 0 for path, k in kernels(stripped).items()}
    assert sum(z.sum() for z in zeros.values()) == sum(
        numpy(w.masks[0]).size // 2 for w in wrappers)
    if criterion == "sparsegpt" and name in ("llama", "bert"):
        # int8 weights: every pruned weight quantizes to exactly 0.
        stripped.quantize("int8")
        layers = [layer for layer in stripped._flatten_layers()
                  if isinstance(layer, (keras.layers.Dense,
                                        keras.layers.EinsumDense))]
        assert len(layers) == len(zeros)
        for layer in layers:
            q = numpy(layer._kernel)
            assert str(q.dtype) == "int8", layer.name
            pruned_here = zeros[layer._kernel.path.replace("_kernel",
                                                            "kernel")]
            assert q.shape == pruned_here.shape
            assert (q[pruned_here] == 0).all(), layer.name
