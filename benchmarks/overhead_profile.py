"""Where does the per-step overhead of a pruned model go on torch (eager)?

Companion of `benchmarks/overhead.py` (not part of the test suite):

    .venv/bin/python benchmarks/overhead_profile.py --backends torch \\
        --rounds 9 --write                      # 1 thread (default)
    .venv/bin/python benchmarks/overhead_profile.py --backends jax
        # on JAX/TF: only the interleaved fits (async vs sync callbacks)

Each backend of `--backends` (default: KERAS_BACKEND, else tensorflow) runs
in its own worker process with `--threads` intra-op threads (common.py's
`thread_env`, and torch's own setter), as overhead.py's workers do.

On TensorFlow and JAX the train step is traced once, so the wrapper's Python
runs only while tracing; on torch it runs at every step. First, interleaved
fits (any backend) of dense, dense with synchronous callbacks ("dense sync"),
pruned, and pruned with variant A of the update callback ("F=100 +A", not
adopted: no measurable effect; see `UpdatePruningStepA`). Then, on torch, two
views of LeNet-300-100 (batch 128, Adam), dense vs
`prune_low_magnitude(..., ConstantSparsity(0.9, 0, frequency=100))`:

1. Components, timed without a profiler, interleaved (median of many
   trials, microseconds per training step = summed over the 3 Dense layers):
   the layer call forward+backward, dense vs wrapped; the masking op alone
   (the wrapper's `w * backend.mask_as(mask, w.dtype)`) and the alternatives
   it replaced; the `keras.StatelessScope` alone; Adam's `sqrt(v)` on the
   velocity of dense vs pruned weights (exact zeros: torch's CPU sqrt is slow
   on them).
2. cProfile of one 100-step `fit` each: the difference pruned - dense split
   into wrapper Python, masking ops, backward, optimizer, callbacks.
"""

import cProfile
import pstats
import random
import statistics
import time

import common


def _median(xs):
    return statistics.median(xs)


def components(trials, inner):
    import keras
    import torch
    from keras import ops

    import keras_prune
    import overhead
    from keras_prune import backend

    keras.utils.set_random_seed(0)
    dense_model = overhead._models()["lenet"]()
    pruned_model = keras_prune.prune_low_magnitude(
        dense_model, keras_prune.ConstantSparsity(0.9, 0, frequency=100)
    )
    wrappers = [l for l in pruned_model.layers]
    for w in wrappers:
        w._step_tracked = True
        w.update_masks(0.9, 0)
    dense_layers = [w.layer for w in wrappers]  # same variables, unmasked
    x = torch.randn(128, 784)
    inputs = [x]
    h = x
    for layer in dense_layers[:-1]:
        h = layer(h).detach()
        inputs.append(h)

    def fwd_bwd(layers):
        def run():
            for layer, a in zip(layers, inputs):
                out = layer(a, training=True)
                out.sum().backward()

        return run

    kernels = [w.prunable_weights[0] for w in wrappers]
    masks = [w.masks[0] for w in wrappers]

    def masked(fn):
        def run():
            for k, m in zip(kernels, masks):
                fn(m.value, k.value).sum().backward()

        return run

    def scope_only():
        for w in wrappers:
            mapping = [(v, v.value) for v in w._inner_trainable]
            with keras.StatelessScope(state_mapping=mapping):
                pass

    def plain_value():
        for k in kernels:
            k.value.sum().backward()

    # Adam's second moment of pruned weights stays exactly 0; torch's CPU sqrt
    # is several times slower on zeros (numpy's is not).
    velocity = [torch.rand(tuple(k.shape)) * 1e-4 for k in kernels]
    velocity_pruned = [
        v * backend.mask_as(m.value, "float32") for v, m in zip(velocity, masks)
    ]

    cases = {
        "Adam sqrt(v), v of dense weights (torch._foreach_sqrt)": lambda: (
            torch._foreach_sqrt(velocity)
        ),
        "Adam sqrt(v), v of 90 % pruned weights (zeros)": lambda: (
            torch._foreach_sqrt(velocity_pruned)
        ),
        "Dense layer call, fwd+bwd": fwd_bwd(dense_layers),
        "PruneLowMagnitude call, fwd+bwd": fwd_bwd(wrappers),
        "kernel alone: sum+bwd (reference)": plain_value,
        "mask op: w * mask_as(m) = w * cast(m.view(uint8)) +bwd (used)": masked(
            lambda m, w: ops.multiply(w, backend.mask_as(m, w.dtype))
        ),
        "mask op: w * cast(m) +bwd (bool cast)": masked(
            lambda m, w: ops.multiply(w, ops.cast(m, w.dtype))
        ),
        "mask op: where(m, w, zeros_like(w)) +bwd (before 06d4e86)": masked(
            lambda m, w: ops.where(m, w, ops.zeros_like(w))
        ),
        "mask op: where(m, w, 0.0) +bwd": masked(
            lambda m, w: ops.where(m, w, 0.0)
        ),
        "StatelessScope build+enter+exit only": scope_only,
    }
    results = {name: [] for name in cases}
    names = list(cases)
    for _ in range(3):  # warm-up
        for fn in cases.values():
            fn()
    for _ in range(trials):
        random.shuffle(names)
        for name in names:
            fn = cases[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            results[name].append((time.perf_counter() - t0) / inner * 1e6)
    return {name: _median(ts) for name, ts in results.items()}


def profile_fits(steps):
    import keras

    import keras_prune
    import overhead

    x, y = overhead._data("lenet")
    x, y = x[: steps * 128], y[: steps * 128]
    keras.utils.set_random_seed(0)
    initial = overhead._models()["lenet"]().get_weights()
    models = {c: overhead._make_model("lenet", c, initial) for c in ("dense", "F=100")}
    for config, model in models.items():  # warm-up
        overhead._fit_once(model, config, x[:1280], y[:1280])

    def fit(config):
        callbacks = [keras_prune.UpdatePruningStep()] if config != "dense" else []
        models[config].fit(
            x, y, batch_size=128, epochs=1, shuffle=False, verbose=0,
            callbacks=callbacks,
        )

    stats = {}
    for config in models:
        profiler = cProfile.Profile()
        profiler.enable()
        fit(config)
        profiler.disable()
        stats[config] = pstats.Stats(profiler)
    return stats


def _cum(stats, file_part, func):
    """Cumulative and own time of functions matching (file, name)."""
    cum = own = calls = 0
    for (filename, _, name), (cc, nc, tt, ct, _) in stats.stats.items():
        if file_part in filename and name == func:
            cum += ct
            own += tt
            calls += nc
    return cum, own, calls


def attribution(stats, steps):
    d, p = stats["dense"], stats["F=100"]
    per_step = 1e3 / steps  # s per fit -> ms per step
    total_d = d.total_tt * per_step
    total_p = p.total_tt * per_step
    wrapper_call = _cum(p, "keras_prune/core/wrapper.py", "call")[0]
    masked = _cum(p, "keras_prune/core/wrapper.py", "_masked")[0]
    inner_dense_p = _cum(p, "layers/core/dense.py", "call")[0]
    rows = [
        ("total per step (under cProfile)", total_d, total_p),
        (
            "backward (torch run_backward)",
            _cum(d, "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>")[1]
            * per_step,
            _cum(p, "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>")[1]
            * per_step,
        ),
        (
            "optimizer.apply",
            _cum(d, "optimizers/base_optimizer.py", "apply")[0] * per_step,
            _cum(p, "optimizers/base_optimizer.py", "apply")[0] * per_step,
        ),
        (
            "Dense.call (the matmuls)",
            _cum(d, "layers/core/dense.py", "call")[0] * per_step,
            inner_dense_p * per_step,
        ),
        ("PruneLowMagnitude.call", 0.0, wrapper_call * per_step),
        ("  of which _masked (the mask op)", 0.0, masked * per_step),
        (
            "  of which wrapper Python (call - Dense.call - _masked)",
            0.0,
            (wrapper_call - inner_dense_p - masked) * per_step,
        ),
        (
            "UpdatePruningStep hooks",
            0.0,
            sum(
                _cum(p, "keras_prune/training/callbacks.py", f)[0]
                for f in ("on_train_batch_begin", "on_train_batch_end")
            )
            * per_step,
        ),
        (
            "CallbackList.on_train_batch_end (sync vs async)",
            _cum(d, "callbacks/callback_list.py", "on_train_batch_end")[0] * per_step,
            _cum(p, "callbacks/callback_list.py", "on_train_batch_end")[0] * per_step,
        ),
    ]
    return rows


def _sync_batch_end():
    """A no-op batch-end hook: Keras then dispatches callbacks synchronously."""
    import keras

    class SyncBatchEnd(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    return SyncBatchEnd()


def _update_pruning_step_a():
    """Variant A of `UpdatePruningStep` (timed, not adopted).

    The library's callback counts steps in `on_train_batch_end`, and Keras
    dispatches batch-end callbacks synchronously on JAX and torch for any
    callback that overrides that hook. Variant A has no batch-end hook: it
    counts steps in `on_train_batch_begin` as `optimizer.iterations` (read at
    the first batch of each epoch) + batch index, so the dispatch stays
    asynchronous.
    """
    import keras

    from keras_prune.training.callbacks import UpdatePruningStep

    class UpdatePruningStepA(UpdatePruningStep):
        def on_epoch_begin(self, epoch, logs=None):
            self._step = None  # re-read at the first batch of every epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self._step is None:
                # Once per epoch; on JAX the trainer has just synced its state
                # at the end of the previous epoch, so this is cheap.
                iterations = self.model.optimizer.iterations
                self._step = int(keras.ops.convert_to_numpy(iterations)) - batch
            first = self._step + batch
            for step in range(first, first + self._steps_per_execution):
                due = self._pruner.due(step)
                if due:
                    self.model  # On JAX, syncs the trainer's state first.
                    self._pruner.update(step, due)
                    return

    # Remove the inherited batch-end hook: Keras decides on async dispatch
    # with `utils.is_default(cbk.on_train_batch_end)`.
    UpdatePruningStepA.on_train_batch_end = (
        keras.callbacks.Callback.on_train_batch_end
    )
    return UpdatePruningStepA()


def timed_fits(rounds, steps):
    """Interleaved fits without the profiler: the real ratio.

    "dense sync" is the dense model with a no-op `on_train_batch_end`
    callback, which makes Keras dispatch batch-end callbacks synchronously
    (what `UpdatePruningStep` does to a pruned fit); "F=100 +A" is the pruned
    model trained with variant A of the callback instead.
    """
    import keras

    import keras_prune
    import overhead

    x, y = overhead._data("lenet")
    x, y = x[: steps * 128], y[: steps * 128]
    keras.utils.set_random_seed(0)
    initial = overhead._models()["lenet"]().get_weights()
    callbacks = {
        "dense": lambda: [],
        "dense sync": lambda: [_sync_batch_end()],
        "F=100": lambda: [keras_prune.UpdatePruningStep()],
        "F=100 +A": lambda: [_update_pruning_step_a()],
    }
    configs = tuple(callbacks)
    models = {
        c: overhead._make_model("lenet", c.split()[0], initial) for c in configs
    }
    starts = {c: m.get_weights() for c, m in models.items()}

    def fit(c, x, y):
        return overhead._fit_once(models[c], c, x, y, callbacks[c]())

    for c in configs:
        fit(c, x[:1280], y[:1280])
    means = {c: [] for c in configs}
    for r in range(rounds):
        for c in configs if r % 2 == 0 else configs[::-1]:
            overhead._reset(models[c], starts[c])
            means[c].append(fit(c, x, y)["mean"])
    return {
        c: (
            _median(means[c]) * 1e3,
            _median([a / b for a, b in zip(means[c], means["dense"])]),
        )
        for c in configs
    }


def work(spec, log):
    """The fits on any backend; on torch also the components and cProfile."""
    import keras

    backend = keras.backend.backend()
    result = {"backend": backend, "keras": keras.__version__,
              "steps": spec["steps"]}
    if backend == "torch":
        import torch

        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        result["torch"] = torch.__version__
        result["torch_threads"] = torch.get_num_threads()
    result["fits"] = timed_fits(spec["rounds"], spec["steps"])
    log("interleaved fits done")
    if backend == "torch":
        result["components"] = components(spec["trials"], inner=5)
        result["profile"] = attribution(profile_fits(spec["steps"]),
                                        spec["steps"])
    return result


def measure(args, data):
    spec = {"threads": args.threads, "trials": args.trials,
            "steps": args.steps, "rounds": args.rounds}
    data["runs"] = common.run_backends("overhead_profile.py", args.backends,
                                       spec, threads=args.threads)


def render(data):
    lines = []
    add = lines.append
    for r in data["runs"]:
        if r["backend"] == "torch":
            add(f"torch {r['torch']}, keras {r['keras']}, "
                f"{r['torch_threads']} threads")
        else:
            add(f"{r['backend']}, keras {r['keras']} (components and "
                "cProfile: torch only)")
        add("")
        add("Interleaved fits (no profiler), LeNet, median of rounds:")
        add("")
        add("| config | mean step ms | ratio to dense |")
        add("|---|---|---|")
        for c, (ms, ratio) in r["fits"].items():
            add(f"| {c} | {ms:.2f} | {ratio:.3f}× |")
        if "components" in r:
            add("")
            add("Components (µs per training step, 3 Dense layers, median):")
            add("")
            add("| component | µs / step |")
            add("|---|---|")
            for name, us in r["components"].items():
                add(f"| {name} | {us:.0f} |")
            add("")
            add(f"cProfile, one fit of {r['steps']} steps each (ms per "
                "step):")
            add("")
            add("| part | dense | pruned F=100 | difference |")
            add("|---|---|---|---|")
            for name, d, p in r["profile"]:
                add(f"| {name} | {d:.2f} | {p:.2f} | {p - d:+.2f} |")
        add("")
    return "\n".join(lines).rstrip("\n")


def main(argv=None):
    parser = common.parser("overhead_profile.py", __doc__,
                           backends=[common.default_backend()], threads=1)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
