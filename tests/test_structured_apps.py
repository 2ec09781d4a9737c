"""keras.applications at half the channels, on every backend.

ResNet50 (residual adds across every stage) and EfficientNetB0 (depthwise
convs, squeeze-and-excitation gates, input normalization) built with
`weights=None` at 32x32; BatchNorm statistics are randomized so that their
slicing is checked. The pruned model must equal the original whose
consumers ignore the removed channels (<= 1e-5); MobileNetV2 is in
test_structured.py. Each model is built once: on JAX every new kernel shape
compiles its random initializer, tens of seconds for these models."""

import keras
import numpy as np
import pytest

from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify

L = keras.layers


def randomize_batchnorm(model):
    """Random BatchNorm parameters and statistics, in one `set_weights`:
    gammas and variances in [0.5, 1.5], betas and means N(0, 0.5)."""
    rng = np.random.default_rng(1)
    values = model.get_weights()
    for i, w in enumerate(model.weights):
        kind = w.path.rsplit("/", 1)[-1]
        if kind in ("gamma", "moving_variance"):
            values[i] = rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
        elif kind in ("beta", "moving_mean"):
            values[i] = rng.normal(0, 0.5, w.shape).astype(w.dtype)
    model.set_weights(values)
    return model


def application(name):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None)
    return randomize_batchnorm(model)


def prune_half(model):
    before = model.get_weights()
    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    assert verify(model, plan, x, small) <= 1e-5
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    blocked = [g["name"] for g in plan.groups if g["blocked"]]
    assert blocked == ["predictions"]
    return plan, small


@pytest.mark.parametrize("name", ["ResNet50", "EfficientNetB0"])
def test_application_at_half_the_channels(name):
    model = application(name)
    plan, small = prune_half(model)
    assert small.count_params() < 0.3 * model.count_params()
    assert small.get_layer("predictions").kernel.shape[1] == 10
    names = [g["name"] for g in plan.groups]
    if name == "ResNet50":
        # The projection shortcut and every block's last conv of a stage
        # lose the same channels (residual adds).
        stage = next(n for n in names if "conv2_block1_0_conv" in n)
        assert set(stage.split("+")) == {
            "conv2_block1_0_conv", "conv2_block1_3_conv",
            "conv2_block2_3_conv", "conv2_block3_3_conv"}
        assert small.get_layer("conv2_block3_3_conv").filters == 128
    else:
        # Squeeze-and-excitation: the expansion conv and the gate couple.
        assert "block2a_expand_conv+block2a_se_expand" in names
        assert small.get_layer("block2a_expand_conv").filters == 48
