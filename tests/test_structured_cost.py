"""model_cost: exact parameters and MACs (one sample), checked by hand."""

import functools

import keras
import pytest

from keras_prune.structured import ModelCost
from keras_prune.structured import model_cost

L = keras.layers
Conv2D = functools.partial(L.Conv2D, kernel_initializer="zeros")
Dense = functools.partial(L.Dense, kernel_initializer="zeros")


def test_convolutions_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = Conv2D(4, 3, padding="same", name="conv")(inputs)        # 8x8x4
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, name="dw",
                          depthwise_initializer="zeros")(x)      # 6x6x4
    x = L.SeparableConv2D(6, 3, depth_multiplier=2, name="sep",
                          depthwise_initializer="zeros",
                          pointwise_initializer="zeros")(x)      # 4x4x6
    x = L.Conv2DTranspose(5, 2, strides=2, name="up",
                          kernel_initializer="zeros")(x)         # 8x8x5
    x = Conv2D(4, 3, groups=2, use_bias=False, name="grouped")(
        L.ZeroPadding2D()(Conv2D(4, 1, name="to4")(x)))       # 8x8x4
    x = L.GlobalAveragePooling2D()(x)
    outputs = Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    cost = model_cost(model)

    expected = {
        "conv": (3 * 3 * 3 * 4 + 4, 8 * 8 * 9 * 3 * 4),
        "bn": (4 * 4, 0),
        "dw": (9 * 4 + 4, 6 * 6 * 9 * 4),
        "sep": (9 * 4 * 2 + 8 * 6 + 6, 4 * 4 * (9 * 8 + 8 * 6)),
        "up": (2 * 2 * 6 * 5 + 5, 4 * 4 * 2 * 2 * 6 * 5),
        "to4": (5 * 4 + 4, 8 * 8 * 5 * 4),
        "grouped": (9 * 2 * 4, 8 * 8 * 9 * 2 * 4),
        "logits": (4 * 10 + 10, 4 * 10),
    }
    for name, (params, macs) in expected.items():
        got = cost.layer(name)
        assert (got.params, got.macs) == (params, macs), name
    assert cost.params == model.count_params()
    assert cost.macs == sum(m for _, m in expected.values())
    assert not cost.uncounted
    assert isinstance(cost, ModelCost)
    table = cost.summary()
    assert "grouped" in table and f"{cost.macs:,} MACs" in table
    assert "zero_padding2d" not in table  # nothing to count
    assert "zero_padding2d" in cost.summary(zeros=True)


def test_1d_3d_dense_on_sequences_and_einsum():
    inputs = keras.Input((10, 3))
    x = L.Conv1D(4, 3, name="c1", kernel_initializer="zeros")(inputs)   # 8x4
    x = L.Conv1DTranspose(2, 3, strides=2, padding="same", name="t1",
                          kernel_initializer="zeros")(x)                # 16x2
    x = Dense(5, name="seq_dense")(x)                                   # 16x5
    x = L.EinsumDense("abc,cd->abd", (16, 7), bias_axes="d",
                      name="einsum", kernel_initializer="zeros")(x)
    x = L.EinsumDense("...c,cd->...d", (3,), name="ellipsis",
                      kernel_initializer="zeros")(x)
    model = keras.Model(inputs, x)
    cost = model_cost(model)
    assert cost.layer("c1").macs == 8 * 3 * 3 * 4
    assert cost.layer("t1").macs == 8 * 3 * 4 * 2   # input positions
    assert cost.layer("seq_dense").macs == 16 * 2 * 5
    assert cost.layer("seq_dense").params == 2 * 5 + 5
    assert cost.layer("einsum").macs == 16 * 5 * 7
    assert cost.layer("einsum").params == 5 * 7 + 7
    assert cost.layer("ellipsis").macs == 16 * 7 * 3
    assert cost.params == model.count_params()

    inputs = keras.Input((4, 4, 4, 2))
    x = L.Conv3D(3, 3, padding="same", name="c3",
                 kernel_initializer="zeros")(inputs)
    x = L.Conv3DTranspose(2, 2, name="t3", kernel_initializer="zeros")(x)
    cost = model_cost(keras.Model(inputs, x))
    assert cost.layer("c3").macs == 64 * 27 * 2 * 3
    assert cost.layer("t3").macs == 64 * 8 * 3 * 2


def test_multi_head_attention():
    query = keras.Input((5, 6))
    value = keras.Input((9, 8))
    mha = L.MultiHeadAttention(2, 4, value_dim=3, output_shape=7, name="mha",
                               kernel_initializer="zeros")
    model = keras.Model([query, value], mha(query, value))
    cost = model_cost(model)
    projections = (5 * 6 * 2 * 4      # query
                   + 9 * 8 * 2 * 4    # key (= value)
                   + 9 * 8 * 2 * 3    # value
                   + 5 * 2 * 3 * 7)   # output
    attention = 5 * 9 * 2 * (4 + 3)
    assert cost.layer("mha").macs == projections + attention
    assert cost.params == model.count_params() == cost.layer("mha").params


def test_nested_and_shared_layers_count_every_call():
    block = keras.Sequential([
        keras.Input((6, 6, 4)),
        Conv2D(4, 3, padding="same", name="inner"),
        L.ReLU(),
    ], name="block")
    inputs = keras.Input((6, 6, 4))
    x = block(block(inputs))           # the nested model, called twice
    shared = Dense(3, name="shared")
    a = shared(L.GlobalAveragePooling2D()(x))
    b = shared(L.GlobalMaxPooling2D()(x))
    model = keras.Model(inputs, L.Add()([a, b]))
    cost = model_cost(model)
    inner = cost.layer("block/inner")
    assert inner.calls == 2
    assert inner.params == 9 * 4 * 4 + 4
    assert inner.macs == 2 * 36 * 9 * 4 * 4
    assert cost.layer("shared").calls == 2
    assert cost.layer("shared").macs == 2 * 4 * 3
    assert cost.params == model.count_params()


def test_uncounted_layers_are_listed_never_zero():
    inputs = keras.Input((None, 3))
    x = L.Conv1D(4, 3, name="conv", kernel_initializer="zeros")(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.LSTM(2, name="lstm", kernel_initializer="zeros",
               recurrent_initializer="zeros")(x)
    x = keras.ops.exp(x)  # `+`, `-` and `*` are counted (0 MACs)
    model = keras.Model(inputs, x)
    cost = model_cost(model)
    uncounted = {c.path: c.note for c in cost.uncounted}
    assert set(uncounted) >= {"conv", "double", "lstm"}
    assert "unknown size" in uncounted["conv"]
    assert "no MAC rule for Lambda" in uncounted["double"]
    assert "no MAC rule for LSTM" in uncounted["lstm"]
    assert any("plain operation" in note for note in uncounted.values())
    assert cost.macs == 0
    assert cost.params == model.count_params()
    assert "not counted" in cost.summary()
    assert cost.to_dict()["per_layer"][0]["path"] == "conv"


def test_bad_input():
    with pytest.raises(ValueError, match="Functional or Sequential"):
        model_cost(L.Dense(3))
    cost = model_cost(keras.Sequential([keras.Input((3,)), Dense(2)]))
    with pytest.raises(ValueError, match="No layer 'nope'"):
        cost.layer("nope")
    assert cost.macs == 6


def test_gated_attention_counts_its_gate():
    query = keras.Input((5, 6))
    value = keras.Input((9, 8))
    mha = L.MultiHeadAttention(2, 4, value_dim=3, use_gate=True, name="mha",
                               kernel_initializer="zeros")
    model = keras.Model([query, value], mha(query, value))
    cost = model_cost(model)
    ungated = (5 * 6 * 2 * 4 + 9 * 8 * 2 * 4 + 9 * 8 * 2 * 3 + 5 * 2 * 3 * 6
               + 5 * 9 * 2 * (4 + 3))
    assert cost.layer("mha").macs == ungated + 5 * 6 * 2 * 3
    assert cost.params == model.count_params()
