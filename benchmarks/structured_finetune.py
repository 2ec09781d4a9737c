"""Structured pruning's accuracy goal, with the fine-tuning rate chosen on
held-out validation data (not on the test set).

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/structured_finetune.py --write   # ~40 min
    .venv/bin/python benchmarks/structured_finetune.py --quick   # smoke run
    .venv/bin/python benchmarks/structured_finetune.py --recipe iterative \\
        --models-from /tmp/dense_models    # dense models kept by --keep-models
    .venv/bin/python benchmarks/structured_finetune.py --from-json \\
        seeds01.json seeds23.json --write  # runs of other seeds, together

`benchmarks/structured.py` fine-tunes the 50 %-pruned ResNet-style CNN with
the dense recipe (Adam 1e-3, cosine) and misses the 1-point goal (1.19
points); Adam 2e-3 met it (0.76), but that rate was picked by looking at
test accuracy. This script makes the choice the way a user must: on data
the test set never sees.

Protocol (declared before the first run, 2026-11-22):
- Data: `load_fashion_mnist()`. A fixed permutation (seed `SPLIT_SEED`,
  the same for every run seed) holds out `VALIDATION` = 5,000 of the 60,000
  training images as the validation set; the model trains on the other
  55,000; the 10,000 test images are used only for the reported accuracy.
- Per seed (`--seeds`, default 0,1; each seed in its own worker process,
  the seeds in parallel, 1 thread each): the dense model of structured.py
  (`resnet_cnn`, same initializer seed, Adam 1e-3 cosine over 6 epochs,
  batch 128, per-epoch permutations from `np.random.default_rng(seed)`),
  `plan_pruning(dense, ratio=0.5, criterion="l2")`, `apply_plan`.
- Fine-tuning: 2 epochs from the same pruned weights for every rate of the
  grid `GRID` (Adam, cosine-decayed to 0 over the 2 epochs). The rate with
  the best validation accuracy is chosen (a tie goes to the lower rate);
  the goal is judged on the chosen model's test accuracy: dense test
  accuracy - chosen test accuracy <= 1 point, mean over seeds.

`--recipe iterative` (a follow-up, added after the one-shot run above):
the same 2 fine-tuning epochs spent as `prune_iteratively(dense, steps=2,
ratio=0.5)`: remove 25 % of every group's channels, fine-tune 1 epoch,
re-plan on the fine-tuned model to reach 50 % of the original channels,
fine-tune 1 epoch; each round compiled afresh with the grid's rate
cosine-decayed over its epoch; the same choice on validation data.

`--recipe kd` (a follow-up, declared 2026-11-22 before its first run, after
the one-shot run missed by 0.09 pt): the one-shot pruned model fine-tuned
for the same 2 epochs with the dense model as its teacher, through Keras's
own `keras.distillation.Distiller` with its defaults: `LogitsDistillation(
temperature=3.0)` (KL divergence of the softened outputs, scaled by T²) and
`student_loss_weight=0.5`; the same rate grid and the same choice on
validation data. Distillation is the recovery Torch-Pruning and TAO
recommend after channel pruning; it costs one teacher forward pass per step.

It prints a Markdown section and, with `--write`, writes it to
benchmarks/results/structured_finetune.md (`--recipe oneshot`), or
structured_finetune_iterative.md / structured_finetune_kd.md: one file per
recipe. `--from-json` with several records (runs of the same recipe on other
seeds) renders their seeds together.
"""

import concurrent.futures
import json
import os
import tempfile
import time

import common
from common import fit_epochs
from structured import BATCH, EPOCHS, FINETUNE_EPOCHS, GOAL_DROP, RATIO
from structured import _accuracy, _compile, _cost, resnet_cnn

VALIDATION = 5000
SPLIT_SEED = 2026
# Adam learning rates, cosine-decayed to 0 over the fine-tuning epochs.
GRID = (1e-3, 2e-3, 3e-3)
# --recipe kd: keras.distillation's defaults, declared before the run.
KD_TEMPERATURE = 3.0
KD_STUDENT_WEIGHT = 0.5
RECIPES = ("oneshot", "iterative", "kd")


def accuracy_worker(spec, log):
    import keras
    import numpy as np

    from keras_prune.datasets import load_fashion_mnist
    from keras_prune.structured import apply_plan, plan_pruning, verify
    from keras_prune.structured import prune_iteratively

    (x_all, y_all), (x_test, y_test) = load_fashion_mnist()
    split = np.random.default_rng(SPLIT_SEED).permutation(len(x_all))
    n_val = spec["validation"]
    train, val = split[n_val:][:spec["n_train"]], split[:n_val]
    x, y = x_all[train], y_all[train]
    x_val, y_val = x_all[val], y_all[val]
    x_test, y_test = x_test[:spec["n_test"]], y_test[:spec["n_test"]]
    epochs, tune = spec["epochs"], spec["finetune_epochs"]
    rng = np.random.default_rng(spec["seed"])
    perms = [rng.permutation(len(x)) for _ in range(epochs + tune)]
    steps = -(-len(x) // BATCH)
    keras.utils.set_random_seed(spec["seed"])
    result = {"backend": keras.backend.backend(), "seed": spec["seed"],
              "n_train": len(x), "n_val": len(x_val), "n_test": len(x_test),
              "epochs": epochs, "finetune_epochs": tune, "ratio": RATIO,
              "recipe": spec["recipe"]}
    saved = os.path.join(spec["models"] or "", f"dense_seed{spec['seed']}.keras")
    t0 = time.perf_counter()
    if spec["models_from"]:
        dense = keras.saving.load_model(os.path.join(
            spec["models_from"], os.path.basename(saved)))
    else:
        dense = _compile(resnet_cnn(), 1e-3, epochs * steps, True)
        fit_epochs(dense, x, y, perms, range(epochs), BATCH)
        if spec["models"]:
            dense.save(saved)
    result["dense_train_s"] = time.perf_counter() - t0
    result["dense"] = dict(
        _cost(dense), val=_accuracy(dense, x_val, y_val),
        test=_accuracy(dense, x_test, y_test))
    log(f"dense: val {result['dense']['val']:.4f} test "
        f"{result['dense']['test']:.4f} ({result['dense_train_s']:.0f}s)")

    plan = plan_pruning(dense, ratio=RATIO, criterion="l2")
    pruned = apply_plan(dense, plan)
    result["verify"] = verify(dense, plan, x_test[:16], pruned)
    result["pruned"] = dict(
        _cost(pruned), val=_accuracy(pruned, x_val, y_val),
        test=_accuracy(pruned, x_test, y_test))

    result["finetune"] = []
    for lr in spec["grid"]:
        t0 = time.perf_counter()
        if spec["recipe"] == "iterative":
            rounds = iter(range(epochs, epochs + tune))

            def fine_tune(small, lr=lr, rounds=rounds):
                _compile(small, lr, steps, True)
                fit_epochs(small, x, y, perms, [next(rounds)], BATCH)

            model = prune_iteratively(dense, steps=tune, ratio=RATIO,
                                      criterion="l2", fine_tune=fine_tune).model
        elif spec["recipe"] == "kd":
            from keras.distillation import Distiller, LogitsDistillation

            model = apply_plan(dense, plan)
            distiller = Distiller(
                teacher=dense, student=model,
                distillation_losses=LogitsDistillation(
                    temperature=KD_TEMPERATURE),
                student_loss_weight=KD_STUDENT_WEIGHT)
            _compile(distiller, lr, tune * steps, True)
            fit_epochs(distiller, x, y, perms, range(epochs, epochs + tune),
                       BATCH)
            # Distiller freezes its teacher; the next rate's `apply_plan`
            # would copy that flag into a frozen student.
            dense.trainable = True
        else:
            model = _compile(apply_plan(dense, plan), lr, tune * steps, True)
            fit_epochs(model, x, y, perms, range(epochs, epochs + tune), BATCH)
        seconds = time.perf_counter() - t0
        entry = {"lr": lr, "val": _accuracy(model, x_val, y_val),
                 "test": _accuracy(model, x_test, y_test), "train_s": seconds,
                 "params": _cost(model)["params"]}
        result["finetune"].append(entry)
        log(f"fine-tuned, Adam {lr:g}: val {entry['val']:.4f} test "
            f"{entry['test']:.4f} ({seconds:.0f}s)")
    return result


def choose(finetunes):
    """The entry with the best validation accuracy; a tie: the lower rate."""
    return max(finetunes, key=lambda e: (e["val"], -e["lr"]))


def _pct(x):
    return f"{100 * x:.2f}"


def render(data):
    runs = data["accuracy"]
    lines = []
    add = lines.append
    r0 = runs[0]
    parallel = (f"{data['records']} runs, the seeds of each in parallel"
                if data.get("records", 1) > 1 else "in parallel")
    add(f"Backend {r0['backend']}, 1 thread per seed, seeds "
        f"{', '.join(str(r['seed']) for r in runs)} ({parallel}); "
        f"{r0['n_train']:,} training / {r0['n_val']:,} validation (held out "
        f"of the training set, split seed {SPLIT_SEED}) / {r0['n_test']:,} "
        f"test images; dense {r0['epochs']} epochs, −{100 * RATIO:.0f} % "
        f"channels by L2 (`verify` max |difference| "
        f"{max(r['verify'] for r in runs):.1e}), fine-tuning "
        f"{r0['finetune_epochs']} epochs"
        + {"iterative": f" as `prune_iteratively(steps="
                        f"{r0['finetune_epochs']})` (one epoch after each "
                        "round)",
           "kd": " after one-shot pruning, distilled from the dense model "
                 "(`keras.distillation.Distiller`, `LogitsDistillation("
                 f"temperature={KD_TEMPERATURE:g})`, student loss weight "
                 f"{KD_STUDENT_WEIGHT:g})"}.get(
            r0.get("recipe"), " after one-shot pruning")
        + ", Adam cosine-decayed, grid "
        + ", ".join(f"{lr:g}" for lr in GRID) + ". Accuracies in %.")
    add("")
    add("| seed | dense val | dense test | pruned params | pruned MACs | "
        "before fine-tuning (test) | "
        + " | ".join(f"Adam {e['lr']:g}: val / test" for e in r0["finetune"])
        + " | chosen on val | its test | drop (points) |")
    add("|---" * (9 + len(r0["finetune"])) + "|")
    drops = []
    for r in runs:
        best = choose(r["finetune"])
        drop = r["dense"]["test"] - best["test"]
        drops.append(drop)
        add(f"| {r['seed']} | {_pct(r['dense']['val'])} | "
            f"{_pct(r['dense']['test'])} | {r['pruned']['params']:,} "
            f"({r['dense']['params'] / r['pruned']['params']:.2f}× fewer) | "
            f"{r['pruned']['macs'] / 1e6:.2f} M "
            f"({r['dense']['macs'] / r['pruned']['macs']:.2f}× fewer) | "
            f"{_pct(r['pruned']['test'])} | "
            + " | ".join(f"{_pct(e['val'])} / {_pct(e['test'])}"
                         for e in r["finetune"])
            + f" | {best['lr']:g} | **{_pct(best['test'])}** | "
            f"{100 * drop:.2f} |")
    mean = sum(drops) / len(drops)
    ok = mean <= GOAL_DROP
    add("")
    add(f"**Goal** (accuracy drop after fine-tuning ≤ "
        f"{100 * GOAL_DROP:.0f} point, the rate chosen on validation data, "
        f"mean over seeds): {100 * mean:.2f} points (each seed: "
        + " / ".join(f"{100 * d:.2f}" for d in drops)
        + f") — **{'PASS' if ok else 'MISS'}**.")
    return "\n".join(lines)


def measure(args, data):
    data["quick"] = args.quick
    spec = {
        "validation": 500 if args.quick else VALIDATION,
        "n_train": 4096 if args.quick else 60000,
        "n_test": 2000 if args.quick else 10000,
        "epochs": 1 if args.quick else EPOCHS,
        "finetune_epochs": 1 if args.quick else FINETUNE_EPOCHS,
        "grid": list(GRID),
        "recipe": args.recipe,
        "models": args.keep_models and os.path.abspath(args.keep_models),
        "models_from": args.models_from and os.path.abspath(
            args.models_from),
    }
    if args.keep_models:
        os.makedirs(args.keep_models, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="structured_ft_") as tmp:
        with concurrent.futures.ThreadPoolExecutor(len(seeds)) as pool:
            runs = pool.map(
                lambda seed: common.run_worker(
                    __file__, args.backend, dict(spec, seed=seed),
                    os.path.join(tmp, f"seed{seed}"), "seed", threads=1),
                seeds)
            data["accuracy"] = list(runs)


def merge(paths):
    """Records of one recipe on different seeds as one: the first record's
    header, the commands one a line, the seeds' runs in order, wall times
    added."""
    records = []
    for path in paths:
        with open(path) as f:
            records.append(json.load(f))
    recipes = {r["accuracy"][0].get("recipe", "oneshot") for r in records}
    if len(recipes) > 1:
        raise SystemExit(f"--from-json: records of one recipe, got "
                         f"{sorted(recipes)}")
    data = dict(records[0])
    data["command"] = "\n".join(r["command"] for r in records)
    data["accuracy"] = sorted((run for r in records for run in r["accuracy"]),
                              key=lambda run: run["seed"])
    data["wall_s"] = sum(r["wall_s"] for r in records)
    data["records"] = len(records)
    return data


def recipe(data):
    """The results file's suffix: none for the one-shot recipe."""
    name = data["accuracy"][0].get("recipe", "oneshot")
    return None if name == "oneshot" else name


def main(argv=None):
    parser = common.parser("structured_finetune.py", __doc__,
                           quick="smoke run: 4,096 images, 1 + 1 epochs")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--backend", default="tensorflow",
                        choices=common.BACKENDS)
    parser.add_argument("--recipe", choices=RECIPES,
                        default="oneshot")
    parser.add_argument("--keep-models",
                        help="save the trained dense models here")
    parser.add_argument("--models-from",
                        help="load the dense models (of --keep-models) "
                             "instead of training them")
    return common.main(parser, measure, render, argv, work=accuracy_worker,
                       label="seed", merge=merge, variant=recipe)


if __name__ == "__main__":
    main()
