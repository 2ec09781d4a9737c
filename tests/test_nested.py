"""Prunable layers held inside custom layers (how keras-hub's transformer
blocks hold theirs), models `clone_model` cannot rebuild as they are, and
pruning in place: every kernel is found, trained, stripped and saved, or is
named with the reason it stays dense."""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.analysis.inventory import UNREACHED
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from tests.conftest import numpy

L = keras.layers


@keras.saving.register_keras_serializable(package="tests_nested")
class Block(L.Layer):
    """A transformer-like block: sub-layers in a private attribute, a list,
    a tuple and a dict; attention called by keyword with a Python flag."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self._attention = L.MultiHeadAttention(2, 4, name="attention")
        self._up = L.Dense(2 * units, activation="relu", name="up")
        self.downs = [L.Dense(units, name="down")]
        self.pair = (L.Dense(units, name="first"), L.Dense(units, name="second"))
        self.named = {"gate": L.Dense(units, name="gate")}

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._attention.build(input_shape, input_shape)
        self._up.build(input_shape)
        self.downs[0].build(input_shape[:-1] + (2 * self.units,))
        for layer in self.pair + (self.named["gate"],):
            layer.build(input_shape[:-1] + (self.units,))

    def call(self, x, training=None):
        x = x + self._attention(query=x, value=x, training=training,
                                use_causal_mask=False)
        x = self.downs[0](self._up(x))
        x = self.pair[1](self.pair[0](x))
        return self.named["gate"](x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# Every kernel of a block: attention's 4 (8x2x4, 8x2x4, 8x2x4, 2x4x8), up
# 8x16, down 16x8, first, second and gate 8x8.
BLOCK_KERNELS = 4 * 64 + 128 + 128 + 3 * 64


def block_model(name="blocks"):
    inputs = keras.Input((5, 8))
    x = Block(name="block")(inputs)
    x = L.Flatten()(x)
    outputs = L.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 5, 8)).astype("float32"),
            rng.integers(0, 3, size=n).astype("int32"))


def kernels(model):
    """Every kernel variable at any depth, by path."""
    return {
        v.path: v for layer in model._flatten_layers()
        for v in layer._trainable_variables if v.name == "kernel"
    }


def _fit(model, epochs=2):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[keras_prune.UpdatePruningStep()])


def test_kernels_inside_custom_layers_are_pruned_trained_and_stripped(
        tmp_path):
    model = block_model()
    before = [w.copy() for w in model.get_weights()]
    x, _ = data()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0, frequency=2))
    # The head, the attention layer as one, and the six Dense in the block.
    assert sorted(w.layer.name for w in pruned_layers(pruned)) == [
        "attention", "down", "first", "gate", "head", "second", "up"]
    np.testing.assert_allclose(numpy(pruned(x)), numpy(model(x)), atol=1e-6)
    _fit(pruned)
    found = kernels(pruned)
    assert len(found) == 10
    for path, variable in found.items():
        zeros = int(np.sum(numpy(variable) == 0))
        assert zeros == num_pruned(int(np.prod(variable.shape)), 0.5), path
    expected = numpy(pruned(x))
    stripped = keras_prune.strip_pruning(pruned)
    assert not pruned_layers(stripped)
    assert isinstance(stripped.get_layer("block"), Block)
    np.testing.assert_array_equal(numpy(stripped(x)), expected)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(numpy(loaded(x)), expected)
    # The pruned model is whole again after the strip, the input untouched.
    np.testing.assert_array_equal(numpy(pruned(x)), expected)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert not pruned_layers(model)


def test_prune_now_counts_kernels_at_any_depth():
    model = block_model()
    pruned, report = keras_prune.prune_now(model, 0.7, scope="global")
    assert report.prunable_total == BLOCK_KERNELS + 40 * 3
    assert report.prunable_zeros == num_pruned(BLOCK_KERNELS + 120, 0.7)


class Net(keras.Model):
    """A Functional subclass with its own constructor and a method, as
    keras-hub's backbones are: clone_model would rebuild a plain
    Functional without `describe`."""

    def __init__(self, units=6, **kwargs):
        inputs = keras.Input((4,))
        hidden = L.Dense(units, activation="relu", name="hidden")(inputs)
        outputs = L.Dense(2, name="out")(hidden)
        super().__init__(inputs, outputs, **kwargs)
        self.units = units
        self.hidden_layer = self.get_layer("hidden")

    def describe(self):
        return f"net of {self.units}"

    def get_config(self):
        return {"units": self.units, "name": self.name}


keras.saving.register_keras_serializable(package="tests_nested")(Net)


def test_a_functional_subclass_keeps_its_class(tmp_path):
    model = Net()
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    with pytest.warns(UserWarning, match=(
            "model 'net' copied whole: clone_model would rebuild Net 'net' "
            "as a plain Functional model")):
        pruned = keras_prune.prune_low_magnitude(
            model, keras_prune.ConstantSparsity(0.5, 0))
    assert type(pruned) is Net and pruned.describe() == "net of 6"
    # The attribute and the graph node are the same wrapper.
    assert pruned.hidden_layer is pruned.layers[1]
    assert isinstance(pruned.hidden_layer, keras_prune.PruneLowMagnitude)
    keras_prune.update_masks(pruned, 0)
    expected = numpy(pruned(x))
    stripped = keras_prune.strip_pruning(pruned)
    assert type(stripped) is Net and not pruned_layers(stripped)
    np.testing.assert_array_equal(numpy(stripped(x)), expected)
    stripped.save(tmp_path / "net.keras")
    loaded = keras.saving.load_model(tmp_path / "net.keras")
    assert type(loaded) is Net
    np.testing.assert_array_equal(numpy(loaded(x)), expected)
    assert not pruned_layers(model)


@keras.saving.register_keras_serializable(package="tests_nested")
class Stubborn(L.Dense):
    """A Dense whose config does not rebuild it (keras-hub's Llama decoder
    and ViT patching layers do the same)."""

    def get_config(self):
        return {**super().get_config(), "bogus": 1}


def test_a_layer_whose_config_does_not_rebuild_it_is_copied_as_an_object():
    inputs = keras.Input((4,))
    hidden = Stubborn(3, name="stubborn")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(hidden))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    with pytest.warns(UserWarning, match=(
            "Stubborn 'stubborn' does not rebuild from its config "
            r"\(Unrecognized keyword arguments passed to Stubborn: "
            r"\{'bogus': 1\}\): copied as an object")):
        pruned = keras_prune.prune_low_magnitude(model)
    assert [w.layer.name for w in pruned_layers(pruned)] == ["stubborn", "out"]
    np.testing.assert_array_equal(numpy(pruned(x)), numpy(model(x)))
    # Nothing shared: the object copy has its own variables.
    assert not {id(v) for v in model.weights} & {id(v) for v in pruned.weights}


def test_inplace_wraps_a_functional_model_where_it_is():
    model = block_model()
    x, _ = data()
    expected = numpy(model(x))
    same = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0, frequency=2),
        inplace=True)
    assert same is model
    assert len(pruned_layers(model)) == 7
    np.testing.assert_allclose(numpy(model(x)), expected, atol=1e-6)
    _fit(model, epochs=1)
    assert all(int(numpy(w.pruning_step)) >= 0 for w in pruned_layers(model))


class Hidden(L.Layer):
    """Holds its Dense inside a helper object: no wrapper can replace it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(4, name="reached")
        self.box = type("Box", (), {})()
        self.box.dense = L.Dense(4, name="hidden_dense")
        self._tracker.track(self.box.dense)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.box.dense.build(input_shape)

    def call(self, x):
        return self.dense(x) + self.box.dense(x)


def test_a_layer_out_of_reach_is_named_loudly():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Hidden(name="hidden")(inputs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = keras_prune.prune_low_magnitude(model)
    messages = [str(w.message) for w in caught]
    assert any(
        "could not wrap 1 layer(s) with prunable weights in model" in m
        and "'hidden_dense' (Dense)" in m for m in messages), messages
    assert [w.layer.name for w in pruned_layers(pruned)] == ["reached"]
    report = keras_prune.SparsityReport(pruned)
    reasons = {w.path: w.reason for w in report.weights}
    (path,) = [p for p in reasons if p.endswith("hidden_dense/kernel")]
    assert reasons[path] == UNREACHED


def test_strip_without_wrappers_inside_graph_layers_keeps_the_clone_path():
    # Plain Functional with wrappers only in its graph: strip_pruning rebuilds
    # it with clone_model (a plain Functional, not compiled), as before.
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(3, name="d")(inputs))
    pruned = keras_prune.prune_low_magnitude(model)
    pruned.compile("sgd", "mse")
    stripped = keras_prune.strip_pruning(pruned)
    assert not stripped.compiled and not pruned_layers(stripped)
    assert os.path.basename(type(stripped).__module__) == (
        "keras.src.models.functional")
