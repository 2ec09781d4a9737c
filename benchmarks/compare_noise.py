"""Self-comparison of `compare`'s latency: a model timed against an identical
copy, with the fixed call order `compare` used before and the rotating order
it uses now, per backend.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/compare_noise.py --write
    .venv/bin/python benchmarks/compare_noise.py --quick --backends jax

Each backend runs in its own worker, with the frameworks' own threads (as
`keras-prune compare` runs). A worker builds
the digits MLP of docs/cli.md (64-16-10) and an identical copy, then runs
`--runs` self-comparisons per order, the two orders interleaved run by run:
each run is 3 warm-up and 20 timed `predict_on_batch` calls per model and
batch size (1 and 32), as `keras-prune compare` makes them. For each run it
records the median of the per-round time ratios (copy / original) and its
95 % interval (`sizes.paired_ratio`), and whether `compare` would call the
difference measurable. A copy is not faster than itself: a measurable
difference is a false report.
"""

import statistics

import common


def self_comparison(model, twin, x, fixed, repeats, warmup=3):
    """Per-round times of `model` and `twin` on `x`: the fixed order
    (model first in every round) or `latency_samples`' rotating one."""
    import time

    from keras_prune.analysis import sizes

    if not fixed:
        return sizes.latency_samples([model, twin], [x, x], repeats, warmup)
    for m in (model, twin):
        for _ in range(warmup):
            m.predict_on_batch(x)
    times = [[], []]
    for _ in range(repeats):
        for m, found in zip((model, twin), times):
            start = time.perf_counter()
            m.predict_on_batch(x)
            found.append(time.perf_counter() - start)
    return times


def work(spec, log):
    import keras

    from keras_prune.analysis import compare
    from keras_prune.analysis import sizes

    runs = {"fixed": [], "rotating": []}
    for run in range(spec["runs"]):
        for order in ("fixed", "rotating"):
            # Fresh models for every run, as a `compare` process loads
            # them: their first calls (tracing, caches) are part of it.
            keras.utils.set_random_seed(run)
            model = keras.Sequential([
                keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(10)])
            twin = keras.models.clone_model(model)
            twin.set_weights(model.get_weights())
            found = {}
            for batch in (1, 32):
                x = sizes.random_inputs(model, batch)
                times = self_comparison(model, twin, x, order == "fixed",
                                        spec["repeats"])
                ratio = compare.measured_ratio(*sizes.paired_ratio(*times))
                # What compare printed before: the ratio of the two
                # medians, in words that call any 0.5 % a difference.
                ratio["old_words"] = compare.ratio_in_words(
                    statistics.median(times[0]), statistics.median(times[1]),
                    "faster", "slower")
                found[str(batch)] = ratio
            runs[order].append(found)
        log(f"run {run + 1}/{spec['runs']}")
    return {"backend": keras.backend.backend(), "runs": runs,
            "repeats": spec["repeats"]}


def measure(args, data):
    runs = 3 if args.quick else args.runs
    data["runs"] = common.run_backends(
        "compare_noise.py", args.backends, {"runs": runs, "repeats": 20},
        threads=0)


def render(data):
    lines = [
        "| backend | order | batch | copy / original, median of runs "
        "(range) | runs now called measurable | runs the old words called "
        "faster or slower (the largest) |",
        "|---|---|---|---|---|---|",
    ]
    for record in data["runs"]:
        for order in ("fixed", "rotating"):
            for batch in ("1", "32"):
                found = [run[batch] for run in record["runs"][order]]
                ratios = [r["time_ratio"] for r in found]
                wrong = sum(r["measurable"] for r in found)
                claims = [r["old_words"] for r in found
                          if r["old_words"].endswith(("faster", "slower"))]
                largest = max(claims, key=lambda w: float(w.split("x")[0]),
                              default="-")
                lines.append(
                    f"| {record['backend']} | {order} | {batch} | "
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-"
                    f"{max(ratios):.3f}) | {wrong} of {len(found)} | "
                    f"{len(claims)} of {len(found)} ({largest}) |")
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser(
        "compare_noise.py", __doc__, quick="3 runs per order",
        backends=list(common.BACKENDS))
    parser.add_argument("--runs", type=int, default=15,
                        help="self-comparisons per order and backend "
                             "(default 15)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
