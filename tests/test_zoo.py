"""The model zoo, pruned as a user would: keras-hub backbones (small configs,
random weights, nothing downloaded) and keras.applications models.

For each, on every backend: `prune_low_magnitude` + three training steps
with `UpdatePruningStep`, then every Dense / EinsumDense / Conv kernel at
any depth has exactly the requested sparsity, or `SparsityReport` lists it
as not prunable with its reason; `strip_pruning` keeps the model's class and
computes what the pruned model computes; the stripped model saves and
reloads; `prune_now(0.7, "global")` prunes 70 % of every prunable weight
together. Causal language models generate the same tokens pruned, stripped
and reloaded.
"""

import keras
from keras.src.applications import convnext, densenet, efficientnet, resnet
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from tests.conftest import numpy

hub = pytest.importorskip("keras_hub")
L = keras.layers
KERNEL_LAYERS = (L.Dense, L.EinsumDense, L.Conv1D, L.Conv2D, L.Conv3D,
                 L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose)


def _transformer(cls, **extra):
    return lambda: cls(vocabulary_size=64, num_layers=2, hidden_dim=16,
                       intermediate_dim=32, **extra)


HUB = {
    "bert": _transformer(hub.models.BertBackbone, num_heads=2,
                         max_sequence_length=16),
    "gpt2": _transformer(hub.models.GPT2Backbone, num_heads=2,
                         max_sequence_length=16),
    "llama": _transformer(hub.models.LlamaBackbone, num_query_heads=4,
                          num_key_value_heads=2),
    "gemma": _transformer(hub.models.GemmaBackbone, num_query_heads=2,
                          num_key_value_heads=1, head_dim=8),
    "vit": lambda: hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
        hidden_dim=16, mlp_dim=32),
    "deit": lambda: hub.models.DeiTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
        hidden_dim=16, intermediate_dim=32),
    "dinov2": lambda: hub.models.DINOV2Backbone(
        patch_size=14, num_layers=2, hidden_dim=16, num_heads=2,
        intermediate_dim=32, image_shape=(28, 28, 3)),
    "mit": lambda: hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2],
        hidden_dims=[8, 16], image_shape=(32, 32, 3)),
    "resnet": lambda: hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(32, 32, 3)),
}

def _resnet_v1(x):  # ResNet50's bottleneck blocks, two stages of one
    x = resnet.stack_residual_blocks_v1(x, 16, 1, stride1=1, name="conv2")
    return resnet.stack_residual_blocks_v1(x, 32, 1, name="conv3")


# keras.applications' own builders; the deep ones with fewer repeats of the
# same blocks (the layer types and couplings are the originals', CI's time
# is not: DenseNet121 alone takes 80 s a backend).
APPS = {
    "mobilenet": lambda: keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10),
    "mobilenet_v2": lambda: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10),
    "mobilenet_v3": lambda: keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10,
        include_preprocessing=False),
    "efficientnet": lambda: efficientnet.EfficientNet(
        0.25, 0.1, 32, input_shape=(32, 32, 3), weights=None, classes=10),
    "resnet": lambda: resnet.ResNet(
        _resnet_v1, False, True, input_shape=(32, 32, 3), weights=None,
        classes=10),
    "densenet": lambda: densenet.DenseNet(
        [1, 1, 1, 1], input_shape=(32, 32, 3), weights=None, classes=10),
    "convnext": lambda: convnext.ConvNeXt(
        [1, 1, 1, 1], [8, 16, 32, 64], input_shape=(32, 32, 3),
        include_preprocessing=False, weights=None, classes=10),
}

# keras-hub 0.32's DINOv2Backbone recomputes its interpolated position
# embeddings from the trained ones when it is loaded: any trained DINOv2
# (pruned or not) computes other outputs after a save and load.
RELOADS_DIFFERENTLY = {"dinov2"}


def _inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    found = {}
    for tensor in model.inputs:
        shape = [4] + [8 if d is None else d for d in tensor.shape[1:]]
        if "int" in tensor.dtype:
            if "mask" in tensor.name:
                value = np.ones(shape, tensor.dtype)
            else:
                high = 2 if "segment" in tensor.name else 60
                value = rng.integers(0, high, size=shape).astype(tensor.dtype)
        else:
            value = rng.normal(size=shape).astype("float32")
        found[tensor.name] = value
    if not isinstance(model.input, dict):
        return list(found.values())[0]
    return found


def _numpy(structure):
    return keras.tree.map_structure(numpy, structure)


def _assert_same(a, b, atol=0.0):
    for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def _check_coverage(stripped, sparsity):
    """Every kernel-holding layer: the requested zeros, or a reason."""
    # Copies name their inner layers anew: read the stripped model's own.
    reasons = {w.path: w.reason for w in keras_prune.SparsityReport(
        stripped).weights}
    checked = 0
    for layer in stripped._flatten_layers():
        if not isinstance(layer, KERNEL_LAYERS):
            continue
        for variable in layer._trainable_variables:
            if "kernel" not in variable.name:
                continue
            values = numpy(variable)
            zeros = int(np.sum(values == 0))
            if zeros == num_pruned(values.size, sparsity):
                checked += 1
                continue
            # Not pruned: the report says why, and it is not "prunable".
            assert reasons.get(variable.path), (variable.path, zeros)
    assert checked > 0


def _prune_train_strip(model, tmp_path, name):
    x = _inputs(model)
    expected = _numpy(model(x))
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.PolynomialDecay(0.0, 0.5, 0, 2, frequency=1))
    assert type(pruned) is type(model)
    _assert_same(_numpy(pruned(x)), expected, atol=1e-5)
    targets = keras.tree.map_structure(np.zeros_like, expected)
    pruned.compile("adam", keras.tree.map_structure(lambda _: "mse", expected))
    pruned.fit(x, targets, epochs=3, batch_size=4, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    out = _numpy(pruned(x))
    stripped = keras_prune.strip_pruning(pruned)
    assert type(stripped) is type(model) and not pruned_layers(stripped)
    _assert_same(_numpy(stripped(x)), out)
    _check_coverage(stripped, 0.5)
    path = tmp_path / f"{name}.keras"
    stripped.save(path)
    loaded = keras.saving.load_model(path)
    if name in RELOADS_DIFFERENTLY:
        # The zeros survive the reload, whatever keras-hub recomputes.
        for a, b in zip(loaded.get_weights(), stripped.get_weights()):
            np.testing.assert_array_equal(a == 0, b == 0)
    else:
        _assert_same(_numpy(loaded(x)), out)
    _, report = keras_prune.prune_now(model, 0.7, scope="global")
    assert report.prunable_zeros == num_pruned(report.prunable_total, 0.7)


@pytest.mark.parametrize("name", sorted(HUB))
def test_keras_hub_backbone(name, tmp_path):
    keras.utils.set_random_seed(0)
    _prune_train_strip(HUB[name](), tmp_path, name)


@pytest.mark.parametrize("name", sorted(APPS))
def test_keras_application(name, tmp_path):
    keras.utils.set_random_seed(0)
    _prune_train_strip(APPS[name](), tmp_path, name)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_pruned_language_models_generate(name, tmp_path):
    keras.utils.set_random_seed(0)
    task = {"gpt2": hub.models.GPT2CausalLM,
            "llama": hub.models.LlamaCausalLM}[name]
    model = task(backbone=HUB[name](), preprocessor=None)
    prompt = {"token_ids": np.array([[5, 6, 7, 0, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}
    pruned, _ = keras_prune.prune_now(model, 0.5, scope="layer")
    assert type(pruned) is task and pruned_layers(pruned)

    def generate(lm):
        lm.compile(sampler="greedy")
        return lm.generate(prompt, max_length=8, stop_token_ids=None)[
            "token_ids"]

    tokens = generate(pruned)
    stripped = keras_prune.strip_pruning(pruned)
    np.testing.assert_array_equal(generate(stripped), tokens)
    stripped.save(tmp_path / "lm.keras")
    loaded = keras.saving.load_model(tmp_path / "lm.keras")
    np.testing.assert_array_equal(generate(loaded), tokens)
    report = keras_prune.SparsityReport(pruned)
    embedding = [w for w in report.weights
                 if w.path.endswith("token_embedding/embeddings")]
    if name == "gpt2":  # tied: also the output projection, left dense
        assert embedding[0].reason.startswith("tied token embedding")
    else:  # untied: the input table is pruned like any embedding
        assert embedding[0].prunable
