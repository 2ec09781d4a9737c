"""The options of `keras-prune shrink`: which apply to which way of
planning, their checks, and what reaches the planners.

Only the options given reach `plan_pruning` / `plan_by_threshold`: every
other setting is the planner's own default, which the help reads from its
signature.
"""

import math
import re

import keras_prune_cli

from keras_prune import criteria
from keras_prune import structured
from keras_prune.cli.choices import CHANNEL_SCOPES
from keras_prune.cli.choices import EQUALIZATIONS
from keras_prune.cli.choices import NORMALIZERS
from keras_prune.cli.choices import REDUCTIONS
from keras_prune.cli.choices import ROUNDINGS
from keras_prune.cli.choices import channel_criteria
from keras_prune.cli.choices import default_of
from keras_prune.cli.choices import describe_criteria
from keras_prune.cli.choices import listed

# plan_pruning's ratio without a target: applied in its body (its
# signature's default, None, means "a target or this"), so it cannot be
# read from the signature; the log and the help name it.
DEFAULT_RATIO = 0.5

_RATIO_OR_TARGET = "--ratio and --target-params/--target-macs"
_PLANNING = "planning (--ratio, --target-*, --threshold)"
# dest -> (flag, the modes it belongs to), to refuse it elsewhere.
_OPTIONS = {
    "criterion": ("--criterion", _RATIO_OR_TARGET),
    "round_to": ("--round-to", _RATIO_OR_TARGET),
    "rounding": ("--rounding", _RATIO_OR_TARGET),
    "scope": ("--scope", _RATIO_OR_TARGET),
    "reduction": ("--reduction", _RATIO_OR_TARGET),
    "seed": ("--seed", _RATIO_OR_TARGET),
    "granularity": ("--granularity", "--threshold (TAO mode)"),
    "min_num_filters": ("--min-num-filters", "--threshold (TAO mode)"),
    "equalization": ("--equalization", "--threshold (TAO mode)"),
    "normalizer": ("--normalizer", _PLANNING),
    "ignore": ("--ignore/--exclude", _PLANNING),
}
_MODE_OPTIONS = {
    "--ratio": {"criterion", "round_to", "rounding", "scope", "reduction",
                "seed", "normalizer", "ignore"},
    "--threshold": {"granularity", "min_num_filters", "equalization",
                    "normalizer", "ignore"},
    "--plan": set(),
}
_MODE_OPTIONS["--target-params/--target-macs"] = _MODE_OPTIONS["--ratio"]
# Each planning option's parameter in plan_pruning and plan_by_threshold.
_RANKED_PARAMETERS = {
    "criterion": "criterion", "round_to": "round_to",
    "rounding": "rounding", "scope": "scope",
    "reduction": "reduction", "seed": "seed", "normalizer": "normalizer",
    "ignore": "ignored_layers", "target_params": "target_params",
    "target_macs": "target_macs",
}
_THRESHOLD_PARAMETERS = {
    "granularity": "granularity", "min_num_filters": "min_num_filters",
    "equalization": "equalization_criterion", "normalizer": "normalizer",
    "ignore": "excluded_layers",
}


def in_cli_words(message):
    """A planner's error message with its argument names as this command's
    options ("target_params=0.5" -> "--target-params 0.5", "round_to" ->
    "--round-to"), so that the advice names what to type."""
    for table in (_RANKED_PARAMETERS, _THRESHOLD_PARAMETERS):
        for dest, parameter in table.items():
            flag = _OPTIONS.get(dest, ("--" + dest.replace("_", "-"),))[0]
            message = re.sub(rf"\b{parameter}=", flag + " ", message)
            if "_" in parameter:  # a bare name no prose word matches
                message = re.sub(rf"\b{parameter}\b", flag, message)
    return message


def ranked_default(name):
    """A default of `plan_pruning` (ratio and target modes)."""
    return default_of(structured.plan_pruning, name)


def _tao(name):
    return default_of(structured.plan_by_threshold, name)


def add_to(parser):
    """Adds the planning options, in their groups, to shrink's parser."""
    _add_how_much(parser)
    _add_planning(parser)


def _add_how_much(parser):
    how = parser.add_argument_group(
        f"how much to remove (one of these; default: --ratio {DEFAULT_RATIO})"
    )
    how.add_argument(
        "--ratio",
        type=float,
        metavar="R",
        help="fraction of the channels removed, in [0, 1): of every "
        "prunable group (--scope layer, the default here), or of all "
        "channels, lowest normalized scores first (--scope global)",
    )
    how.add_argument(
        "--target-params",
        type=keras_prune_cli.count_or_fraction,
        metavar="N|F",
        help="remove the least important channels until the parameters are "
        "at most N (an integer) or the fraction F (a decimal in (0, 1]) of "
        "the model's; may go with --target-macs",
    )
    how.add_argument(
        "--target-macs",
        type=keras_prune_cli.count_or_fraction,
        metavar="N|F",
        help="the same for the multiply-accumulates of one sample "
        "(keras_prune.model_cost), e.g. 0.5: at most half",
    )
    how.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="TAO mode (plan_by_threshold): keep the channels whose "
        "normalized L2 score is above T (not a fraction), at least "
        "--min-num-filters, a multiple of --granularity",
    )
    how.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="replay this plan (written by --save-plan, maybe edited) "
        "instead of planning; it must have been made for this model",
    )


def _add_planning(parser):
    ranked = parser.add_argument_group(
        "with --ratio or --target-params/--target-macs"
    )
    offered = channel_criteria(criteria.WEIGHTS)
    with_data = channel_criteria(criteria.GRADIENTS)
    later = ""
    if with_data:
        later = (
            f" Not {listed(with_data)}, which "
            f"{'needs' if len(with_data) == 1 else 'need'} training data: plan in "
            f"Python with plan_pruning(..., criterion={with_data[0]!r}, "
            "data=...), save the plan with to_json and replay it with --plan"
        )
    ranked.add_argument(
        "--criterion",
        choices=offered,
        help="channel importance: "
        f"{describe_criteria(offered, criteria.CHANNEL)} (default: "
        f"{ranked_default('criterion')}); criteria registered by a --plugin are "
        f"choices too.{later}",
    )
    ranked.add_argument(
        "--round-to",
        type=int,
        metavar="N",
        help="round every group's kept channels to a multiple of N (a "
        "runtime's channel block, e.g. 16 for ONNX Runtime on x86); "
        "up unless --rounding nearest",
    )
    ranked.add_argument(
        "--rounding",
        choices=ROUNDINGS,
        help="how --round-to rounds: up (never more removed than asked) or "
        "nearest (the MAC total stays near the target; default: "
        f"{ranked_default('rounding')})",
    )
    ranked.add_argument(
        "--scope",
        choices=CHANNEL_SCOPES,
        help="layer: the same fraction of every group; global: one ranking "
        "over all groups (default: layer with --ratio, global with targets)",
    )
    ranked.add_argument(
        "--reduction",
        choices=REDUCTIONS,
        help="how the scores of a group's layers combine (default: "
        f"{ranked_default('reduction')})",
    )
    ranked.add_argument(
        "--seed",
        type=int,
        help=f"seed of random criteria (default: {ranked_default('seed')})",
    )
    tao = parser.add_argument_group("with --threshold (TAO mode)")
    tao.add_argument(
        "--granularity",
        type=int,
        metavar="N",
        help="kept channels per group are a multiple of N, or the whole "
        f"group (default: {_tao('granularity')})",
    )
    tao.add_argument(
        "--min-num-filters",
        type=int,
        metavar="N",
        help="never keep fewer channels of a group, unless it is smaller "
        f"(default: {_tao('min_num_filters')})",
    )
    tao.add_argument(
        "--equalization",
        choices=EQUALIZATIONS,
        help="how the normalized scores of a group's layers merge: max, "
        "min, mean or geometric mean (default: "
        f"{_tao('equalization_criterion')})",
    )
    planning = parser.add_argument_group("when planning (not with --plan)")
    planning.add_argument(
        "--normalizer",
        choices=NORMALIZERS,
        help="how scores are normalized, per layer (default: "
        f"{_shared_default('normalizer')})",
    )
    planning.add_argument(
        "--ignore",
        "--exclude",
        dest="ignore",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="layers whose output channels are never removed (repeatable; "
        "--exclude is the same option, TAO's excluded_layers)",
    )


def _shared_default(name):
    """A default of both planners, in words."""
    ranked, tao = ranked_default(name), _tao(name)
    if ranked == tao:
        return str(ranked)
    return f"{ranked} with --ratio and targets, {tao} with --threshold"


def mode(args):
    """Checks the options, before any work; returns the mode in words."""
    targets = (args.target_params, args.target_macs)
    given = [
        flag
        for flag, chosen in (
            ("--ratio", args.ratio is not None),
            ("--target-params/--target-macs", targets != (None, None)),
            ("--threshold", args.threshold is not None),
            ("--plan", args.plan is not None),
        )
        if chosen
    ]
    if len(given) > 1:
        args.parser.error(
            "give one of --ratio, --target-params/--target-macs, "
            f"--threshold or --plan, not {' and '.join(given)}."
        )
    mode = given[0] if given else "--ratio"
    replayed = " (a saved plan is replayed as it is)" if mode == "--plan" else ""
    for dest, (flag, where) in _OPTIONS.items():
        if getattr(args, dest) is not None and dest not in _MODE_OPTIONS[mode]:
            args.parser.error(
                f"{flag} does not apply with {mode}{replayed}: it is an "
                f"option of {where}."
            )
    if mode == "--ratio":
        args.ratio = DEFAULT_RATIO if args.ratio is None else args.ratio
        if not 0 <= args.ratio < 1:
            args.parser.error(
                f"--ratio must be in [0, 1), got {args.ratio}: it is the "
                "fraction of channels removed, e.g. 0.5."
            )
    for flag, value in zip(("--target-params", "--target-macs"), targets):
        # An int is a count, a float a fraction (as plan_pruning takes them).
        if value is None or 0 < value <= (1 if isinstance(value, float) else math.inf):
            continue
        fix = "e.g. 0.5 for half the model's"
        if isinstance(value, float) and 1 < value < math.inf:
            fix = f"write a count as an integer: {flag} {int(value)}"
        args.parser.error(
            f"{flag} must be a positive integer (a count) or a fraction in "
            f"(0, 1] (of the model's), got {value}; {fix}."
        )
    for flag, value, low in (
        ("--round-to", args.round_to, 1),
        ("--granularity", args.granularity, 1),
        ("--min-num-filters", args.min_num_filters, 0),
    ):
        if value is not None and value < low:
            args.parser.error(f"{flag} must be at least {low}, got {value}.")
    if args.threshold is not None and not args.threshold >= 0:
        args.parser.error(
            f"--threshold must be 0 or more, got {args.threshold}: the "
            "channels whose normalized score is above it are kept."
        )
    if mode == "--ratio":
        return f"ratio {args.ratio}"
    if mode == "--threshold":
        return f"TAO mode, threshold {args.threshold}"
    if mode == "--plan":
        return f"replaying {args.plan}"
    return "budget: " + ", ".join(
        f"{what} <= {value:,}"
        if isinstance(value, int)
        else f"{what} <= {value} of the model's"
        for what, value in zip(("parameters", "MACs per sample"), targets)
        if value is not None
    )


def planner(args):
    """`(planner, its arguments)`: the options given, and for the rest the
    planner's own defaults."""
    if args.threshold is not None:
        return structured.plan_by_threshold, dict(
            threshold=args.threshold, **_given(args, _THRESHOLD_PARAMETERS)
        )
    return structured.plan_pruning, dict(
        ratio=args.ratio, **_given(args, _RANKED_PARAMETERS)
    )


def _given(args, parameters):
    return {
        parameter: getattr(args, dest)
        for dest, parameter in parameters.items()
        if getattr(args, dest) is not None
    }
