"""`keras-prune prune`: one-shot pruning of a saved model, written stripped."""

from keras_prune.cli import common
from keras_prune.cli.choices import default_of
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.core.spec import SCOPES
from keras_prune.methods.oneshot import prune_now

NAME = "prune"
OVERVIEW = "  keras-prune prune model.keras -o pruned.keras --sparsity 0.8\n"
_DEFAULTS = (
    f"--criterion {default_of(prune_now, 'criterion')}, "
    f"--scope {default_of(prune_now, 'scope')}"
)
EXAMPLES = f"""\
examples:
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8
                                        80 % of the prunable weights, by
                                        {_DEFAULTS}
  keras-prune prune model.keras -o pruned.keras --sparsity 0.5 \\
      --scope layer --exclude logits    50 % of every kernel but layer "logits"
  keras-prune prune model.keras -o pruned.keras --sparsity 0.9 --force
                                        overwrite pruned.keras
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8 --json
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        help="one-shot magnitude pruning of a saved model; writes it stripped",
        description="Prunes a trained model at once, without training "
        "(keras_prune.prune_now, by weight magnitude), strips the pruning "
        "wrappers and writes a plain Keras model whose pruned weights are "
        "exact zeros, then prints its SparsityReport. The output is not "
        "compiled, and fine-tuning it as it is lets the zeros grow back: to "
        "fine-tune with the masks held, prune in Python (prune_now) and "
        "strip after training.",
    )
    parser.add_argument(
        "model", metavar="MODEL.keras", help="the model to prune (only read)"
    )
    common.add_output(parser)
    parser.add_argument(
        "--sparsity",
        type=float,
        required=True,
        help="fraction of prunable weights set to zero, in [0, 1), e.g. 0.8",
    )
    parser.add_argument(
        "--scope",
        choices=SCOPES,
        default=default_of(prune_now, "scope"),
        help="global: one magnitude threshold across all layers, so layers "
        "get different sparsities; layer: every weight pruned to --sparsity "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="names of layers to leave dense (repeatable)",
    )
    common.add_json(parser, "the report")
    common.add_unsafe(parser)


def run(args):
    if not 0 <= args.sparsity < 1:
        args.parser.error(
            f"--sparsity must be in [0, 1), got {args.sparsity}: it is the "
            "fraction of prunable weights set to zero, e.g. 0.8."
        )
    common.check_output(args, args.output, [args.model])
    model = common.load(args.model, args.unsafe)
    if pruned_layers(model):
        raise common.CommandError(
            f"{args.model} is already pruned (it holds pruning wrappers): run "
            "`keras-prune strip` on it first, then prune the stripped model."
        )
    try:
        pruned, report = prune_now(
            model, args.sparsity, scope=args.scope, exclude=args.exclude
        )
    except ValueError as err:
        args.parser.error(str(err))
    common.write_atomically(args.output, strip_pruning(pruned).save)
    common.log(
        f"wrote {args.output}: pruned to {report.prunable_sparsity:.1%} of "
        "its prunable weights, stripped (plain Keras layers), not compiled"
    )
    print(report.to_json() if args.json else report.summary())
    return 0
