"""`keras-prune compare`: two saved models side by side.

A thin layer over `keras_prune.compare_models`: load (safe mode or
`--unsafe`), measure, print the table or the JSON.
"""

from keras_prune import datasets
from keras_prune.analysis.compare import DataMismatchError
from keras_prune.analysis.compare import MAX_INPUT_BYTES
from keras_prune.analysis.compare import MAX_REPEATS
from keras_prune.analysis.compare import check_repeats
from keras_prune.analysis.compare import compare_models
from keras_prune.cli import common
from keras_prune.cli.choices import DATA_SETS
from keras_prune.cli.choices import default_of

NAME = "compare"
EXAMPLES = """\
examples:
  keras-prune compare model.keras pruned.keras
                                        parameters, zeros, file and zipped size, latency
  keras-prune compare model.keras pruned.keras --data digits
                                        and test accuracy on scikit-learn's 8x8 digits
  keras-prune compare model.keras pruned.keras --repeats 0 --json
                                        sizes only, as JSON
"""


def add_parser(commands):
    warmup = default_of(compare_models, "warmup")
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Compares two saved models (keras_prune.compare_models): "
        "parameters and non-zero parameters, file size and zipped size (the "
        "file zipped with DEFLATE, as tfmot's pruning tutorial measures: a "
        ".keras file stores zeros densely, so pruning shows in the zipped "
        "size), latency (median time of predict_on_batch on random inputs, "
        f"after {warmup} warm-up calls) and, with --data, test accuracy. "
        "Keras computes with dense kernels: unstructured zeros make a model "
        "smaller once compressed, not faster.",
    )
    parser.add_argument("a", metavar="A.keras", help="the first model, e.g. dense")
    parser.add_argument(
        "b", metavar="B.keras", help="the second model, e.g. pruned"
    )
    parser.add_argument(
        "--data",
        choices=DATA_SETS,
        help="also measure test accuracy on this offline data set; images "
        "are reshaped to the model's input if the number of values matches",
    )
    batch_sizes = list(default_of(compare_models, "batch_sizes"))
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=batch_sizes,
        metavar="N",
        help="batch sizes to time, whose random inputs take at most "
        f"{MAX_INPUT_BYTES // 2**30} GiB a model (default: "
        f"{' '.join(str(b) for b in batch_sizes)})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=default_of(compare_models, "repeats"),
        metavar="N",
        help="timed calls per model and batch size, at most "
        f"{MAX_REPEATS:,}; 0 skips the latency (default: %(default)s)",
    )
    common.add_json(parser, "the comparison")
    common.add_unsafe(parser)


def run(args):
    try:
        check_repeats(args.repeats, "--repeats")
    except ValueError as err:
        args.parser.error(str(err))
    if any(batch < 1 for batch in args.batch_sizes):
        args.parser.error(
            f"--batch-sizes must be at least 1, got {args.batch_sizes}."
        )
    paths = [args.a, args.b]
    models = [common.load(path, args.unsafe) for path in paths]
    try:
        with common.progress_on_stderr():
            comparison = compare_models(
                models, args.data, files=paths, batch_sizes=args.batch_sizes,
                repeats=args.repeats, verbose=common.progress_verbosity(),
            )
    except DataMismatchError as err:
        raise common.CommandError(
            f"{err.reason} Compare models made for this data set, or leave "
            "out --data to compare the rest."
        ) from None
    except (datasets.DataUnavailableError, ValueError) as err:
        raise common.CommandError(str(err)) from None
    print(comparison.to_json() if args.json else comparison.summary())
    return 0
