"""fold_batchnorm: BatchNormalization folded into the layer before it, on
every backend.

Every BatchNormalization gets random statistics (mean, variance, gamma,
beta), so that a fold into the wrong channels, a missing bias or a wrong
epsilon changes the outputs; the folded model must predict what the
original predicts (<= 1e-5 of the output magnitude), and the original must
stay as it was."""

import functools
import re

import keras
import numpy as np
import pytest

from keras_prune import BatchNormFolding
from keras_prune import fold_batchnorm
from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from tests.conftest import numpy

L = keras.layers

# Zero initializers, then random weights from numpy (`randomize`): on JAX a
# random initializer compiles once per kernel shape.
Conv1D = functools.partial(L.Conv1D, kernel_initializer="zeros")
Conv2D = functools.partial(L.Conv2D, kernel_initializer="zeros")
Conv3D = functools.partial(L.Conv3D, kernel_initializer="zeros")
Conv2DTranspose = functools.partial(L.Conv2DTranspose,
                                    kernel_initializer="zeros")
Dense = functools.partial(L.Dense, kernel_initializer="zeros")
DepthwiseConv1D = functools.partial(L.DepthwiseConv1D,
                                    depthwise_initializer="zeros")
DepthwiseConv2D = functools.partial(L.DepthwiseConv2D,
                                    depthwise_initializer="zeros")
SeparableConv1D = functools.partial(
    L.SeparableConv1D, depthwise_initializer="zeros",
    pointwise_initializer="zeros")
SeparableConv2D = functools.partial(
    L.SeparableConv2D, depthwise_initializer="zeros",
    pointwise_initializer="zeros")


def randomize(model):
    """Random weights; BatchNorm variances and gammas in [0.5, 1.5], means
    and betas ~ N(0, 1), so that every part of the fold shows; kernels
    ~ N(0, 1 / fan_in), so that deep models stay well-conditioned."""
    rng = np.random.default_rng(1)
    for layer in _all_layers(model):
        for w in layer.weights:
            if "variance" in w.name or w.name == "gamma":
                value = rng.uniform(0.5, 1.5, w.shape)
            elif w.name in ("moving_mean", "beta"):
                value = rng.normal(0, 1, w.shape)
            else:  # kernels and biases, scaled like Glorot's
                fan_in = np.prod(w.shape[:-1]) if len(w.shape) > 1 else 4
                value = rng.normal(0, 1 / np.sqrt(fan_in), w.shape)
            w.assign(value.astype(w.dtype))
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def batchnorms(model):
    return sum(isinstance(layer, L.BatchNormalization)
               for layer in _all_layers(model))


def images(shape, n=2):
    return np.random.default_rng(0).random((n,) + shape).astype("float32")


def relative_error(expected, got):
    """Max |difference| / max |expected|, over every output; the absolute
    difference for an output that is all zeros (0/0 would be NaN, which
    no tolerance check catches)."""
    errors = []
    for e, g in zip(keras.tree.flatten(expected), keras.tree.flatten(got)):
        e, g = numpy(e), numpy(g)
        scale = float(np.max(np.abs(e))) or 1.0
        errors.append(float(np.max(np.abs(e - g))) / scale)
    return max(errors)


def check_fold(model, x, folded):
    """Folds `model`, checks the outputs, that the original is untouched and
    shares nothing, that `folded` (path -> producer) went and the other
    BatchNormalizations stayed; returns the `BatchNormFolding`."""
    before = [numpy(w).copy() for w in model.weights]
    n_layers, n_bn = len(model.layers), batchnorms(model)
    result = fold_batchnorm(model)
    assert isinstance(result, BatchNormFolding)
    assert result.folded == folded
    assert len(result.folded) + len(result.not_folded) == n_bn
    assert batchnorms(result.model) == n_bn - len(folded)
    expected = model.predict_on_batch(x)
    got = result.model.predict_on_batch(x)
    assert relative_error(expected, got) <= 1e-5
    assert len(model.layers) == n_layers
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(w))
    old = {id(v) for v in model.weights}
    assert not old & {id(v) for v in result.model.weights}
    assert not {id(la) for la in _all_layers(model)} & {
        id(la) for la in _all_layers(result.model)}
    return result


def single(producer, shape, **bn):
    """Input -> producer -> BatchNormalization -> ReLU."""
    inputs = keras.Input(shape)
    x = L.BatchNormalization(name="bn", **bn)(producer(inputs))
    return randomize(keras.Model(inputs, L.ReLU()(x)))


# Producers by input shape: name -> layer. One model per shape, each
# producer in its own branch: Input -> producer -> BatchNormalization -> ReLU.
PRODUCERS = {
    (8, 8, 3): {
        "conv2d": lambda n: Conv2D(6, 3, padding="same", name=n),
        "conv2d_no_bias": lambda n: Conv2D(6, 3, use_bias=False, name=n),
        "conv2d_strided_groups": lambda n: Conv2D(6, 3, strides=2, groups=3,
                                                  name=n),
        "conv2d_transpose": lambda n: Conv2DTranspose(5, 3, strides=2,
                                                      name=n),
        "depthwise_1": lambda n: DepthwiseConv2D(3, use_bias=False, name=n),
        "depthwise_2": lambda n: DepthwiseConv2D(3, depth_multiplier=2,
                                                 name=n),
        "separable2d": lambda n: SeparableConv2D(5, 3, depth_multiplier=2,
                                                 name=n),
    },
    (10, 4): {
        "conv1d": lambda n: Conv1D(5, 3, name=n),
        "depthwise1d_3": lambda n: DepthwiseConv1D(3, depth_multiplier=3,
                                                   name=n),
        "separable1d": lambda n: SeparableConv1D(4, 3, use_bias=False,
                                                 name=n),
        "dense_3d_input": lambda n: Dense(7, use_bias=False, name=n),
    },
    (5,): {"dense": lambda n: Dense(7, name=n)},
    (4, 4, 4, 2): {"conv3d": lambda n: Conv3D(4, 2, use_bias=False, name=n)},
}


@pytest.mark.parametrize("shape", list(PRODUCERS), ids=str)
def test_folds_into_each_producer(shape):
    inputs = keras.Input(shape)
    outputs = [
        L.ReLU(name=name + "_relu")(L.BatchNormalization(name=name + "_bn")(
            make(name)(inputs)))
        for name, make in PRODUCERS[shape].items()]
    model = randomize(keras.Model(inputs, outputs))
    result = check_fold(model, images(shape), {
        name + "_bn": name for name in PRODUCERS[shape]})
    assert result.not_folded == {}
    for name in PRODUCERS[shape]:
        new = result.model.get_layer(name)
        assert new.use_bias and new.weights[-1].name == "bias"
        assert all(w.dtype == "float32" for w in new.weights)
        assert new.get_config() == dict(
            model.get_layer(name).get_config(), use_bias=True)
    assert [la.name for la in result.model.layers][1:] == [
        la.name for la in model.layers[1:]
        if not isinstance(la, L.BatchNormalization)]


def test_center_and_scale_off():
    for center, scale in [(False, True), (True, False), (False, False)]:
        model = single(Conv2D(4, 3, name="p"), (6, 6, 2), center=center,
                       scale=scale, epsilon=0.1)
        check_fold(model, images((6, 6, 2)), {"bn": "p"})


class SubclassedBatchNorm(L.BatchNormalization):
    pass


def test_not_foldable_stays_with_its_reason():
    inputs = keras.Input((8, 8, 3))
    first = L.BatchNormalization(name="bn_input")(inputs)
    relu = Conv2D(4, 3, activation="relu", name="relu_conv")(first)
    x = L.BatchNormalization(name="bn_relu")(relu)
    shared = Conv2D(4, 1, name="two_readers")(x)
    a = L.BatchNormalization(name="bn_two_readers")(shared)
    x = L.Add()([a, shared])
    x = L.BatchNormalization(name="bn_add")(x)
    out = Conv2D(4, 1, name="output_conv")(x)
    bn_out = L.BatchNormalization(name="bn_output")(out)
    fixed = Conv2D(4, 1, name="fixed_conv")(bn_out)
    fixed = L.BatchNormalization(name="bn_training")(fixed, training=False)
    sub = SubclassedBatchNorm(name="bn_subclass")(
        Conv2D(4, 1, name="sub_conv")(fixed))
    ok = L.BatchNormalization(name="bn_ok")(Conv2D(4, 1, name="ok_conv")(sub))
    axis = Dense(4, name="axis_dense")(L.GlobalAveragePooling2D()(ok))
    axis = L.Reshape((4, 1))(axis)
    axis = L.BatchNormalization(axis=1, name="bn_axis1")(axis)
    model = randomize(keras.Model(inputs, [out, axis], name="mixed"))
    result = check_fold(model, images((8, 8, 3)), {"bn_ok": "ok_conv"})
    assert result.not_folded == {
        "bn_input": "its input is a model input",
        "bn_relu": "its input comes from Conv2D 'relu_conv', which has "
        "activation 'relu' (not linear)",
        "bn_two_readers": "its input comes from Conv2D 'two_readers', whose "
        "output 2 layers read (a fold would change what the others get)",
        "bn_add": "its input comes from Add 'add', not a Conv, Dense, "
        "DepthwiseConv or SeparableConv",
        "bn_output": "its input comes from Conv2D 'output_conv', whose "
        "output is also a model output",
        "bn_training": "it is called with training=False in the graph",
        "bn_subclass": "it is a SubclassedBatchNorm, a subclass of "
        "BatchNormalization (its call may differ)",
        "bn_axis1": "it normalizes axis 1, not the last (channel) axis",
    }
    summary = result.summary()
    assert summary.splitlines()[1].split() == ["bn_ok", "->", "ok_conv"]
    assert summary.endswith("1 folded, 8 kept ('mixed').")


def test_shared_layers_are_not_folded():
    inputs = keras.Input((6, 6, 3))
    conv = Conv2D(3, 1, name="conv")
    bn = L.BatchNormalization(name="bn")
    x = bn(conv(inputs))
    y = L.BatchNormalization(name="bn_after_shared")(conv(x))
    z = bn(Conv2D(3, 1, name="other")(inputs))
    model = randomize(keras.Model(inputs, L.Add()([x, y, z])))
    result = check_fold(model, images((6, 6, 3)), {})
    assert result.not_folded == {
        "bn": "it is called 2 times",
        "bn_after_shared": "its input comes from Conv2D 'conv', which is "
        "called 2 times",
    }


def resnet_block(inputs, filters, stride, name):
    y = Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
               name=name + "_conv1")(inputs)
    y = L.ReLU()(L.BatchNormalization(name=name + "_bn1")(y))
    y = Conv2D(filters, 3, padding="same", use_bias=False,
               name=name + "_conv2")(y)
    y = L.BatchNormalization(name=name + "_bn2")(y)
    x = Conv2D(filters, 1, strides=stride, use_bias=False,
               name=name + "_shortcut")(inputs)
    x = L.BatchNormalization(name=name + "_bn_shortcut")(x)
    return L.ReLU()(L.Add()([x, y]))


def resnet():
    inputs = keras.Input((12, 12, 3))
    x = Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(x))
    x = resnet_block(x, 16, 2, "block")
    x = L.GlobalAveragePooling2D()(x)
    return randomize(keras.Model(inputs, Dense(10, name="logits")(x)))


def test_resnet_block_with_add():
    model = resnet()
    x = images((12, 12, 3), n=4)
    result = check_fold(model, x, {
        "stem_bn": "stem", "block_bn1": "block_conv1",
        "block_bn2": "block_conv2", "block_bn_shortcut": "block_shortcut",
    })
    assert batchnorms(result.model) == 0
    assert len(result.model.layers) == len(model.layers) - 4
    # Nothing is left that training=True would change: no batch statistics.
    np.testing.assert_array_equal(
        numpy(result.model(x, training=True)),
        numpy(result.model(x, training=False)))


def test_nested_models_fold_inside_and_report_the_boundary():
    inner = keras.Sequential([
        keras.Input((6, 6, 3)), Conv2D(4, 3, name="inner_conv"),
        L.BatchNormalization(name="inner_bn"), L.ReLU(),
        Conv2D(4, 1, name="inner_last"),
    ], name="inner")
    inputs = keras.Input((6, 6, 3))
    x = L.BatchNormalization(name="after_inner")(inner(inputs))
    y = L.BatchNormalization(name="after_inner_again")(inner(inputs * 2.0))
    model = randomize(keras.Model(inputs, L.Add()([x, y])))
    result = check_fold(model, images((6, 6, 3)),
                        {"inner/inner_bn": "inner/inner_conv"})
    why = ("its input comes from Sequential 'inner', a nested model "
           "(folding across a model boundary is not done)")
    assert result.not_folded == {"after_inner": why,
                                 "after_inner_again": why}
    nested = result.model.get_layer("inner")
    assert isinstance(nested, keras.Model) and batchnorms(nested) == 0


def test_sequential_becomes_functional():
    model = randomize(keras.Sequential([
        keras.Input((5,)), Dense(8, name="d1"),
        L.BatchNormalization(name="bn1"), L.ReLU(), Dense(3, name="d2"),
        L.BatchNormalization(name="bn2"),
    ]))
    result = check_fold(model, images((5,)), {"bn1": "d1", "bn2": "d2"})
    assert not isinstance(result.model, keras.Sequential)
    assert [la.name for la in result.model.layers][1:] == ["d1", "re_lu",
                                                          "d2"]


def test_saves_and_loads_as_plain_keras(tmp_path):
    model = resnet()
    x = images((12, 12, 3))
    folded = fold_batchnorm(model).model
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  folded.predict(x, verbose=0))
    assert batchnorms(loaded) == 0
    assert loaded.get_layer("block_conv1").get_config()[
        "kernel_initializer"]["class_name"] == "Zeros"


def test_pruned_mobilenet_v2_folds(monkeypatch):
    # Zero kernels, then numpy's random weights: on JAX the random
    # initializer compiles once per kernel shape (seconds for MobileNetV2).
    monkeypatch.setattr(keras.initializers.GlorotUniform, "__call__",
                        lambda self, shape, dtype=None: keras.ops.zeros(
                            shape, dtype))
    model = randomize(keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35,
        classifier_activation=None))
    small = apply_plan(model, plan_pruning(model, ratio=0.5))
    n_bn = batchnorms(small)
    assert n_bn == 52
    result = fold_batchnorm(small)
    assert len(result.folded) == n_bn and result.not_folded == {}
    assert result.folded["bn_Conv1"] == "Conv1"
    assert result.folded["block_16_depthwise_BN"] == "block_16_depthwise"
    assert result.folded["Conv_1_bn"] == "Conv_1"
    assert batchnorms(result.model) == 0
    assert len(result.model.layers) == len(small.layers) - n_bn
    x = images((32, 32, 3))
    assert relative_error(small.predict(x, verbose=0),
                          result.model.predict(x, verbose=0)) <= 1e-5


class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=re.escape(
            "fold_batchnorm: model must be a Functional or Sequential "
            "keras.Model, got str ('model.keras'). Pass the Keras model "
            "itself (a saved file: keras.saving.load_model(path) first; a "
            "layer: keras.Sequential([keras.Input(shape), layer]))."
    )):
        fold_batchnorm("model.keras")
    with pytest.raises(ValueError, match=re.escape(
            "fold_batchnorm: model must be a Functional or Sequential "
            "keras.Model, got Dense (<Dense name=dense, built=False>)."
    )):
        fold_batchnorm(L.Dense(2))
    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match=re.escape(
            "fold_batchnorm: Net is a subclassed keras.Model, whose layer "
            "graph cannot be read. Build it with the Functional API "
            "(keras.Model(inputs, outputs)) or as a keras.Sequential."
    )):
        fold_batchnorm(net)
    with pytest.raises(ValueError, match=re.escape(
            "fold_batchnorm: model 'empty' is not built. Give it an Input "
            "(keras.Sequential([keras.Input(shape), ...])) or call it once "
            "before folding."
    )):
        fold_batchnorm(keras.Sequential([L.Dense(2)], name="empty"))
