"""`keras-prune report`: per-weight sparsity of a saved model."""

from keras_prune.cli import common
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.deploy import compression

NAME = "report"
EXAMPLES = """\
examples:
  keras-prune report model.keras        every weight: prunable or not (and why), zeros
  keras-prune report pruned.keras --json
                                        the same as one JSON document on stdout
  keras-prune report custom.keras --unsafe
                                        a file you trust that holds a Lambda layer
  keras-prune report pruned.keras --sizes
                                        + dense, .keras, zipped and packed sizes
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Prints the SparsityReport of a saved Keras model, dense, "
        "pruned (with pruning wrappers) or stripped: for every weight its "
        "shape, zeros, sparsity and whether keras_prune prunes it (and if "
        "not, why: bias, normalization statistic, ...), then totals with "
        "and without the weights that are not prunable.",
    )
    parser.add_argument("model", metavar="MODEL.keras", help="a saved model")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="also measure the sizes that show the pruning "
        "(keras_prune.model_size of the stripped model): dense bytes, "
        ".keras file, zipped .keras, packed float32 and int8 files; under "
        "--json as the key \"sizes\"",
    )
    common.add_json(parser, "the report (SparsityReport.to_dict())")
    common.add_unsafe(parser)


def run(args):
    model = common.load(args.model, args.unsafe)
    report = common.report(model, args.model)
    size = None
    if args.sizes:
        common.log(f"measuring the sizes of {args.model} (temporary files)")
        # The loaded copy is ours: stripping it touches nothing of the user's.
        try:
            size = compression.model_size(
                strip_pruning(model) if pruned_layers(model) else model
            )
        except (TypeError, ValueError) as err:
            raise common.CommandError(
                f"cannot measure the sizes of {args.model}: {err}"
            ) from None
    if args.json:
        data = report.to_dict()
        if size is not None:
            data["sizes"] = size.to_dict()
        common.print_json(data)
    else:
        print(f"{args.model} (model {model.name!r})\n")
        print(report.summary())
        if size is not None:
            print("\nsizes (stripped model):")
            print(size.summary())
    return 0
