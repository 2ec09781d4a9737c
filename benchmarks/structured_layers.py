"""Where the latency of the ResNet-style CNN goes, layer by layer, dense vs
pruned: why structured pruning's speed-up falls short of its MAC reduction.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/structured_layers.py \\
        --backends tensorflow,jax,torch --repeats 100 --write   # ~1 min each
    KERAS_BACKEND=jax .venv/bin/python benchmarks/structured_layers.py

Each backend of `--backends` (default: KERAS_BACKEND, else tensorflow) runs
in its own worker process. The model of benchmarks/structured.py (random
weights: latency does not depend on them) and its 50 % L2 plan
(`plan_pruning(ratio=0.5)` + `apply_plan`). Every layer of both models is
wrapped alone in a one-layer Functional model on its real input shapes and
timed like structured.py times whole models (its `_forward`: compiled
forward pass, output fetched to the host; 1 thread; dense and pruned layer
calls interleaved; medians), at batch 1 and 32. Printed per layer type:
summed time dense / pruned, their ratio, and the MAC ratio; plus the whole
models and an identity model (the cost of one compiled call that computes
nothing).
"""

import collections

import common

BATCHES = (1, 32)


def _alone(layer):
    """`layer` in a one-layer model on its input shapes, and those shapes."""
    import keras

    node = layer._inbound_nodes[0]
    shapes = [tuple(t.shape[1:]) for t in node.input_tensors]
    inputs = [keras.Input(s) for s in shapes]
    outputs = layer(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs), shapes


def _macs(model):
    from keras_prune.structured import model_cost

    return {c.path: c.macs or 0 for c in model_cost(model).per_layer}


def work(spec, log):
    """Every layer alone, dense and pruned, on this worker's backend:
    {"batches": {batch: {"repeats", "empty_s", "types": [...], "whole_s"}}}
    (seconds)."""
    import keras
    import numpy as np

    from keras_prune.structured import apply_plan
    from keras_prune.structured import plan_pruning
    from structured import _forward
    from structured import interleaved
    from structured import resnet_cnn

    common.limit_threads()
    keras.utils.set_random_seed(0)
    dense = resnet_cnn()
    pruned = apply_plan(dense, plan_pruning(dense, ratio=0.5))
    macs = [_macs(dense), _macs(pruned)]
    rng = np.random.default_rng(0)
    layers = [layer for layer in dense.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    result = {"backend": keras.backend.backend(), "layers": len(layers),
              "macs": [sum(m.values()) for m in macs], "batches": {}}
    identity = keras.Sequential([keras.Input((1,)),
                                 keras.layers.Activation("linear")])
    for batch in BATCHES:
        repeats = spec["repeats"] if batch == 1 else max(
            spec["repeats"] // 4, 10)
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
        result["batches"][str(batch)] = {
            "repeats": repeats, "empty_s": empty, "whole_s": whole_t,
            "types": [{"type": name, "layers": n, "dense_s": d,
                       "pruned_s": p, "macs": [md, mp]}
                      for name, (d, p, n, md, mp) in per_type.items()]}
        log(f"batch {batch} done")
    return result


def measure(args, data):
    data["runs"] = common.run_backends("structured_layers.py", args.backends,
                                       {"repeats": args.repeats}, threads=0)


def render(data):
    lines = []
    add = lines.append
    for r in data["runs"]:
        add(f"**{r['backend']}**: {r['layers']} layers, MACs "
            f"{r['macs'][0] / 1e6:.2f} M -> {r['macs'][1] / 1e6:.2f} M")
        for batch in BATCHES:
            b = r["batches"][str(batch)]
            empty = b["empty_s"]
            add("")
            add(f"batch {batch} ({b['repeats']} interleaved calls per layer; "
                f"one compiled call that computes nothing: "
                f"{1e3 * empty:.3f} ms)")
            add("")
            add("| layer type | layers | dense ms | pruned ms | "
                "dense / pruned | MACs dense / pruned |")
            add("|---|---|---|---|---|---|")
            total = [0.0, 0.0]
            for t in sorted(b["types"], key=lambda t: -t["dense_s"]):
                d, p = t["dense_s"], t["pruned_s"]
                md, mp = t["macs"]
                total[0] += d
                total[1] += p
                mac = f"{md / mp:.2f}×" if mp else ""
                add(f"| {t['type']} | {t['layers']} | {1e3 * d:.3f} | "
                    f"{1e3 * p:.3f} | {d / p:.2f}× | {mac} |")
            n = r["layers"]
            whole = b["whole_s"]
            add(f"| sum of the layers alone | {n} | {1e3 * total[0]:.3f} | "
                f"{1e3 * total[1]:.3f} | {total[0] / total[1]:.2f}× | |")
            add(f"| ... minus {n} empty calls | | "
                f"{1e3 * (total[0] - n * empty):.3f} | "
                f"{1e3 * (total[1] - n * empty):.3f} | "
                f"{(total[0] - n * empty) / (total[1] - n * empty):.2f}× | |")
            add(f"| whole model, one call | | {1e3 * whole[0]:.3f} | "
                f"{1e3 * whole[1]:.3f} | {whole[0] / whole[1]:.2f}× | "
                f"{r['macs'][0] / r['macs'][1]:.2f}× |")
        add("")
    return "\n".join(lines).rstrip("\n")


def main(argv=None):
    parser = common.parser("structured_layers.py", __doc__,
                           backends=[common.default_backend()])
    parser.add_argument("--repeats", type=int, default=200,
                        help="interleaved calls at batch 1 (32: a quarter)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
