"""`keras-prune prune`: one-shot pruning of a saved model, written stripped."""

import keras

from keras_prune import criteria
from keras_prune import datasets
from keras_prune.analysis.compare import DataMismatchError
from keras_prune.analysis.compare import inputs_for
from keras_prune.cli import common
from keras_prune.cli import plugins
from keras_prune.cli.choices import DATA_SETS
from keras_prune.cli.choices import default_of
from keras_prune.cli.choices import describe_criteria
from keras_prune.cli.choices import listed
from keras_prune.cli.choices import weight_criteria
from keras_prune.core import registry
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.core.spec import SCOPES
from keras_prune.core.walk import all_layers
from keras_prune.methods.oneshot import NonFiniteScoresError
from keras_prune.methods.oneshot import prune_now

NAME = "prune"
TAKES_PLUGINS = True
# prune_now's scope=None means "global" for the criteria this command
# offers data for (calibration criteria, which default to "row", need
# calibration data it does not take yet).
SCOPE_DEFAULT = "global"
_DEFAULTS = (
    f"--criterion {default_of(prune_now, 'criterion')}, "
    f"--scope {SCOPE_DEFAULT}"
)
EXAMPLES = f"""\
examples:
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8
                                        80 % of the prunable weights, by
                                        {_DEFAULTS}
  keras-prune prune model.keras -o pruned.keras --sparsity 0.5 \\
      --scope layer --exclude logits    50 % of every kernel but layer "logits"
  keras-prune prune model.keras -o pruned.keras --sparsity 0.5 \\
      --criterion taylor --data digits --loss sparse_categorical_crossentropy
                                        ranked by |w * dL/dw| on the digits
  keras-prune prune model.keras -o pruned.keras --sparsity 0.5 \\
      --plugin my_criteria.py --criterion abs_times_noise
                                        a criterion registered in my_criteria.py
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
        description="Prunes a trained model at once, without training "
        "(keras_prune.prune_now, ranking the weights by --criterion), "
        "strips the pruning wrappers and writes a plain Keras model whose "
        "pruned weights are exact zeros, then prints its SparsityReport. "
        "The output is not compiled, and fine-tuning it as it is lets the "
        "zeros grow back: to fine-tune with the masks held, prune in Python "
        "(prune_now) and strip after training.",
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
        default=SCOPE_DEFAULT,
        help="global: one ranking across all layers, so layers get "
        "different sparsities; layer: every weight pruned to --sparsity; "
        "row: every output of a layer keeps the same fraction of its "
        "inputs (default: %(default)s)",
    )
    parser.add_argument(
        "--criterion",
        choices=weight_criteria(),
        default=default_of(prune_now, "criterion"),
        help="how the weights are ranked, larger scores kept: "
        f"{describe_criteria(weight_criteria())} (default: %(default)s). "
        "Criteria registered by a --plugin are choices too",
    )
    gradients = listed(weight_criteria(criteria.GRADIENTS)) or "none"
    parser.add_argument(
        "--data",
        choices=DATA_SETS,
        help="for a criterion that needs gradients (here: "
        f"{gradients}): the offline data set whose training split the "
        "gradients are averaged over; images are reshaped to the model's "
        "input if the number of values matches",
    )
    parser.add_argument(
        "--loss",
        metavar="NAME",
        help="with --data: the loss whose gradients are taken, a Keras "
        "loss name, e.g. sparse_categorical_crossentropy (default: the "
        "model's compiled loss)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=default_of(prune_now, "seed"),
        help="seed of random criteria (default: %(default)s)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="names of layers to leave dense (repeatable)",
    )
    plugins.add_option(parser)
    common.add_json(parser, "the report")
    common.add_unsafe(parser)


def run(args):
    if not 0 <= args.sparsity < 1:
        args.parser.error(
            f"--sparsity must be in [0, 1), got {args.sparsity}: it is the "
            "fraction of prunable weights set to zero, e.g. 0.8."
        )
    needs = criteria.get(args.criterion).needs
    _check_data_options(args, needs)
    common.check_output(args, args.output, [args.model])
    model = common.load(args.model, args.unsafe)
    if pruned_layers(model):
        raise common.CommandError(
            f"{args.model} is already pruned (it holds pruning wrappers): run "
            "`keras-prune strip` on it first, then prune the stripped model."
        )
    if not any(registry.prunable_weights(layer) for layer in all_layers(model)
               if layer is not model):
        # Not a usage error: the file, not the command line, is the cause.
        raise common.CommandError(
            f"{args.model} has nothing to prune: none of its layers holds a "
            "weight keras-prune prunes (`keras-prune report "
            f"{args.model}` gives each weight's reason)."
        )
    data, loss = None, None
    if needs == criteria.GRADIENTS:
        data, loss = _gradient_data(args, model)
    try:
        with plugins.failures_named(f"--criterion {args.criterion}"):
            pruned, report = prune_now(
                model, args.sparsity, scope=args.scope,
                criterion=args.criterion, exclude=args.exclude,
                seed=args.seed, data=data, loss=loss,
            )
    except NonFiniteScoresError as err:
        # The file's weights are the cause, not the command line.
        raise common.CommandError(f"cannot prune {args.model}: {err}") from None
    except ValueError as err:
        # The library's advice, in the command's words.
        args.parser.error(str(err).replace("scope='layer'", "--scope layer")
                          .replace("exclude / per_layer", "--exclude"))
    common.write_atomically(args.output, strip_pruning(pruned).save)
    common.log(
        f"wrote {args.output}: pruned to {report.prunable_sparsity:.1%} of "
        "its prunable weights, stripped (plain Keras layers), not compiled"
    )
    print(report.to_json() if args.json else report.summary())
    return 0


def _check_data_options(args, needs):
    """Usage errors for --data and --loss, before the model is loaded."""
    name = args.criterion
    only_weights = listed(weight_criteria(criteria.WEIGHTS))
    if needs == criteria.GRADIENTS:
        if args.data is None:
            args.parser.error(
                f"--criterion {name} ranks weights by gradients of a loss on "
                f"data: pass --data NAME (one of {listed(DATA_SETS)}), or "
                f"use a criterion that needs only the weights ({only_weights})."
            )
    elif needs == criteria.WEIGHTS:
        for flag, value in (("--data", args.data), ("--loss", args.loss)):
            if value is not None:
                args.parser.error(
                    f"{flag} applies to criteria that need gradients; "
                    f"--criterion {name} needs only the weights."
                )
    else:
        args.parser.error(
            f"--criterion {name} needs {needs}, which prune does not collect; "
            f"use a criterion that needs only the weights ({only_weights})."
        )
    if args.loss is not None:
        try:
            keras.losses.get(args.loss)
        except (ValueError, TypeError):
            args.parser.error(
                f"--loss {args.loss!r} is not a Keras loss name; use e.g. "
                "sparse_categorical_crossentropy (class indices as labels)."
            )


def _gradient_data(args, model):
    """`(data, loss)` for prune_now, or a CommandError saying why not."""
    loss = args.loss if args.loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise common.CommandError(
            f"{args.model} was saved without a compiled loss, and --criterion "
            f"{args.criterion} takes gradients of one: pass --loss NAME, e.g. "
            "sparse_categorical_crossentropy."
        )
    try:
        (x, y), _ = datasets.load(args.data)
    except datasets.DataUnavailableError as err:
        raise common.CommandError(str(err)) from None
    try:
        x = inputs_for(model, x, args.model, args.data)
    except DataMismatchError as err:
        raise common.CommandError(
            f"{err.reason} Use a data set the model was made for, or a "
            "criterion that needs only the weights."
        ) from None
    common.log(
        f"computing the gradients of --criterion {args.criterion} on "
        f"{len(x):,} {args.data} training images"
    )
    return (x, y), loss
