"""One worker process of `benchmarks/vs_tfmot.py`; runs inside either venv.

    python benchmarks/vs_tfmot_worker.py SPEC.json OUT.json

SPEC.json names the framework ("ours" with KERAS_BACKEND set by the caller,
or "tfmot"), the mode and its parameters; the result is written to OUT.json.
Modes:

- "prepare" (ours only): writes `data.npz` (Fashion-MNIST as uint8, from
  `keras_prune.datasets.load_fashion_mnist`) and, per bench and seed,
  `init_<bench>_<seed>.npz`: the initial weights of the model built once with
  `keras.utils.set_random_seed(seed)`, and the per-epoch permutations of the
  training set drawn with `np.random.default_rng(seed)`.
- "accuracy": for every configuration (dense and each sparsity) of one
  (bench, seed): train from those initial weights on the pre-permuted
  epochs, strip, and measure test accuracy, zeros per kernel, file sizes.
- "timing": interleaved dense / pruned fits of one bench (see vs_tfmot.py).

For tfmot, TF_USE_LEGACY_KERAS=1 is set before TensorFlow is imported and
`keras` below is tf_keras 2.x; Keras 3 and keras_prune are never imported in
that process (and tfmot never in ours).
"""

import json
import os
import sys
import time
import zipfile

import numpy as np

from common import fit_epochs
from common import kernel_zeros

BATCH = 128


class Framework:
    """The few calls that differ between keras_prune and tfmot."""

    def __init__(self, name):
        self.name = name
        if name == "tfmot":
            os.environ["TF_USE_LEGACY_KERAS"] = "1"
            os.environ.pop("KERAS_BACKEND", None)
            import tensorflow as tf
            import tensorflow_model_optimization as tfmot
            import tf_keras as keras

            assert keras.__version__.startswith("2."), keras.__version__
            self.tf = tf
            self.lib = tfmot.sparsity.keras
            self.formats = ("h5", "keras")  # tutorial's .h5, then .keras
        else:
            import keras

            import keras_prune

            self.lib = keras_prune
            self.tf = None
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                self.tf = tf
            self.formats = ("keras", "h5")  # ours: .keras, then legacy .h5
        self.keras = keras
        self._limit_threads()

    def _limit_threads(self):
        """1 intra-op + 1 inter-op thread (env vars are set by the caller too)."""
        if self.tf is not None:
            self.tf.config.threading.set_intra_op_parallelism_threads(1)
            self.tf.config.threading.set_inter_op_parallelism_threads(1)
        if self.name == "ours" and self.keras.backend.backend() == "torch":
            import torch

            torch.set_num_threads(1)
            torch.set_num_interop_threads(1)

    @property
    def label(self):
        if self.name == "tfmot":
            return "tfmot"
        return self.keras.backend.backend()

    def schedule(self, sparsity, end_step, frequency):
        return self.lib.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=sparsity,
            begin_step=0,
            end_step=end_step,
            power=3,
            frequency=frequency,
        )

    def prune(self, model, schedule):
        return self.lib.prune_low_magnitude(model, pruning_schedule=schedule)

    def update_callback(self):
        return self.lib.UpdatePruningStep()

    def strip(self, model):
        return self.lib.strip_pruning(model)

    def save(self, model, path, fmt):
        if self.name == "tfmot" and fmt == "h5":
            # As in the tfmot pruning tutorial.
            self.keras.models.save_model(model, path, include_optimizer=False)
        else:
            model.save(path)


# ---- models and data ---------------------------------------------------------


def build_model(keras, bench):
    layers = keras.layers
    if bench == "b1":
        stack = [
            keras.Input((784,)),
            layers.Dense(300, activation="relu"),
            layers.Dense(100, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    else:
        stack = [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    return keras.Sequential(stack, name=f"{bench}_model")


def images(raw, bench):
    """uint8 (N, 28, 28) -> float32 in [0, 1], flattened for B1."""
    x = raw.astype(np.float32) / np.float32(255)
    return x.reshape(len(x), 784) if bench == "b1" else x[..., None]


def load_data(spec):
    with np.load(os.path.join(spec["workdir"], "data.npz")) as d:
        n_train, n_test = spec["n_train"], spec["n_test"]
        x_train = images(d["x_train"][:n_train], spec["bench"])
        x_test = images(d["x_test"][:n_test], spec["bench"])
        return x_train, d["y_train"][:n_train], x_test, d["y_test"][:n_test]


def init_path(workdir, bench, seed):
    return os.path.join(workdir, f"init_{bench}_{seed}.npz")


def load_init(spec, seed):
    with np.load(init_path(spec["workdir"], spec["bench"], seed)) as d:
        n = sum(1 for k in d.files if k.startswith("w"))
        return [d[f"w{i}"] for i in range(n)], d["perms"]


def prepare(spec):
    import keras

    from keras_prune.datasets import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(normalize=False)
    np.savez(
        os.path.join(spec["workdir"], "data.npz"),
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
    )
    for bench, epochs in spec["epochs"].items():
        for seed in spec["seeds"]:
            keras.utils.set_random_seed(seed)
            weights = build_model(keras, bench).get_weights()
            rng = np.random.default_rng(seed)
            perms = np.stack(
                [rng.permutation(spec["n_train"]) for _ in range(epochs)]
            )
            np.savez(
                init_path(spec["workdir"], bench, seed),
                perms=perms,
                **{f"w{i}": w for i, w in enumerate(weights)},
            )
    return {"n_train_available": len(x_train)}


# ---- one accuracy run ----------------------------------------------------------


def compiled(fw, bench, weights, sparsity, spec):
    """A fresh model from `weights`, pruned if `sparsity`, compiled."""
    keras = fw.keras
    model = build_model(keras, bench)
    model.set_weights(weights)
    if sparsity:
        schedule = fw.schedule(sparsity, spec["end_step"], spec["frequency"])
        model = fw.prune(model, schedule)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def iterations(model):
    return int(np.asarray(model.optimizer.iterations.numpy()))


def zipped_sizes(fw, model, stem):
    """Bytes of each saved file and of its ZIP_DEFLATED archive."""
    sizes = {}
    for fmt in fw.formats:
        path = f"{stem}.{fmt}"
        try:
            fw.save(model, path, fmt)
        except Exception as e:  # report, do not hide, a format that fails
            sizes[fmt] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        archive = path + ".zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.write(path, os.path.basename(path))
        sizes[fmt] = {
            "bytes": os.path.getsize(path),
            "zipped": os.path.getsize(archive),
        }
        os.remove(path)
        os.remove(archive)
    return sizes


def exported(fw, bench, model, sparsity):
    """What a user ships: the stripped model, or an uncompiled dense copy."""
    if sparsity:
        return fw.strip(model)
    plain = build_model(fw.keras, bench)
    plain.set_weights(model.get_weights())
    return plain


def accuracy_run(fw, spec, seed, sparsity, data, log):
    bench = spec["bench"]
    x_train, y_train, x_test, y_test = data
    weights, perms = load_init(spec, seed)
    model = compiled(fw, bench, weights, sparsity, spec)
    callbacks = [fw.update_callback()] if sparsity else []
    t0 = time.perf_counter()
    fit_epochs(model, x_train, y_train, perms, range(spec["epochs"]), BATCH,
               callbacks)
    wall = time.perf_counter() - t0
    steps = iterations(model)
    final = exported(fw, bench, model, sparsity)
    probs = final.predict(x_test, batch_size=1000, verbose=0)
    acc = float(np.mean(np.argmax(probs, axis=-1) == y_test))
    stem = os.path.join(
        spec["workdir"], f"{fw.name}_{fw.label}_{bench}_{seed}_{sparsity}"
    )
    result = {
        "seed": seed,
        "sparsity": sparsity,
        "accuracy": acc,
        "train_wall_s": wall,
        "steps": steps,
        "layers": kernel_zeros(final),
        "sizes": zipped_sizes(fw, final, stem),
    }
    log(f"seed {seed} s={sparsity}: acc {acc:.4f}, {wall:.0f}s, {steps} steps")
    return result


def accuracy(fw, spec, log):
    data = load_data(spec)
    return [
        accuracy_run(fw, spec, seed, sparsity, data, log)
        for seed in spec["seeds"]
        for sparsity in spec["sparsities"]
    ]


# ---- timing ----------------------------------------------------------------------


def step_timer(keras):
    """Per-step wall times from batch-begin hooks only (as overhead.py).

    Step k lasts from `on_train_batch_begin(k)` to `on_train_batch_begin(k+1)`
    (the last to `on_epoch_end`). No `on_train_batch_end` hook on purpose: it
    would make Keras 3 dispatch batch-end callbacks synchronously.
    """

    class StepTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.begins = []

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            stamps = self.begins + [time.perf_counter()]
            self.steps = np.diff(stamps)

    return StepTimer()


def timed_fit(fw, model, pruned, x, y):
    """One 1-epoch fit; the mean and median step time in ms."""
    timer = step_timer(fw.keras)
    callbacks = [timer] + ([fw.update_callback()] if pruned else [])
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=callbacks)
    return {
        "mean_ms": float(np.mean(timer.steps) * 1e3),
        "median_ms": float(np.median(timer.steps) * 1e3),
        "n": int(len(timer.steps)),
    }


def timing(fw, spec, log):
    """Warm-up (dense, pruned), then dense, pruned, dense, ..., dense.

    Both models keep training from fit to fit (no reset), so the pruned one
    follows its schedule: one mask update every `frequency` steps.
    """
    bench = spec["bench"]
    x_train, y_train, _, _ = load_data(spec)
    weights, perms = load_init(spec, spec["seeds"][0])
    order = perms[0][: spec["timing_steps"] * BATCH]
    x, y = x_train[order], y_train[order]
    models = {
        False: compiled(fw, bench, weights, None, spec),
        True: compiled(fw, bench, weights, spec["timing_sparsity"], spec),
    }
    warmup = [timed_fit(fw, models[p], p, x, y) for p in (False, True)]
    dense, pruned = [timed_fit(fw, models[False], False, x, y)], []
    for r in range(spec["rounds"]):
        pruned.append(timed_fit(fw, models[True], True, x, y))
        dense.append(timed_fit(fw, models[False], False, x, y))
        log(
            f"round {r + 1}: dense {dense[-2]['mean_ms']:.2f} ms, pruned "
            f"{pruned[-1]['mean_ms']:.2f} ms, dense {dense[-1]['mean_ms']:.2f} ms"
        )
    ratios = [
        p["mean_ms"] / ((a["mean_ms"] + b["mean_ms"]) / 2)
        for p, a, b in zip(pruned, dense[:-1], dense[1:])
    ]
    return {
        "warmup": warmup,
        "dense": dense,
        "pruned": pruned,
        "ratios": ratios,
        "ratio": float(np.median(ratios)),
        "dense_ms": float(np.median([d["mean_ms"] for d in dense])),
        "pruned_ms": float(np.median([p["mean_ms"] for p in pruned])),
        "steps_trained": iterations(models[True]),
        "final_zeros": kernel_zeros(fw.strip(models[True])),
    }


# ---- entry point -------------------------------------------------------------------


def versions(fw):
    import importlib.metadata as metadata

    out = {}
    for package in ("keras", "tensorflow-cpu", "tf-keras",
                    "tensorflow-model-optimization", "jax", "jaxlib", "torch",
                    "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    # Only what the process uses (the tfmot venv also holds an unused keras 3).
    for package in ("tf-keras", "tensorflow-model-optimization") if (
        fw.name == "ours"
    ) else ("keras",):
        out.pop(package, None)
    return out


def main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    if spec["mode"] == "prepare":
        result = prepare(spec)
    else:
        fw = Framework(spec["framework"])
        tag = f"[{fw.label} {spec['bench']} {spec['mode']}]"

        def log(message):
            print(f"{tag} {message}", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        run = accuracy if spec["mode"] == "accuracy" else timing
        result = {
            "framework": fw.label,
            "bench": spec["bench"],
            "mode": spec["mode"],
            "versions": versions(fw),
            "result": run(fw, spec, log),
            "seconds": time.perf_counter() - t0,
        }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
