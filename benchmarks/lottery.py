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
  uniform, built with `keras.utils.set_random_seed(0)`: every variant
  starts from the same theta_0.
- Each round: `EPOCHS` = 2 epochs, batch 60 (667 optimizer steps), Adam,
  learning rate 1.2e-3 cosine-decayed to 1.2e-4 over the round
  (`CosineDecay(1.2e-3, 667, alpha=0.1)`), a new optimizer each round,
  `seed=0` (one seed: the machine is shared).
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
- `--quick`: 600 training images, 2 rounds of 1 epoch, the same variants:
  a smoke run whose figures are not measurements.

The plot goes to docs/img/lottery.png (a full run, or --plot PATH).
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


def lenet():
    import keras

    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10),
    ])


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
    common_args = dict(
        rounds=rounds, rate=0.2, output_rate=0.1, scope="layer",
        epochs=epochs, batch_size=BATCH, optimizer="adam",
        learning_rate=keras.optimizers.schedules.CosineDecay(
            1.2e-3, steps, alpha=0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], seed=0, verbose=1,
    )
    found = {}
    k = min(REWIND_STEP, steps // 2)
    for name, extra in (("init", {"rewind": "init"}),
                        (f"k={k}", {"rewind": k}),
                        ("lr", {"rewind": "lr"}),
                        ("finetune", {"rewind": "finetune"}),
                        ("reinit", {"control": "reinit"}),
                        ("random_mask", {"control": "random_mask"})):
        if "control" in extra:
            extra["ticket"] = found["init"]
        print(f"== {name}", flush=True)
        keras.utils.set_random_seed(0)
        found[name] = keras_prune.find_ticket(
            lenet, (x, y), (xt, yt), **common_args, **extra)
    data.update({
        "quick": args.quick, "backend": keras.backend.backend(),
        "n_train": n, "epochs": epochs, "rounds": rounds, "rewind_step": k,
        "results": {name: r.to_dict() for name, r in found.items()},
    })
    for record in data["results"].values():  # the record keeps no masks
        for round_ in record["rounds"]:
            round_.pop("masks", None)
    plot = args.plot or (None if args.quick else PLOT)
    if plot:
        found["init"].plot(plot, [found[k] for k in list(found)[1:]],
                           title="LeNet-300-100, Fashion-MNIST (20 k "
                                 "images, 2 epochs a round)")
        data["plot"] = os.path.relpath(plot, common.ROOT)


def render(data):
    from keras_prune.analysis.tickets import LotteryResult

    results = {k: LotteryResult.from_dict(v)
               for k, v in data["results"].items()}
    names = list(results)
    shown = [i for i in SHOWN if i <= data["rounds"]] or [0]
    if data["rounds"] not in shown:
        shown.append(data["rounds"])
    first = results[names[0]]
    lines = [
        f"Backend {data['backend']}; {data['n_train']:,} training images, "
        f"{data['epochs']} epoch(s) a round, {data['rounds']} rounds; "
        f"rewind step k = {data['rewind_step']}. Test accuracy (%) on the "
        "10,000 test images after each round's training.", "",
        "| round | weights remaining | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for i in shown:
        row = [str(i), f"{100 * first.rounds[i].remaining:.1f} %"]
        row += [f"{100 * r.rounds[i].metrics['accuracy']:.2f}"
                for r in results.values()]
        lines.append("| " + " | ".join(row) + " |")
    dense = first.rounds[0].metrics["accuracy"]
    ticket = results["init"]
    lines += ["", "Goals:"]
    held = [r for r in ticket.rounds[1:] if r.remaining >= 0.13]
    worst = min(r.metrics["accuracy"] - dense for r in held)
    lines.append(
        f"- rewind-to-init within 0.3 pt of dense down to ~13 %: worst "
        f"{100 * worst:+.2f} pt vs dense over the pruned rounds at >= 13 % "
        "remaining -> "
        + ("met" if worst >= -0.003 else "missed"))
    low = [(t, c) for t, c in zip(ticket.rounds, results["reinit"].rounds)
           if t.remaining <= 0.036]
    if low:
        gap = min(t.metrics["accuracy"] - c.metrics["accuracy"]
                  for t, c in low)
        lines.append(
            f"- ticket beats random re-init by >= 1 pt at <= 3.6 %: smallest "
            f"gap {100 * gap:+.2f} pt -> " + ("met" if gap >= 0.01
                                              else "missed"))
    lr, ft = results["lr"], results["finetune"]
    diffs = [a.metrics["accuracy"] - b.metrics["accuracy"]
             for a, b in zip(lr.rounds[1:], ft.rounds[1:])]
    wins = sum(d >= 0 for d in diffs)
    lines.append(
        f"- LR rewinding >= fine-tuning (same steps a round): in {wins} of "
        f"{len(diffs)} rounds, mean {100 * statistics.mean(diffs):+.2f} pt "
        "-> " + ("met" if wins == len(diffs) else "missed"))
    share = [r.seconds_prune / (r.seconds_prune + r.seconds_train)
             for res in results.values() for r in res.rounds[1:]]
    lines.append(
        f"- pruning machinery <= 5 % of a round: median "
        f"{100 * statistics.median(share):.1f} %, max "
        f"{100 * max(share):.1f} % -> "
        + ("met" if max(share) <= 0.05 else "missed (max)"))
    if data.get("plot"):
        lines += ["", f"Plot: [{data['plot']}](../../{data['plot']})."]
    return "\n".join(lines)


def main(argv=None):
    p = common.parser("lottery.py", __doc__,
                      quick="600 images, 2 rounds of 1 epoch (smoke run)",
                      write_by_default=True, workers=False)
    p.add_argument("--plot", help="write the plot here (default "
                   "docs/img/lottery.png in a full run, none with --quick)")
    return common.main(p, measure, render, argv)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
