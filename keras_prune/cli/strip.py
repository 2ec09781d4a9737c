"""`keras-prune strip`: remove the pruning wrappers of a saved model."""

from keras_prune.cli import common
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning

NAME = "strip"
EXAMPLES = """\
examples:
  keras-prune strip training.keras -o final.keras
                                        a model saved during pruning (with its wrappers
                                        and masks) as plain Keras layers, zeros baked in
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Loads a model saved with its pruning wrappers (e.g. "
        "during training with prune_low_magnitude), bakes the masks into the "
        "weights (exact zeros), removes the wrappers (keras_prune."
        "strip_pruning) and writes a plain Keras model, then prints its "
        "SparsityReport.",
    )
    parser.add_argument(
        "model",
        metavar="PRUNED.keras",
        help="a model with pruning wrappers (only read)",
    )
    common.add_output(parser)
    common.add_json(parser, "the report")
    common.add_unsafe(parser)


def run(args):
    common.check_output(args, args.output, [args.model])
    model = common.load(args.model, args.unsafe)
    if not pruned_layers(model):
        raise common.CommandError(
            f"{args.model} has no pruning wrappers (it is dense or already "
            "stripped): there is nothing to strip."
        )
    stripped = strip_pruning(model)
    common.write_atomically(args.output, stripped.save)
    common.log(
        f"wrote {args.output}: {len(pruned_layers(model))} pruning wrappers "
        "removed, plain Keras layers, not compiled"
    )
    report = common.report(stripped, args.output)
    print(report.to_json() if args.json else report.summary())
    return 0
