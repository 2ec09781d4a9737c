"""`keras-prune shrink`: structured pruning of a saved model.

Plans which channels go (`keras_prune.structured`, with the options of
`shrink_options`), cuts them out (`apply_plan`), checks the cut (`verify`)
and writes the smaller model.
"""

import json
import os

import keras

from keras_prune import structured
from keras_prune.analysis.compare import align_rows
from keras_prune.analysis.compare import ratio_in_words
from keras_prune.cli import common
from keras_prune.cli import plugins
from keras_prune.cli import shrink_options
from keras_prune.cli.choices import default_of
from keras_prune.cli.shrink_options import DEFAULT_RATIO
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import uncompiled
from keras_prune.analysis import sizes

NAME = "shrink"
TAKES_PLUGINS = True
# `verify` runs on this many inputs from sizes.random_inputs (standard
# normal; zeros for integer inputs) with its default seed: the same batch
# each run.
VERIFY_BATCH = 4
VERIFY_SEED = default_of(sizes.random_inputs, "seed")

_REMOVE = f"remove {DEFAULT_RATIO:.0%} of the channels of every"
_BY = f"(--criterion {shrink_options.ranked_default('criterion')})"
EXAMPLES = f"""\
examples:
  keras-prune shrink model.keras -o small.keras
                                        {_REMOVE}
                                        prunable group {_BY}
  keras-prune shrink model.keras -o small.keras --target-macs 0.5 --round-to 8
                                        at most half the MACs, channel counts
                                        multiples of 8
  keras-prune shrink model.keras -o small.keras --threshold 0.3 \\
      --granularity 8 --min-num-filters 16 --exclude conv1
                                        NVIDIA TAO's rule (plan_by_threshold)
  keras-prune shrink model.keras -o small.keras --save-plan plan.json
  keras-prune shrink model.keras -o edited.keras --plan plan.json
                                        replay a saved (maybe edited) plan
  keras-prune shrink model.keras -o small.keras --fold-bn --json
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Plans structured pruning of a saved Functional or "
        "Sequential model (keras_prune.structured: which channels of each "
        "channel group go, and why), cuts them out (apply_plan) and writes "
        "the smaller model: plain Keras layers with fewer filters and "
        "units, not compiled. Prints the plan, the parameters and MACs "
        "before and after, and verify's max abs difference between the "
        "smaller model and the original with the removed channels zeroed, "
        f"on {VERIFY_BATCH} random inputs (standard normal, seed "
        f"{VERIFY_SEED}; about 1e-6 or less: exactly the planned channels "
        f"went). How much goes: --ratio (default {DEFAULT_RATIO}), "
        "--target-params / --target-macs, --threshold (NVIDIA TAO's rule) "
        "or --plan (a saved plan, replayed). Fine-tune the smaller model "
        "before use.",
    )
    parser.add_argument(
        "model", metavar="MODEL.keras", help="the model to shrink (only read)"
    )
    common.add_output(parser)
    shrink_options.add_to(parser)
    written = parser.add_argument_group("what is written")
    written.add_argument(
        "--save-plan",
        metavar="PLAN.json",
        help="also write the plan (PruningPlan.to_json), to read, edit and "
        "replay with --plan; not overwritten without --force",
    )
    written.add_argument(
        "--fold-bn",
        action="store_true",
        help="also fold each BatchNormalization into the convolution or "
        "Dense before it (keras_prune.fold_batchnorm): fewer layers, the "
        "same predictions; for inference, after training",
    )
    plugins.add_option(parser)
    common.add_json(parser, "the groups, parameters, MACs and verify difference")
    common.add_unsafe(parser)


def run(args):
    mode = shrink_options.mode(args)
    inputs = [args.model] if args.plan is None else [args.model, args.plan]
    common.check_output(args, args.output, inputs)
    if args.save_plan:
        _check_plan_output(args)
    plan = _read_plan(args.plan) if args.plan else None
    model = common.load(args.model, args.unsafe)
    graph, x = _check_shrinkable(model, args.model)
    if plan is None:
        common.log(f"planning ({mode})")
        plan = _plan(model, args)
    else:
        try:
            plan.check_model(graph)
        except ValueError as err:
            raise common.CommandError(
                f"the plan {args.plan} does not fit {args.model}: {err} "
                "(Leave out --plan to plan anew; --save-plan keeps the plan.)"
            ) from None
    common.log("cutting out the removed channels (apply_plan)")
    written = structured.apply_plan(model, plan)
    folding = None
    if args.fold_bn:
        common.log("folding BatchNormalization (fold_batchnorm)")
        folding = structured.fold_batchnorm(written)
        written = folding.model
    if getattr(written, "compiled", False):
        # The input's compile settings and optimizer state (for its old
        # shapes) are not the smaller model's: written as stated.
        written = uncompiled(written)
    common.log(f"verifying on {VERIFY_BATCH} random inputs")
    difference = structured.verify(model, plan, x, written)
    before = structured.model_cost(model)
    after = structured.model_cost(written)
    common.write_atomically(args.output, written.save)
    folded = ""
    if folding is not None:
        folded = f", {len(folding.folded)} BatchNormalization folded"
    common.log(
        f"wrote {args.output}: {before.params:,} -> {after.params:,} "
        f"parameters{folded}, plain Keras layers, not compiled"
    )
    if args.save_plan:
        common.write_atomically(args.save_plan, plan.to_json)
        common.log(f"wrote {args.save_plan}")
    result = {
        "backend": keras.backend.backend(),
        "model": args.model,
        "output": args.output,
        "plan": args.plan,
        "saved_plan": args.save_plan,
        "settings": plan.settings,
        "params": _before_after(before.params, after.params),
        "macs": dict(
            _before_after(before.macs, after.macs),
            uncounted=[c.path for c in before.uncounted],
        ),
        "groups": [
            {
                "name": g["name"],
                "channels": g["size"],
                "kept": sum(g["keep"]),
                "removed": g["size"] - sum(g["keep"]),
                "blocked": g["blocked"],
            }
            for g in plan.groups
        ],
        "verify": {
            "max_abs_difference": difference,
            "inputs": VERIFY_BATCH,
            "seed": VERIFY_SEED,
        },
        "fold_bn": None if folding is None else folding.to_dict(),
    }
    if args.json:
        common.print_json(result)
    else:
        print(_text(result, plan, folding))
    return 0


def _check_plan_output(args):
    path = args.save_plan
    if os.path.abspath(path) == os.path.abspath(args.output):
        args.parser.error(
            f"--save-plan {path} is the output model too; name another "
            "file, e.g. plan.json."
        )
    if common.is_one_of(path, (args.model, args.plan)):
        args.parser.error(
            f"--save-plan {path} is an input file; write to another file "
            "(an input file is never modified)."
        )
    common.check_writable(args, path)


def _read_plan(path):
    """The PruningPlan in a JSON file, or a CommandError saying why not."""
    if not os.path.exists(path):
        raise common.CommandError(f"{path}: no such file.")
    try:
        with open(path) as f:
            config = json.load(f)
        plan = structured.PruningPlan.from_config(config)
        plan.kept()
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
        raise common.CommandError(
            f"{path} is not a pruning plan (the JSON of PruningPlan.to_json, "
            f"as --save-plan writes it): {type(err).__name__}: {err}"
        ) from None
    return plan


def _check_shrinkable(model, path):
    """The model's ChannelGraph and the verify batch, or a CommandError."""
    wrappers = pruned_layers(model)
    if wrappers:
        raise common.CommandError(
            f"{path} holds pruning wrappers ({len(wrappers)} "
            "PruneLowMagnitude layers): run `keras-prune strip` on it first, "
            "then shrink the stripped model."
        )
    try:
        graph = structured.channel_groups(model)
    except ValueError as err:
        raise common.CommandError(f"cannot shrink {path}: {err}") from None
    try:
        x = sizes.random_inputs(model, VERIFY_BATCH, seed=VERIFY_SEED)
    except ValueError as err:
        raise common.CommandError(
            f"cannot shrink {path}: {err} shrink checks the smaller model on "
            "random inputs of the model's input shape: save the model with "
            "a fixed input shape, e.g. keras.Input((224, 224, 3))."
        ) from None
    return graph, x


def _plan(model, args):
    planner, arguments = shrink_options.planner(args)
    try:
        with plugins.failures_named(f"--criterion {args.criterion}"):
            return planner(model, **arguments)
    except ValueError as err:
        # The options passed the checks above; what is left is about this
        # model: a layer name not in it, a budget below its smallest size.
        args.parser.error(shrink_options.in_cli_words(str(err)))


def _before_after(before, after):
    return {
        "before": before,
        "after": after,
        "reduction": before / after if after else None,
    }


def _text(result, plan, folding):
    rows = [("", "before", "after", "")]
    for label, key in (("parameters", "params"), ("MACs per sample", "macs")):
        a, b = result[key]["before"], result[key]["after"]
        rows.append((label, f"{a:,}", f"{b:,}", ratio_in_words(a, b, "fewer", "more")))
    lines = [plan.summary(), ""] + align_rows(rows)
    if result["macs"]["uncounted"]:
        lines.append(
            "MACs not counted (no rule in model_cost): "
            + ", ".join(result["macs"]["uncounted"])
        )
    check = result["verify"]
    lines.append(
        f"verify: max abs difference {check['max_abs_difference']:.3g} "
        "between the smaller model and the original with the removed "
        f"channels zeroed ({check['inputs']} random inputs, seed "
        f"{check['seed']})"
    )
    if folding is not None:
        lines += ["", folding.summary()]
    return "\n".join(lines)
