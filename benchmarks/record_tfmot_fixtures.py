"""Records what tfmot 0.8.1 computes, for keras-prune's parity tests.

Run ONLY with the tfmot virtualenv, from the repository root:

    .venv-tfmot/bin/python benchmarks/record_tfmot_fixtures.py

(the venv holds tensorflow-cpu 2.21.0, tf-keras 2.21.0 and
tensorflow-model-optimization 0.8.1). The script sets TF_USE_LEGACY_KERAS=1
itself before importing TensorFlow and refuses to run under Keras 3: importing
tfmot in a Keras 3 process breaks Keras 3, and tfmot cannot run on it anyway.

It writes small files under tests/fixtures/tfmot/ that `tests/test_tfmot_parity.py`
reads with plain NumPy (no tfmot at test time):

- schedules.npz   `(should_prune, sparsity)` of ConstantSparsity /
                  PolynomialDecay for every step 0..N_STEPS, computed by calling
                  the tfmot schedule with an int64 step, as tfmot's wrapper does.
- weights.npz     the weight tensors the masks below were computed from
                  (float32). The 784x300 tensor (940 KB as float32, 870 KB
                  compressed: random floats do not compress) is NOT stored; it
                  is regenerated from its seed with `np.random.RandomState`,
                  whose stream NumPy keeps bit-for-bit stable (NEP 19), and
                  checked against the SHA-256 recorded in metadata.json.
- masks.npz       unstructured masks (np.packbits of the bool mask) and
                  thresholds for several sparsities.
- block_masks.npz block masks (1x4, 4x1, 2x2; AVG and MAX).
- nm_masks.npz    N:M masks (sparsity_m_by_n=(2, 4)).
- fit_traces.npz  pruned-weight count after every batch of a real tf_keras
                  `fit` with `UpdatePruningStep` (shows tfmot's step semantics).
- metadata.json   versions, parameters, per-case details, validation results.

Masks are obtained the way training obtains them: a tf_keras layer wrapped by
`prune_low_magnitude(layer, ConstantSparsity(s, begin_step=0, frequency=1))`,
the kernel set, the wrapper's `pruning_step` set, then one
`layer.pruning_obj.conditional_mask_update()` (the op that
`PruneLowMagnitude.call` runs in training; it evaluates the schedule at
`pruning_step` and recomputes the mask), then the mask variable is read.
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hashlib  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402

_REFUSE = (
    "record_tfmot_fixtures.py must run in the tfmot virtualenv, with legacy "
    "Keras (tf_keras 2.x):\n"
    "    .venv-tfmot/bin/python benchmarks/record_tfmot_fixtures.py\n"
    "It refuses to run under Keras 3 ({why}): tfmot only works on tf_keras, "
    "and importing it into a Keras 3 process breaks Keras 3."
)


def _refuse(why):
    sys.exit(_REFUSE.format(why=why))


def _import_tfmot():
    if "keras" in sys.modules:
        version = getattr(sys.modules["keras"], "__version__", "?")
        if not version.startswith("2."):
            _refuse(f"keras {version} is already imported")
    try:
        import tf_keras  # noqa: F401
    except ImportError:
        _refuse("tf_keras is not installed in this interpreter")
    import tensorflow as tf

    # With TF_USE_LEGACY_KERAS=1, tf.keras lazily loads tf_keras
    # ("tf_keras.api._v2.keras"); otherwise it is Keras 3 ("keras._tf_keras").
    if not tf.keras.__name__.startswith("tf_keras"):
        _refuse(f"tf.keras is {tf.keras.__name__}, not tf_keras")
    import tf_keras

    if not tf_keras.__version__.startswith("2."):
        _refuse(f"tf_keras is version {tf_keras.__version__}")
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        _refuse("tensorflow_model_optimization is not installed")
    return tf, tf_keras, tfmot


tf, keras, tfmot = _import_tfmot()
import numpy as np  # noqa: E402

sparsity = tfmot.sparsity.keras

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tfmot"

# ---- parameters --------------------------------------------------------------

N_STEPS = 1200  # schedules are recorded for steps 0..N_STEPS

SCHEDULE_CASES = [
    # name, class, constructor arguments
    ("constant_default", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=100)),
    ("constant_begin150_f7", "ConstantSparsity",
     dict(target_sparsity=0.9, begin_step=150, end_step=-1, frequency=7)),
    ("constant_window_f1", "ConstantSparsity",
     dict(target_sparsity=0.8, begin_step=10, end_step=500, frequency=1)),
    ("constant_end_offgrid", "ConstantSparsity",
     dict(target_sparsity=0.3, begin_step=5, end_step=1003, frequency=100)),
    ("constant_end_equals_begin", "ConstantSparsity",
     dict(target_sparsity=0.7, begin_step=300, end_step=300, frequency=100)),
    ("poly_anchor", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
          end_step=100, power=3, frequency=10)),
    ("poly_initial_linear", "PolynomialDecay",
     dict(initial_sparsity=0.5, final_sparsity=0.9, begin_step=100,
          end_step=1000, power=1, frequency=100)),
    ("poly_power5_f7", "PolynomialDecay",
     dict(initial_sparsity=0.2, final_sparsity=0.95, begin_step=50,
          end_step=657, power=5, frequency=7)),
    ("poly_f1", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.99, begin_step=0,
          end_step=1000, power=3, frequency=1)),
    ("poly_power2p5_initial", "PolynomialDecay",
     dict(initial_sparsity=0.1, final_sparsity=0.5, begin_step=300,
          end_step=900, power=2.5, frequency=1)),
]

SPARSITIES = [0.5, 0.8, 0.9, 0.99]

# name -> (layer kind, kernel shape, seed, how the values are made)
WEIGHTS = {
    "dense_784x300": ("Dense", (784, 300), 1, "normal"),
    "conv_5x5x20x50": ("Conv2D", (5, 5, 20, 50), 2, "normal"),
    "dense_100x10": ("Dense", (100, 10), 3, "normal"),
    # Deliberate ties: N(0, 0.5) rounded to 2 decimals (and +-x tie in |w|).
    "ties_100x10": ("Dense", (100, 10), 4, "normal_x0.5_round2"),
    # Odd sizes where n*s is a half-integer: the two rounding rules differ.
    "round_5x3": ("Dense", (5, 3), 5, "normal"),
    "round_3x3": ("Dense", (3, 3), 6, "normal"),
    "round_7x5": ("Dense", (7, 5), 7, "normal"),
    "round_10x1": ("Dense", (10, 1), 8, "normal"),
    # Block masks: shapes that do and do not divide the blocks.
    "dense_30x10": ("Dense", (30, 10), 9, "normal"),
    "dense_64x32": ("Dense", (64, 32), 10, "normal"),
    # N:M: a conv whose input channels are not a multiple of 4.
    "conv_3x3x6x8": ("Conv2D", (3, 3, 6, 8), 11, "normal"),
}
# Too big to store (random float32 does not compress): regenerated + SHA-256.
NOT_STORED = ["dense_784x300"]

MASK_CASES = (
    [(name, s) for name in ("dense_784x300", "conv_5x5x20x50", "dense_100x10",
                            "ties_100x10") for s in SPARSITIES]
    + [("round_5x3", 0.5), ("round_3x3", 0.5), ("round_7x5", 0.3),
       ("round_7x5", 0.1), ("round_10x1", 0.99), ("round_10x1", 0.97)]
)

BLOCK_SHAPES = ["dense_100x10", "dense_30x10", "dense_64x32", "ties_100x10"]
BLOCK_SIZES = [(1, 4), (4, 1), (2, 2)]
BLOCK_POOLING = ["AVG", "MAX"]
BLOCK_SPARSITIES = [0.5, 0.8]

NM_SHAPES = ["dense_100x10", "dense_30x10", "conv_5x5x20x50", "conv_3x3x6x8",
             "ties_100x10"]
NM = (2, 4)

# Real `fit` runs: Dense(8) on 16 inputs, batch 8, SGD, UpdatePruningStep.
FIT_CASES = [
    ("begin0_f100_5batches", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=0, frequency=100), 5),
    ("poly_end40_40batches", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=40,
          power=3, frequency=10), 40),
    ("constant_begin5_end25_30batches", "ConstantSparsity",
     dict(target_sparsity=0.6, begin_step=5, end_step=25, frequency=10), 30),
]
FIT_UNITS, FIT_INPUTS, FIT_BATCH = 8, 16, 8

# Constructor arguments whose acceptance differs (or not) between libraries.
VALIDATION_CASES = [
    ("poly_begin_equals_end", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=100,
          end_step=100)),
    ("poly_initial_above_final", "PolynomialDecay",
     dict(initial_sparsity=0.8, final_sparsity=0.2, begin_step=0,
          end_step=100)),
    ("poly_power_zero", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
          end_step=100, power=0)),
    ("poly_power_negative", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
          end_step=100, power=-1)),
    ("poly_end_minus_one", "PolynomialDecay",
     dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
          end_step=-1)),
    ("constant_float_begin", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=10.0)),
    ("constant_float_frequency", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=0, frequency=2.5)),
    ("constant_sparsity_one", "ConstantSparsity",
     dict(target_sparsity=1.0, begin_step=0)),
    ("constant_sparsity_negative", "ConstantSparsity",
     dict(target_sparsity=-0.1, begin_step=0)),
    ("constant_begin_negative", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=-1)),
    ("constant_end_before_begin", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=10, end_step=5)),
    ("constant_frequency_zero", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=0, frequency=0)),
    ("constant_end_equals_begin", "ConstantSparsity",
     dict(target_sparsity=0.5, begin_step=10, end_step=10)),
]


# ---- helpers -----------------------------------------------------------------


def make_weights(name):
    _, shape, seed, kind = WEIGHTS[name]
    rng = np.random.RandomState(seed)  # frozen stream (NEP 19)
    w = rng.standard_normal(shape)
    if kind == "normal_x0.5_round2":
        w = np.round(w * 0.5, 2)
    return w.astype(np.float32)


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def make_layer(name):
    kind, shape = WEIGHTS[name][:2]
    if kind == "Dense":
        return keras.layers.Dense(shape[1]), (None, shape[0])
    return (
        keras.layers.Conv2D(shape[3], shape[:2]),
        (None, 16, 16, shape[2]),
    )


def wrapped(name, **prune_args):
    layer, input_shape = make_layer(name)
    layer = sparsity.prune_low_magnitude(layer, **prune_args)
    layer.build(input_shape)
    weight, mask, threshold = layer.pruning_vars[0]
    assert tuple(weight.shape) == WEIGHTS[name][1], (name, weight.shape)
    weight.assign(make_weights(name))
    return layer, mask, threshold


def tfmot_mask(name, step, **prune_args):
    """One mask update by tfmot's own op; returns (bool mask, threshold)."""
    layer, mask, threshold = wrapped(name, **prune_args)
    layer.pruning_step.assign(step)
    layer.pruning_obj.conditional_mask_update()
    m = mask.numpy()
    assert set(np.unique(m)) <= {0.0, 1.0}
    return m.astype(bool), float(threshold.numpy())


def pack(mask):
    return np.packbits(mask.reshape(-1))


def save(path, arrays):
    np.savez_compressed(path, **arrays)


def schedule(cls_name, args):
    return getattr(sparsity, cls_name)(**args)


# ---- recorders ---------------------------------------------------------------


def record_schedules(meta):
    arrays = {}
    steps = range(N_STEPS + 1)
    for name, cls_name, args in SCHEDULE_CASES:
        sched = schedule(cls_name, args)
        should, value = [], []
        for step in steps:
            # The wrapper calls the schedule with its int64 `pruning_step`.
            p, s = sched(tf.constant(step, dtype=tf.int64))
            should.append(bool(p.numpy()))
            value.append(np.float32(s.numpy()))
        arrays[f"{name}__should_prune"] = np.packbits(np.array(should))
        arrays[f"{name}__sparsity"] = np.array(value, dtype=np.float32)
        meta["schedules"][name] = {
            "class": cls_name,
            "args": args,
            "n_prune_steps": int(np.sum(should)),
            "first_prune_step": int(np.argmax(should)) if any(should) else None,
        }
    save(OUT / "schedules.npz", arrays)


def record_weights(meta):
    arrays = {}
    for name, (kind, shape, seed, how) in WEIGHTS.items():
        w = make_weights(name)
        meta["weights"][name] = {
            "layer": kind,
            "shape": list(shape),
            "seed": seed,
            "values": how,
            "generator": "np.random.RandomState(seed).standard_normal(shape)"
            + (" * 0.5, np.round(., 2)" if how.endswith("round2") else "")
            + ", astype(float32)",
            "sha256": sha256(w),
            "stored": name not in NOT_STORED,
        }
        if name not in NOT_STORED:
            arrays[name] = w
    save(OUT / "weights.npz", arrays)


def record_masks(meta):
    arrays = {}
    for name, s in MASK_CASES:
        key = f"{name}__{s}"
        mask, threshold = tfmot_mask(
            name, 0,
            pruning_schedule=sparsity.ConstantSparsity(s, 0, frequency=1))
        w = np.abs(make_weights(name))
        arrays[f"{key}__mask"] = pack(mask)
        arrays[f"{key}__threshold"] = np.float32(threshold)
        n = w.size
        meta["masks"][key] = {
            "weights": name,
            "sparsity": s,
            "size": n,
            "kept": int(mask.sum()),
            "tfmot_keep_count_k": int(max(round(float(
                np.float32(n) * (np.float32(1) - np.float32(s)))), 1)),
            "ties_at_threshold": int(np.sum(w == np.float32(threshold))),
            "threshold": threshold,
        }
    save(OUT / "masks.npz", arrays)


def record_block_masks(meta):
    arrays = {}
    for name in BLOCK_SHAPES:
        for block in BLOCK_SIZES:
            for pooling in BLOCK_POOLING:
                for s in BLOCK_SPARSITIES:
                    key = f"{name}__{block[0]}x{block[1]}__{pooling}__{s}"
                    mask, threshold = tfmot_mask(
                        name, 0,
                        pruning_schedule=sparsity.ConstantSparsity(
                            s, 0, frequency=1),
                        block_size=block, block_pooling_type=pooling)
                    arrays[f"{key}__mask"] = pack(mask)
                    meta["block_masks"][key] = {
                        "weights": name, "block_size": list(block),
                        "pooling": pooling, "sparsity": s,
                        "kept": int(mask.sum()), "size": int(mask.size),
                        "pooled_threshold": threshold,
                    }
    try:  # tfmot accepts block sparsity on rank-2 weights only.
        wrapped("conv_3x3x6x8", block_size=(1, 4))
        meta["block_rank4"] = "accepted"
    except ValueError as e:
        meta["block_rank4"] = f"ValueError: {e}"
    save(OUT / "block_masks.npz", arrays)


def record_nm_masks(meta):
    arrays = {}
    for name in NM_SHAPES:
        key = f"{name}__{NM[0]}by{NM[1]}"
        # tfmot updates N:M masks only when pruning_step == 1, whatever the
        # schedule says (pruning_impl.conditional_mask_update).
        mask, _ = tfmot_mask(name, 1, sparsity_m_by_n=NM)
        not_at_1, _ = tfmot_mask(name, 2, sparsity_m_by_n=NM)
        arrays[f"{key}__mask"] = pack(mask)
        meta["nm_masks"][key] = {
            "weights": name, "m_by_n": list(NM),
            "kept": int(mask.sum()), "size": int(mask.size),
            # Expected False: at any step other than 1 the mask stays ones.
            "mask_updated_at_step_2": bool(not not_at_1.all()),
        }
    save(OUT / "nm_masks.npz", arrays)


def record_fit_traces(meta):
    """Pruned count of the kernel after every batch of a real `fit`."""
    arrays = {}
    for name, cls_name, args, batches in FIT_CASES:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((FIT_INPUTS,)),
            sparsity.prune_low_magnitude(
                keras.layers.Dense(FIT_UNITS),
                pruning_schedule=schedule(cls_name, args)),
        ])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        wrapper = model.layers[0]
        mask = wrapper.pruning_vars[0][1]
        pruned, steps = [], []

        class Trace(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pruned.append(int(np.sum(mask.numpy() == 0)))
                steps.append(int(wrapper.pruning_step.numpy()))

        rng = np.random.RandomState(0)
        x = rng.standard_normal((batches * FIT_BATCH, FIT_INPUTS))
        y = rng.standard_normal((batches * FIT_BATCH, FIT_UNITS))
        model.fit(x.astype(np.float32), y.astype(np.float32),
                  batch_size=FIT_BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[sparsity.UpdatePruningStep(), Trace()])
        arrays[f"{name}__pruned"] = np.array(pruned, dtype=np.int32)
        arrays[f"{name}__pruning_step"] = np.array(steps, dtype=np.int32)
        changes = [i for i in range(batches)
                   if pruned[i] != (pruned[i - 1] if i else 0)]
        meta["fit_traces"][name] = {
            "class": cls_name, "args": args, "batches": batches,
            "kernel_size": FIT_INPUTS * FIT_UNITS,
            "batch_size": FIT_BATCH,
            "mask_changed_after_batches": changes,
            "final_pruned": pruned[-1],
        }
    save(OUT / "fit_traces.npz", arrays)


def record_validation(meta):
    for name, cls_name, args in VALIDATION_CASES:
        try:
            sched = schedule(cls_name, args)
        except ValueError as e:
            meta["validation"][name] = {
                "class": cls_name, "args": args, "tfmot": "rejected",
                "message": str(e)}
            continue
        entry = {"class": cls_name, "args": args, "tfmot": "accepted"}
        if cls_name == "PolynomialDecay":
            value = sched(tf.constant(args["end_step"], tf.int64))[1]
            entry["sparsity_at_end_step"] = repr(float(value.numpy()))
        meta["validation"][name] = entry


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "about": "tfmot 0.8.1 outputs for tests/test_tfmot_parity.py; "
                 "written by benchmarks/record_tfmot_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tensorflow": tf.__version__,
            "tf_keras": keras.__version__,
            "tensorflow_model_optimization": tfmot.__version__,
        },
        "parameters": {
            "n_steps": N_STEPS,
            "sparsities": SPARSITIES,
            "block_sizes": [list(b) for b in BLOCK_SIZES],
            "block_pooling": BLOCK_POOLING,
            "block_sparsities": BLOCK_SPARSITIES,
            "m_by_n": list(NM),
            "fit": {"units": FIT_UNITS, "inputs": FIT_INPUTS,
                    "batch_size": FIT_BATCH, "optimizer": "SGD(0.01)",
                    "loss": "mse", "data": "RandomState(0) normal"},
            "mask_method": "prune_low_magnitude(layer, ...); build; set "
                           "kernel; pruning_step.assign(step); "
                           "pruning_obj.conditional_mask_update(); read mask",
            "mask_encoding": "np.packbits(mask.reshape(-1)) (row-major); "
                             "np.unpackbits(..., count=size)",
        },
        "schedules": {}, "weights": {}, "masks": {}, "block_masks": {},
        "nm_masks": {}, "fit_traces": {}, "validation": {},
    }
    record_weights(meta)
    record_schedules(meta)
    record_masks(meta)
    record_block_masks(meta)
    record_nm_masks(meta)
    record_fit_traces(meta)
    record_validation(meta)
    (OUT / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = 0
    for path in sorted(OUT.iterdir()):
        size = path.stat().st_size
        total += size
        print(f"{path.relative_to(ROOT)}  {size / 1024:.1f} KiB")
    print(f"total  {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
