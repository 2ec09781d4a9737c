"""The pieces of one mask update of LeNet-300-100 (266 K weights), and an
in-graph exact selection for comparison: why frequency 1 costs what it does.

Not part of the test suite. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/update_cost.py \\
        --backends tensorflow,jax,torch --write
    KERAS_BACKEND=jax OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/update_cost.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/update_cost.py \\
        --in-fit       # the same calls inside fit (TensorFlow)

Each backend of `--backends` (default: KERAS_BACKEND, else tensorflow) runs
in its own worker process, which inherits the caller's thread settings.
Prints medians (ms) of: a whole `update_masks` of the three kernels; its
`compute_masks` (host |w| and selection) and `set_masks` (the assigns); each
assign alone; `np.partition` of the three kernels; on TensorFlow the same
assigns batched in one `tf.function`; on JAX an exact radix select written
in `jax.numpy` (two 16-bit histogram passes over the float bits, ties by
`cumsum`) jitted, for the largest kernel; and one steady update (constant
90 %, masks kept) as `UpdatePruningStep` makes it (on TensorFlow through
`SteadyUpdates`' compiled check) vs the host `update_masks`.
"""

import time

import common


def median_ms(fn, repeats=300):
    import numpy as np

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def radix_select_jax(n=784 * 300, sparsity=0.9):
    import jax
    import jax.numpy as jnp
    import numpy as np

    @jax.jit
    def keep_mask(w, k):
        bits = jax.lax.bitcast_convert_type(jnp.abs(w), jnp.int32)
        high = bits >> 16
        counts = jnp.cumsum(jnp.bincount(high, length=32768))
        b = jnp.searchsorted(counts, k, side="right")
        below = jnp.where(b > 0, counts[b - 1], 0)
        low = jnp.where(high == b, bits & 0xFFFF, 65536)
        counts2 = jnp.cumsum(jnp.bincount(low, length=65537))
        threshold = (b << 16) | jnp.searchsorted(counts2, k - below,
                                                 side="right")
        less = bits < threshold
        equal = bits == threshold
        ties = equal & (jnp.cumsum(equal) <= k - jnp.sum(less))
        return ~(less | ties)

    w = jnp.asarray(np.random.default_rng(0).standard_normal(n), "float32")
    k = int(round(sparsity * n))
    kept = int(keep_mask(w, k).sum())
    assert kept == n - k, (kept, n - k)
    return median_ms(lambda: keep_mask(w, k).block_until_ready(), 200)


def in_fit(rounds=4):
    """The same calls timed inside `fit`, from `on_train_batch_begin`.

    LeNet pruned with a schedule that updates only at step 0, trained one
    100-step epoch per measurement; a probe callback calls one of: nothing,
    an empty XLA-compiled `tf.function` (TensorFlow), the compiled steady
    check of `SteadyUpdates` alone, or the whole steady update, at every
    step. Returns {kind: [median probe ms, mean step ms]} (medians over
    `rounds` interleaved rounds).
    """
    import keras
    import numpy as np

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist
    from keras_prune.training.updater import MaskUpdater

    (x, y), _ = load_fashion_mnist()
    x = x[:12800].reshape(-1, 784).astype("float32") / 255
    y = y[:12800]
    keras.utils.set_random_seed(0)
    model = keras_prune.prune_low_magnitude(
        common.lenet(), keras_prune.ConstantSparsity(0.9, 0, frequency=10**6))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruner = MaskUpdater(model)
    pruner.update(0)
    layers = pruner.layers
    kinds = {"nothing": lambda: None,
             "whole steady update": lambda: pruner.update(5, layers)}
    pruner.steady.apply(layers, [0.9] * len(layers), 5)
    if pruner.steady._calls:
        import tensorflow as tf

        (check,) = pruner.steady._calls.values()
        counts = np.asarray(
            [n for w in layers for n in w._num_pruned(0.9)], "int32")
        empty = tf.function(lambda: tf.constant(1), jit_compile=True)
        kinds["empty compiled call"] = lambda: empty().numpy()
        kinds["compiled check alone"] = lambda: np.asarray(
            check(counts, np.int32(5)))

    class Probe(keras.callbacks.Callback):
        def __init__(self, fn):
            super().__init__()
            self.fn, self.spent, self.stamps = fn, [], []

        def on_train_batch_begin(self, batch, logs=None):
            start = time.perf_counter()
            self.stamps.append(start)
            self.fn()
            self.spent.append(time.perf_counter() - start)

        def on_epoch_end(self, epoch, logs=None):
            self.stamps.append(time.perf_counter())

    results = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, fn in kinds.items():
            probe = Probe(fn)
            model.fit(x, y, batch_size=128, epochs=1, verbose=0,
                      shuffle=False,
                      callbacks=[probe, keras_prune.UpdatePruningStep()])
            results[kind].append((np.median(probe.spent[1:]) * 1e3,
                                  np.mean(np.diff(probe.stamps)[1:]) * 1e3))
    return {kind: [float(np.median(np.asarray(v)[:, 0])),
                   float(np.median(np.asarray(v)[:, 1]))]
            for kind, v in results.items()}


def pieces():
    """[[name, median ms], ...] of the update's pieces (module docstring)."""
    import keras
    import numpy as np

    import keras_prune
    from keras_prune.backend import host_view
    from keras_prune.core.layers import pruned_layers
    from keras_prune.core.wrapper import _baked
    from keras_prune.training.updater import MaskUpdater

    backend = keras.backend.backend()
    model = common.lenet()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.PolynomialDecay(0.0, 0.9, 0, 1000, frequency=1))
    wrappers = pruned_layers(pruned)
    sparsity = [0.5]

    def update():
        sparsity[0] += 1e-5
        for wrapper in wrappers:
            wrapper.update_masks(sparsity[0], 5)

    rows = [("update_masks, 3 kernels", median_ms(update))]
    rows.append(("  compute_masks", median_ms(
        lambda: [w.compute_masks(0.5) for w in wrappers])))
    masks = [w.compute_masks(0.5) for w in wrappers]
    rows.append(("  set_masks", median_ms(
        lambda: [w.set_masks(m, 5) for w, m in zip(wrappers, masks)])))
    first = wrappers[0]
    variable, keep = first.prunable_weights[0], masks[0][0][0]
    rows += [
        ("    assign baked weights (235 K)", median_ms(
            lambda: variable.assign(_baked(host_view(variable), keep)))),
        ("    assign mask (235 K)", median_ms(
            lambda: first.masks[0].assign(keep))),
        ("    assign threshold", median_ms(
            lambda: first.thresholds[0].assign(0.1))),
        ("    assign step", median_ms(lambda: first.pruning_step.assign(5))),
    ]
    kernels = [np.asarray(host_view(w.prunable_weights[0])).copy()
               for w in wrappers]
    rows.append(("np.abs + np.partition, 3 kernels", median_ms(
        lambda: [np.partition(np.abs(k).ravel(), int(0.9 * k.size))
                 for k in kernels])))
    if backend == "tensorflow":
        import tensorflow as tf

        targets, values = [], []
        for wrapper, ((keep_i, cut),) in zip(wrappers, masks):
            weights = wrapper.prunable_weights[0]
            targets += [wrapper.masks[0], weights, wrapper.thresholds[0],
                        wrapper.pruning_step]
            values += [keep_i, _baked(host_view(weights), keep_i),
                       np.float32(cut), np.int32(5)]

        @tf.function
        def assign_all(new):
            for target, value in zip(targets, new):
                target.assign(value)

        tensors = [tf.constant(v) for v in values]
        assign_all(values)
        assign_all(tensors)
        rows.append(("all assigns in one tf.function (NumPy in)",
                     median_ms(lambda: assign_all(values))))
        rows.append(("all assigns in one tf.function (tensors in)",
                     median_ms(lambda: assign_all(tensors))))
    # A steady update (constant target, masks kept): the host path vs the
    # compiled check of SteadyUpdates (TensorFlow; elsewhere it is the host).
    steady = keras_prune.prune_low_magnitude(
        keras.models.clone_model(model),
        keras_prune.ConstantSparsity(0.9, 0, frequency=1))
    pruner = MaskUpdater(steady)
    pruner.update(0)
    rows.append(("steady step, UpdatePruningStep's update",
                 median_ms(lambda: pruner.update(5))))
    rows.append(("steady step, host update_masks only", median_ms(
        lambda: [w.update_masks(0.9, 5) for w in pruner.layers])))
    if backend == "jax":
        rows.append(("in-graph radix select, 235 K (jit)",
                     radix_select_jax()))
    return [[name, ms] for name, ms in rows]


def work(spec, log):
    import keras

    result = {"backend": keras.backend.backend(), "keras": keras.__version__}
    if spec["in_fit"]:
        result["in_fit"] = in_fit()
    else:
        result["pieces"] = pieces()
    return result


def measure(args, data):
    data["runs"] = common.run_backends(
        "update_cost.py", args.backends, {"in_fit": args.in_fit}, threads=0)


def _indented(name):
    """A piece's name with its leading pairs of spaces (a part of the row
    above) as dots: Markdown tables drop leading spaces."""
    depth = (len(name) - len(name.lstrip())) // 2
    return "· " * depth + name.strip()


def render(data):
    lines = []
    for r in data["runs"]:
        lines.append(f"backend {r['backend']}, keras {r['keras']}")
        lines.append("")
        if "in_fit" in r:
            lines += ["Inside `fit` (4 rounds), medians:", "",
                      "| probe called at every step | probe ms | mean step "
                      "ms |", "|---|---|---|"]
            lines += [f"| {kind} | {probe:.3f} | {step:.3f} |"
                      for kind, (probe, step) in r["in_fit"].items()]
        else:
            lines += ["| piece | median ms |", "|---|---|"]
            lines += [f"| {_indented(name)} | {ms:.3f} |"
                      for name, ms in r["pieces"]]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main(argv=None):
    parser = common.parser("update_cost.py", __doc__,
                           backends=[common.default_backend()])
    parser.add_argument("--in-fit", action="store_true",
                        help="time the calls inside fit instead (TensorFlow "
                             "shows all four probes)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
