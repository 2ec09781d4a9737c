"""Lottery tickets: test accuracy vs weights remaining for iterative magnitude pruning with rewinding.

Not part of the test suite (its `--quick` smoke run is). Run from the
repository root:

    KERAS_BACKEND=jax .venv/bin/python benchmarks/lottery.py --write   # ~15 min
    KERAS_BACKEND=jax .venv/bin/python benchmarks/lottery.py --quick   # smoke run

Protocol (declared 2026-12-07 before the first run; a reduced version of
Frankle & Carbin's LeNet-300-100 experiment, for a shared 2-core machine):
- Data: `load_fashion_mnist()`, images flattened to 784. Training on a
  fixed subset of `TRAIN` = 20,000 of the 60,000 training images (the first
  of a permutation with seed 0); accuracy on all 10,000 test images, after
  each round's training (no early stopping).
- Model: LeNet-300-100 (Dense 300 relu, Dense 100 relu, Dense 10), Glorot
  uniform, built with `keras.utils.set_random_seed(seed)`: within a seed
  every variant starts from the same theta_0.
- Seeds (declared 2026-12-07, second session, before the multi-seed run):
  `--seeds` 0 1 2 by default; a seed sets theta_0 and `find_ticket`'s
  seed (batch order, random controls); the training subset stays the one
  of seed 0. Tables show the median over seeds and, below, the spread
  (min-max); the goals are judged on the medians.
- Each round: `EPOCHS` = 2 epochs, batch 60 (667 optimizer steps), Adam,
  learning rate 1.2e-3 cosine-decayed to 1.2e-4 over the round
  (`CosineDecay(1.2e-3, 667, alpha=0.1)`), a new optimizer each round,
  `seed=seed`.
- Pruning: 18 rounds of 20 % of the surviving weights, layer-wise, the
  output layer at 10 % (the paper's LeNet rule); the table shows rounds 0,
  3, 6, 9, 12, 15, 18 (100, 51, 26, 13.4, 6.9, 3.6, 1.8 % of the hidden
  weights; the output layer keeps more: 0.9 ** n).
- Variants: rewind to init (theta_0), rewind to step k = 100 (15 % of the
  first run), learning-rate rewinding (trained weights, schedule replayed),
  fine-tuning (trained weights, constant final rate 1.2e-4: the same
  number of steps as every other variant), and two controls on the
  rewind-to-init ticket's masks: random re-initialization, random masks
  with the same per-layer counts (from theta_0).
- Goals (published shape): the rewound ticket within 0.3 pt of dense (or
  above) down to ~13 % remaining; it beats random re-init by >= 1 pt at
  <= 3.6 %; LR rewinding >= fine-tuning; the pruning machinery (prune and
  reset, `seconds_prune`) <= 5 % of a round (`seconds_train`).
- `--quick`: 600 training images, 2 rounds of 1 epoch, the same variants,
  seed 0: a smoke run whose figures are not measurements.

The plot (the first seed's curves) goes to docs/img/lottery.png (a full
run, or --plot PATH).
"""

import os
import statistics
import sys

import common

TRAIN = 20_000
EPOCHS = 2
BATCH = 60
ROUNDS = 18
REWIND_STEP = 100
SHOWN = (0, 3, 6, 9, 12, 15, 18)
PLOT = os.path.join(common.ROOT, "docs", "img", "lottery.png")


def measure(args, data):
    import keras
    import numpy as np

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    order = np.random.default_rng(0).permutation(len(x))
    n = 600 if args.quick else TRAIN
    x, y = x[order[:n]].reshape(n, -1), y[order[:n]]
    xt = xt.reshape(len(xt), -1)
    epochs, rounds = (1, 2) if args.quick else (EPOCHS, ROUNDS)
    steps = epochs * -(-n // BATCH)
    k = min(REWIND_STEP, steps // 2)
    seeds = [0] if args.quick else args.seeds
    runs = []
    for seed in seeds:
        found = {}
        for name, extra in (("init", {"rewind": "init"}),
                            (f"k={k}", {"rewind": k}),
                            ("lr", {"rewind": "lr"}),
                            ("finetune", {"rewind": "finetune"}),
                            ("reinit", {"control": "reinit"}),
                            ("random_mask", {"control": "random_mask"})):
            if "control" in extra:
                extra["ticket"] = found["init"]
            print(f"== seed {seed}: {name}", flush=True)
            keras.utils.set_random_seed(seed)
            found[name] = keras_prune.find_ticket(
                common.lenet, (x, y), (xt, yt), rounds=rounds, rate=0.2,
                output_rate=0.1, scope="layer", epochs=epochs,
                batch_size=BATCH, optimizer="adam",
                learning_rate=keras.optimizers.schedules.CosineDecay(
                    1.2e-3, steps, alpha=0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                metrics=["accuracy"], seed=seed, verbose=1, **extra)
        results = {name: r.to_dict() for name, r in found.items()}
        for record in results.values():  # the record keeps no masks
            for round_ in record["rounds"]:
                round_.pop("masks", None)
        runs.append({"seed": seed, "results": results})
        if seed == seeds[0]:
            first = found
    data.update({
        "quick": args.quick, "backend": keras.backend.backend(),
        "n_train": n, "epochs": epochs, "rounds": rounds, "rewind_step": k,
        "runs": runs,
    })
    plot = args.plot or (None if args.quick else PLOT)
    if plot:
        first["init"].plot(plot, [first[k] for k in list(first)[1:]],
                           title=f"LeNet-300-100, Fashion-MNIST (seed "
                                 f"{seeds[0]}; {n:,} images, {epochs} "
                                 "epochs a round)")
        data["plot"] = os.path.relpath(plot, common.ROOT)


def _accuracies(data):
    """{variant: [[accuracy of round i for each seed] for each round]}."""
    from keras_prune.analysis.tickets import LotteryResult

    found = {}
    for run in data["runs"]:
        for name, record in run["results"].items():
            result = LotteryResult.from_dict(record)
            rows = found.setdefault(name, [[] for _ in result.rounds])
            for i, round_ in enumerate(result.rounds):
                rows[i].append(round_.metrics["accuracy"])
    return found


def render(data):
    from keras_prune.analysis.tickets import LotteryResult

    runs = data["runs"]
    first = {k: LotteryResult.from_dict(v)
             for k, v in runs[0]["results"].items()}
    names = list(first)
    accuracy = _accuracies(data)
    median = {n: [statistics.median(a) for a in rows]
              for n, rows in accuracy.items()}
    shown = [i for i in SHOWN if i <= data["rounds"]] or [0]
    if data["rounds"] not in shown:
        shown.append(data["rounds"])
    seeds = ", ".join(str(r["seed"]) for r in runs)
    header = ["| round | weights remaining | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    lines = [
        f"Backend {data['backend']}; {data['n_train']:,} training images, "
        f"{data['epochs']} epoch(s) a round, {data['rounds']} rounds; "
        f"rewind step k = {data['rewind_step']}; seeds {seeds}. Test "
        "accuracy (%) on the 10,000 test images after each round's "
        "training, median over the seeds:", "", *header]
    spread = ["", "Spread over the seeds (min-max, %):", "", *header]
    for i in shown:
        row = [str(i), f"{100 * first['init'].rounds[i].remaining:.1f} %"]
        lines.append("| " + " | ".join(
            row + [f"{100 * median[n][i]:.2f}" for n in names]) + " |")
        spread.append("| " + " | ".join(
            row + [f"{100 * min(accuracy[n][i]):.2f}-"
                   f"{100 * max(accuracy[n][i]):.2f}" for n in names])
            + " |")
    if len(runs) > 1:
        lines += spread
    dense = median["init"][0]
    remaining = [r.remaining for r in first["init"].rounds]
    lines += ["", "Goals (on the medians):"]
    worst = min(a - dense for a, left in zip(median["init"][1:],
                                             remaining[1:]) if left >= 0.13)
    lines.append(
        f"- rewind-to-init within 0.3 pt of dense down to ~13 %: worst "
        f"{100 * worst:+.2f} pt vs dense over the pruned rounds at >= 13 % "
        "remaining -> " + ("met" if worst >= -0.003 else "missed"))
    low = [i for i, left in enumerate(remaining) if left <= 0.036]
    if low:
        gap = min(median["init"][i] - median["reinit"][i] for i in low)
        lines.append(
            f"- ticket beats random re-init by >= 1 pt at <= 3.6 %: smallest "
            f"gap {100 * gap:+.2f} pt -> " + ("met" if gap >= 0.01
                                              else "missed"))
    diffs = [a - b for a, b in zip(median["lr"][1:], median["finetune"][1:])]
    wins = sum(d >= 0 for d in diffs)
    lines.append(
        f"- LR rewinding >= fine-tuning (same steps a round): in {wins} of "
        f"{len(diffs)} rounds, mean {100 * statistics.mean(diffs):+.2f} pt "
        "-> " + ("met" if wins == len(diffs) else "missed"))
    share = [r.seconds_prune / (r.seconds_prune + r.seconds_train)
             for run in runs for v in run["results"].values()
             for r in LotteryResult.from_dict(v).rounds[1:]]
    lines.append(
        f"- pruning machinery <= 5 % of a round: median "
        f"{100 * statistics.median(share):.1f} %, max "
        f"{100 * max(share):.1f} % -> "
        + ("met" if max(share) <= 0.05 else "missed (max)"))
    if data.get("plot"):
        lines += ["", f"Plot (seed {runs[0]['seed']}): "
                  f"[{data['plot']}](../../{data['plot']})."]
    return "\n".join(lines)


def main(argv=None):
    p = common.parser("lottery.py", __doc__,
                      quick="600 images, 2 rounds of 1 epoch (smoke run)",
                      write_by_default=True, workers=False)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds (default 0 1 2; --quick: 0)")
    p.add_argument("--plot", help="write the plot here (default "
                   "docs/img/lottery.png in a full run, none with --quick)")
    return common.main(p, measure, render, argv)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
