"""Where the latency of the ResNet-style CNN goes, layer by layer, dense vs
pruned: why structured pruning's speed-up falls short of its MAC reduction.

Not part of the test suite. Run per backend from the repository root:

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/structured_layers.py
    KERAS_BACKEND=jax .venv/bin/python benchmarks/structured_layers.py
    KERAS_BACKEND=torch .venv/bin/python benchmarks/structured_layers.py

The model of benchmarks/structured.py (random weights: latency does not
depend on them) and its 50 % L2 plan (`plan_pruning(ratio=0.5)` +
`apply_plan`). Every layer of both models is wrapped alone in a one-layer
Functional model on its real input shapes and timed like structured.py
times whole models (its `_forward`: compiled forward pass, output fetched to
the host; 1 thread; dense and pruned layer calls interleaved; medians), at
batch 1 and 32. Printed per layer type: summed time dense / pruned, their
ratio, and the MAC ratio; plus the whole models and an identity model (the
cost of one compiled call that computes nothing). Results:
benchmarks/RESULTS.md, "Its CPU latency, layer by layer".
"""

import argparse
import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common import limit_threads  # noqa: E402
from structured import _forward  # noqa: E402
from structured import interleaved  # noqa: E402
from structured import resnet_cnn  # noqa: E402
from keras_prune.structured import apply_plan  # noqa: E402
from keras_prune.structured import model_cost  # noqa: E402
from keras_prune.structured import plan_pruning  # noqa: E402


def _alone(layer):
    """`layer` in a one-layer model on its input shapes, and those shapes."""
    node = layer._inbound_nodes[0]
    shapes = [tuple(t.shape[1:]) for t in node.input_tensors]
    inputs = [keras.Input(s) for s in shapes]
    outputs = layer(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs), shapes


def _macs(model):
    return {c.path: c.macs or 0 for c in model_cost(model).per_layer}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200,
                        help="interleaved calls at batch 1 (32: a quarter)")
    args = parser.parse_args()
    limit_threads()
    keras.utils.set_random_seed(0)
    dense = resnet_cnn()
    pruned = apply_plan(dense, plan_pruning(dense, ratio=0.5))
    macs = [_macs(dense), _macs(pruned)]
    rng = np.random.default_rng(0)
    layers = [layer for layer in dense.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    print(f"backend {keras.backend.backend()}, {len(layers)} layers, "
          f"MACs {sum(macs[0].values()) / 1e6:.2f} M -> "
          f"{sum(macs[1].values()) / 1e6:.2f} M")
    identity = keras.Sequential([keras.Input((1,)),
                                 keras.layers.Activation("linear")])
    for batch in (1, 32):
        repeats = args.repeats if batch == 1 else max(args.repeats // 4, 10)
        per_type = collections.defaultdict(lambda: [0.0, 0.0, 0, 0.0, 0.0])
        for layer in layers:
            pair, inputs = [], []
            for model in (dense, pruned):
                one, shapes = _alone(model.get_layer(layer.name))
                call, convert = _forward(one)
                x = [rng.standard_normal((batch,) + s).astype("float32")
                     for s in shapes]
                pair.append(call)
                inputs.append(convert(x[0]) if len(x) == 1
                              else [convert(a) for a in x])
            times = interleaved(pair, inputs, repeats, warmup=5)
            row = per_type[type(layer).__name__]
            row[0] += times[0]
            row[1] += times[1]
            row[2] += 1
            row[3] += macs[0].get(layer.name, 0)
            row[4] += macs[1].get(layer.name, 0)
        whole = [_forward(m) for m in (dense, pruned)]
        images = rng.standard_normal((batch, 28, 28, 1)).astype("float32")
        whole_t = interleaved([c for c, _ in whole],
                              [cv(images) for _, cv in whole], repeats, 5)
        call, convert = _forward(identity)
        (empty,) = interleaved([call], [convert(
            np.zeros((batch, 1), "float32"))], repeats, 5)
        print(f"\nbatch {batch} ({repeats} interleaved calls per layer; "
              f"one compiled call that computes nothing: "
              f"{1e3 * empty:.3f} ms)\n")
        print("| layer type | layers | dense ms | pruned ms | "
              "dense / pruned | MACs dense / pruned |")
        print("|---|---|---|---|---|---|")
        total = [0.0, 0.0]
        for name, (d, p, n, md, mp) in sorted(
                per_type.items(), key=lambda kv: -kv[1][0]):
            total[0] += d
            total[1] += p
            mac = f"{md / mp:.2f}×" if mp else ""
            print(f"| {name} | {n} | {1e3 * d:.3f} | {1e3 * p:.3f} | "
                  f"{d / p:.2f}× | {mac} |")
        n = len(layers)
        print(f"| sum of the layers alone | {n} | {1e3 * total[0]:.3f} | "
              f"{1e3 * total[1]:.3f} | {total[0] / total[1]:.2f}× | |")
        print(f"| ... minus {n} empty calls | | "
              f"{1e3 * (total[0] - n * empty):.3f} | "
              f"{1e3 * (total[1] - n * empty):.3f} | "
              f"{(total[0] - n * empty) / (total[1] - n * empty):.2f}× | |")
        print(f"| whole model, one call | | {1e3 * whole_t[0]:.3f} | "
              f"{1e3 * whole_t[1]:.3f} | {whole_t[0] / whole_t[1]:.2f}× | "
              f"{sum(macs[0].values()) / sum(macs[1].values()):.2f}× |")


if __name__ == "__main__":
    main()
