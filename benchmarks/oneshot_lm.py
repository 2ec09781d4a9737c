"""One-shot pruning of a small language model trained here: held-out
perplexity after magnitude, Wanda and SparseGPT at 50 %, 2:4 and 4:8.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/oneshot_lm.py --write
    .venv/bin/python benchmarks/oneshot_lm.py --quick

Text: the standard library's `pydoc_data.topics.topics` (Python's help
topics, nothing downloaded), the topics in sorted-key order joined by blank
lines, as UTF-8 bytes (vocabulary 256). The last 10 % of the topics by key
are held out (the rest is the training split). The text changes with the
Python version, which the record states.

Model: keras-hub's `GPT2Backbone` built from a config with random weights
(`--layers` 4, `--hidden` 128, 4 heads, feed-forward 4 × hidden, sequence
`--seq` 128, no dropout) and a `Dense(256)` head on its outputs. Trained
with AdamW (learning rate 2e-3 after 50 warm-up steps, cosine decay to 10 %)
for `--steps` (1000) steps of batch 32, each sequence a window of the
training split at a random offset. The trained weights are cached under
`--cache-dir` (default `~/.cache/keras-prune/oneshot_lm`, or
`$XDG_CACHE_HOME/keras-prune/oneshot_lm`), keyed by the model and training
configuration, the training seed, the backend and the text; a rerun loads
them and skips training (the record keeps the training time measured when
the cache was made). Never committed.

Pruning: `keras_prune.prune_now` on the backbone (the transformer blocks'
Dense and EinsumDense kernels: attention query, key, value and output,
both feed-forward layers; the embeddings and the head stay dense, as in the
papers), at 50 % per output row (`scope="row"`), 2:4 and 4:8
(`sparsity_m_by_n`). Magnitude needs no data; Wanda and SparseGPT (block
128, damping 1 %, sequential: the defaults) get `--calibration` (128)
windows of `--seq` bytes from the training split. Each prune_now call is
timed (the pruned copy, statistics and solver included).

Perplexity: exp of the mean cross-entropy (nats) over every byte of the
held-out split, read in consecutive windows of `--seq` bytes (each byte
predicted once, from the bytes before it in its window). The unigram
perplexity (byte frequencies of the training split) is the no-context
reference. Also recorded: how far each pruned kernel's inputs have outlier
features (the largest ‖X_j‖ over the median, on the first seed's
calibration windows), which is what Wanda's score adds to magnitude.

Seeds: `--seeds` 0 1 2 (declared 2026-12-07, before the first full run)
choose the calibration windows; the trained model is the same for all
(`--train-seed` 0, also declared then: initialization and training
windows). Cells: median over the seeds with the spread (min-max).
Magnitude does not depend on the seed: it is measured once.
"""

import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np

import common
from common import median_cell

PATTERNS = (("50 %", None), ("2:4", (2, 4)), ("4:8", (4, 8)))
METHODS = ("magnitude", "wanda", "sparsegpt")
HELD_OUT = 0.1


def splits():
    """(train, held_out) byte arrays of the pydoc topics."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    cut = len(keys) - max(1, round(HELD_OUT * len(keys)))

    def text(ks):
        return np.frombuffer("\n\n".join(topics[k] for k in ks).encode(),
                             dtype=np.uint8).astype("int32")

    return text(keys[:cut]), text(keys[cut:])


def windows(data, length, offsets):
    """Rows `data[o:o + length]` for every offset."""
    return np.stack([data[o:o + length] for o in offsets])


def inputs(ids):
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def build(spec):
    import keras
    import keras_hub

    keras.utils.set_random_seed(spec["train_seed"])
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256, num_layers=spec["layers"],
        num_heads=spec["heads"], hidden_dim=spec["hidden"],
        intermediate_dim=4 * spec["hidden"],
        max_sequence_length=spec["seq"], dropout=0.0)
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    hidden = backbone({"token_ids": ids, "padding_mask": mask})
    head = keras.layers.Dense(256, name="lm_head")
    model = keras.Model({"token_ids": ids, "padding_mask": mask},
                        head(hidden))
    return model, backbone, head


def cache_path(spec, text_digest):
    import keras

    key = {k: spec[k] for k in ("layers", "heads", "hidden", "seq", "steps",
                                "batch", "lr", "train_seed")}
    key.update(backend=keras.backend.backend(), text=text_digest,
               version=1)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()
                          ).hexdigest()[:16]
    return os.path.join(spec["cache_dir"], f"gpt2_{digest}")


def train(spec, model, train_ids, log):
    import keras

    rng = np.random.default_rng(spec["train_seed"])
    n = spec["steps"] * spec["batch"]
    x = windows(train_ids, spec["seq"] + 1,
                rng.integers(0, len(train_ids) - spec["seq"] - 1, n))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, spec["steps"] - spec["warmup"]), alpha=0.1,
        warmup_target=spec["lr"], warmup_steps=spec["warmup"])
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.01),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    every = max(1, spec["steps"] // 10)

    def report(batch, logs):
        if (batch + 1) % every == 0:
            log(f"step {batch + 1}: loss {logs['loss']:.3f}")

    t0 = time.perf_counter()
    history = model.fit(
        inputs(x[:, :-1]), x[:, 1:], batch_size=spec["batch"], epochs=1,
        shuffle=False, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_batch_end=report)])
    return {"train_s": time.perf_counter() - t0,
            "final_loss": float(history.history["loss"][-1])}


def perplexity(backbone, head, held_ids, seq):
    """exp(mean cross-entropy) of every held-out byte after the first,
    windows of `seq` + 1 bytes overlapping by one."""
    starts = range(0, len(held_ids) - 1, seq)
    total, count = 0.0, 0
    kernel, bias = (np.asarray(w, dtype=np.float64)
                    for w in head.get_weights())
    chunks = [held_ids[s:s + seq + 1] for s in starts]
    full = np.stack([c for c in chunks if len(c) == seq + 1])
    tail = [c for c in chunks if len(c) < seq + 1 and len(c) > 1]
    for batch in [full] + [c[None] for c in tail]:
        hidden = np.asarray(backbone.predict(inputs(batch[:, :-1]),
                                             batch_size=32, verbose=0),
                            dtype=np.float64)
        logits = hidden @ kernel + bias
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        target = batch[:, 1:]
        total -= np.take_along_axis(logp, target[..., None], -1).sum()
        count += target.size
    return float(np.exp(total / count)), count


def unigram_perplexity(train_ids, held_ids):
    counts = np.bincount(train_ids, minlength=256) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[held_ids[1:]].mean()))


def calibration_windows(train_ids, spec, seed):
    rng = np.random.default_rng(seed)
    return inputs(windows(
        train_ids, spec["seq"],
        rng.integers(0, len(train_ids) - spec["seq"], spec["calibration"])))


def feature_spread(keras_prune, backbone, train_ids, spec):
    """Per pruned kernel, the largest input-feature norm ||X_j|| over the
    median one, on the first seed's calibration windows: how far the
    inputs have the outlier features that Wanda weighs (20-100x in large
    language models)."""
    stats = keras_prune.calibration_statistics(
        backbone, calibration_windows(train_ids, spec, spec["seeds"][0]))
    out = {}
    for path in stats:
        norms = np.sqrt(np.asarray(stats[path].squared_norms))
        out[path] = float(norms.max() / np.median(norms))
    return out


def work(spec, log):
    import keras

    import keras_prune

    train_ids, held_ids = splits()
    if spec["held_out_bytes"]:
        held_ids = held_ids[:spec["held_out_bytes"]]
    digest = hashlib.sha1(train_ids.tobytes() + held_ids.tobytes()
                          ).hexdigest()[:12]
    model, backbone, head = build(spec)
    path = cache_path(spec, digest)
    if os.path.exists(path + ".weights.h5"):
        model.load_weights(path + ".weights.h5")
        with open(path + ".json") as f:
            training = dict(json.load(f), cached=True)
        log(f"loaded the trained model from {path}.weights.h5")
    else:
        training = train(spec, model, train_ids, log)
        os.makedirs(spec["cache_dir"], exist_ok=True)
        model.save_weights(path + ".weights.h5")
        with open(path + ".json", "w") as f:
            json.dump(training, f)
        training["cached"] = False
        log(f"trained in {training['train_s']:.0f} s, saved to {path}")
    out = {"training": training, "cache": path,
           "params": int(model.count_params()),
           "train_bytes": int(len(train_ids)),
           "held_out_bytes": int(len(held_ids)),
           "python": ".".join(map(str, sys.version_info[:3])),
           "unigram": unigram_perplexity(train_ids, held_ids), "runs": []}
    out["dense"], out["predicted_bytes"] = perplexity(
        backbone, head, held_ids, spec["seq"])
    log(f"dense perplexity {out['dense']:.3f} (unigram "
        f"{out['unigram']:.2f})")
    patterns = [p for p in PATTERNS if p[0] in spec["patterns"]]
    out["outliers"] = feature_spread(keras_prune, backbone, train_ids, spec)
    for seed in spec["seeds"]:
        calibration = calibration_windows(train_ids, spec, seed)
        for method in METHODS:
            if method == "magnitude" and seed != spec["seeds"][0]:
                continue
            for name, n_m in patterns:
                kwargs = {"sparsity_m_by_n": n_m}
                if method == "magnitude":
                    kwargs["scope"] = "layer" if n_m else "row"
                else:
                    kwargs.update(criterion=method,
                                  calibration_data=calibration)
                t0 = time.perf_counter()
                pruned, report = keras_prune.prune_now(
                    backbone, 0.5, batch_size=32, **kwargs)
                seconds = time.perf_counter() - t0
                stripped = keras_prune.strip_pruning(pruned)
                ppl, _ = perplexity(stripped, head, held_ids, spec["seq"])
                run = {"seed": seed, "method": method, "pattern": name,
                       "perplexity": ppl, "prune_s": seconds,
                       "sparsity": float(report.prunable_sparsity),
                       "pruned_kernels": sum(
                           1 for w in report.weights if w.prunable)}
                if n_m:
                    run["n_m_ok"] = bool(
                        keras_prune.check_n_m(pruned, *n_m).ok)
                out["runs"].append(run)
                log(f"seed {seed} {method} {name}: perplexity {ppl:.3f}, "
                    f"{seconds:.1f} s, sparsity {run['sparsity']:.4f}")
                del pruned, stripped
                keras.backend.clear_session(free_memory=False)
    return out


def measure(args, data):
    quick = args.quick
    backend = common.default_backend()
    cache_dir = args.cache_dir or os.path.join(
        os.environ.get("XDG_CACHE_HOME",
                       os.path.join(os.path.expanduser("~"), ".cache")),
        "keras-prune", "oneshot_lm")
    spec = {"layers": 1 if quick else args.layers,
            "heads": 2 if quick else 4,
            "hidden": 32 if quick else args.hidden,
            "seq": 32 if quick else args.seq,
            "steps": 20 if quick else args.steps,
            "batch": 8 if quick else 32,
            "warmup": 5 if quick else 50,
            "lr": 2e-3, "train_seed": args.train_seed,
            "seeds": [args.seeds[0]] if quick else args.seeds,
            "patterns": ["2:4"] if quick else [p[0] for p in PATTERNS],
            "calibration": 8 if quick else args.calibration,
            "held_out_bytes": 2048 if quick else 0,
            "cache_dir": cache_dir}
    data.update(quick=quick, backend=backend, spec=spec)
    with tempfile.TemporaryDirectory(prefix="oneshot_lm_") as tmp:
        data.update(common.run_worker(
            "oneshot_lm.py", backend, spec, os.path.join(tmp, "lm"),
            threads=args.threads))


def render(data):
    spec, training = data["spec"], data["training"]
    trained = (f"trained in {training['train_s'] / 60:.1f} min"
               + (" (loaded from the cache; time of the run that made it)"
                  if training["cached"] else ""))
    lines = [
        f"GPT-2-style decoder (keras-hub `GPT2Backbone`, {spec['layers']} "
        f"layers, hidden {spec['hidden']}, {spec['heads']} heads, sequence "
        f"{spec['seq']}; {data['params']:,} parameters with the Dense(256) "
        f"head), byte-level, {spec['steps']} steps of batch "
        f"{spec['batch']} on {data['train_bytes']:,} training bytes of "
        f"Python {data['python']}'s pydoc topics, {trained}, final training "
        f"loss {training['final_loss']:.3f}. Held-out perplexity on "
        f"{data['predicted_bytes']:,} bytes; {data['backend']} "
        "backend. Calibration: "
        f"{spec['calibration']} windows of {spec['seq']} bytes, seeds "
        f"{spec['seeds']}; median (min-max) over the seeds; magnitude uses "
        "no data (one run).", "",
        f"Dense: **{data['dense']:.3f}**; unigram (no context): "
        f"{data['unigram']:.2f}.", "",
        "| pattern | magnitude | Wanda | SparseGPT |", "|---|---|---|---|"]
    patterns = [p[0] for p in PATTERNS if p[0] in spec["patterns"]]

    def runs(pattern, method):
        return [r for r in data["runs"]
                if r["pattern"] == pattern and r["method"] == method]

    for pattern in patterns:
        lines.append(f"| {pattern} | " + " | ".join(
            median_cell([r["perplexity"] for r in runs(pattern, m)], "{:.3f}")
            for m in METHODS) + " |")
    lines += ["", "Wall time of each `prune_now` call (s; the pruned copy, "
              "statistics and solver), median (min-max):", "",
              "| pattern | magnitude | Wanda | SparseGPT |",
              "|---|---|---|---|"]
    for pattern in patterns:
        lines.append(f"| {pattern} | " + " | ".join(
            median_cell([r["prune_s"] for r in runs(pattern, m)], "{:.1f}")
            for m in METHODS) + " |")
    spread = data["outliers"]
    worst = max(spread, key=spread.get)
    lines += ["", "Outlier features: the largest input-feature norm "
              "‖X_j‖ over the median one, per pruned kernel (first seed's "
              f"calibration windows): {min(spread.values()):.1f}-"
              f"{max(spread.values()):.1f}× (largest: `{worst}`)."]
    sparsities = sorted({round(r["sparsity"], 6) for r in data["runs"]})
    kernels = sorted({r["pruned_kernels"] for r in data["runs"]})
    n_m = [r.get("n_m_ok") for r in data["runs"] if "n_m_ok" in r]
    lines += ["", f"Every pruned copy: {', '.join(map(str, kernels))} "
              f"kernels pruned, sparsity of the pruned kernels "
              f"{', '.join(f'{s:.4f}' for s in sparsities)}; N:M verified "
              f"by `check_n_m`: {sum(n_m)} of {len(n_m)} copies."]
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser(
        "oneshot_lm.py", __doc__,
        quick="1 layer, hidden 32, 20 training steps, 2:4 only, one seed",
        threads=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--cache-dir",
                        help="where the trained weights are cached (default "
                             "~/.cache/keras-prune/oneshot_lm)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
