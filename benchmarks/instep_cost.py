"""Where the in-step update's time goes inside a TensorFlow train step.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/instep_cost.py --rounds 5 --write

The measurement runs in a worker process on TensorFlow (in-step updates are
TensorFlow's). LeNet-300-100 (784-300-100-10) on 12,800 Fashion-MNIST
images, batch 128, Adam 1e-3, 1 thread. Each configuration is a model of its own, fitted one
epoch (100 steps) per round, rounds interleaved with dense fits; the time is
steps 10-99 (after tracing). Configurations:

- dense; pruned F=100 (masking only, one host update per 100 steps);
- in_step: F = 1 with `instep.InStepUpdates` as shipped;
- and variants of its `_apply` (F = 1, monkeypatched, not correct updates,
  only costs): `check` — the plain-TensorFlow steady check of the three
  kernels, no conditional, only the thresholds written; `check_in_cond` —
  the same check inside a `tf.cond` whose branch reads the trainable
  kernels (so the train step's gradient tape records it); `writes` — only
  the unconditional writes of kernels and masks (their own values), and
  `write_kernels` / `write_masks` — one of the two;
  `xla_check` — the check compiled by XLA (`jit_compile=True`), values in,
  thresholds out.

Prints the median step time of each and its ratio to dense.
"""

import time

import common

VARIANTS = ("in_step", "check", "check_in_cond", "writes", "write_kernels",
            "write_masks", "xla_check")


def work(spec, log):
    """{configuration: median step ms} over `spec["rounds"]` rounds."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_prune as kp
    from keras_prune.training import tf_fast_path as instep
    from keras_prune.datasets import load_fashion_mnist

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    (x, y), _ = load_fashion_mnist()
    x = x.reshape(len(x), -1)[:12800].astype("float32")
    y = y[:12800]
    shipped = instep.InStepUpdates._apply
    xla_checks = {}

    def variant_apply(self, counts, step, variant):
        if variant == "in_step":
            return shipped(self, counts, step)
        slots = self._slots()
        if variant == "check":
            for i, (v, m, t) in enumerate(slots):
                ok, cut = instep._steady(
                    tf.stop_gradient(v.value), m.value, counts[i]
                )
                t.assign(tf.where(ok, cut, 0.0))
        elif variant == "check_in_cond":
            def branch():
                for i, (v, m, t) in enumerate(slots):
                    ok, cut = instep._steady(v.value, m.value, counts[i])
                    t.assign(tf.where(ok, cut, 0.0))
                return tf.constant(True)

            tf.cond(tf.reduce_any(counts >= 0), branch,
                    lambda: tf.constant(False))
        elif variant in ("writes", "write_kernels", "write_masks"):
            for v, m, _ in slots:
                if variant != "write_masks":
                    v.assign(tf.stop_gradient(v.value))
                if variant != "write_kernels":
                    m.assign(m.value)
        elif variant == "xla_check":
            if id(self) not in xla_checks:
                xla_checks[id(self)] = tf.function(
                    lambda c, vs, ks: [
                        instep._steady(v, k, c[i])[1]
                        for i, (v, k) in enumerate(zip(vs, ks))
                    ],
                    jit_compile=True, autograph=False,
                )
            cuts = xla_checks[id(self)](
                counts, [tf.stop_gradient(v.value) for v, _, _ in slots],
                [m.value for _, m, _ in slots],
            )
            for (_, _, t), cut in zip(slots, cuts):
                t.assign(cut)
        return tf.constant(True)

    def make(kind):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ])
        if kind != "dense":
            model = kp.prune_low_magnitude(
                model,
                kp.ConstantSparsity(0.9, 0, frequency=100 if kind == "F=100" else 1),
            )
        model.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 10:
                self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.t0

    kinds = ("dense", "F=100") + VARIANTS
    models = {kind: make(kind) for kind in kinds}

    def run(kind):
        if kind in VARIANTS:
            instep.InStepUpdates._apply = (
                lambda self, c, s, v=kind: variant_apply(self, c, s, v)
            )
        timer = Timer()
        callbacks = [timer] + ([] if kind == "dense" else [kp.UpdatePruningStep()])
        models[kind].fit(x, y, batch_size=128, epochs=1, shuffle=False,
                         verbose=0, callbacks=callbacks)
        return timer.seconds / 90 * 1e3

    for kind in kinds:  # trace and compile
        run(kind)
    times = {kind: [] for kind in kinds}
    for _ in range(spec["rounds"]):
        for kind in kinds[1:]:
            times[kind].append(run(kind))
            times["dense"].append(run("dense"))
    instep.InStepUpdates._apply = shipped
    return {"steps_ms": {kind: float(np.median(times[kind]))
                         for kind in kinds}}


def measure(args, data):
    (data["tensorflow"],) = common.run_backends(
        "instep_cost.py", ["tensorflow"], {"rounds": args.rounds}, threads=0)


def render(data):
    steps = data["tensorflow"]["steps_ms"]
    dense, masked = steps["dense"], steps["F=100"]
    lines = ["| configuration | step ms (median) | / dense "
             "| minus F=100 (ms) |",
             "|---|---|---|---|"]
    for kind, t in steps.items():
        lines.append(
            f"| {kind} | {t:.2f} | {t / dense:.3f}× | "
            + ("" if kind in ("dense", "F=100") else f"{t - masked:+.2f}")
            + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser("instep_cost.py", __doc__)
    parser.add_argument("--rounds", type=int, default=5)
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
