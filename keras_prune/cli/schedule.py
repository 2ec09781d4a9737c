"""`keras-prune schedule`: what a pruning schedule does, step by step."""

import importlib.util

from keras_prune.analysis.plots import image_format
from keras_prune.analysis.preview import preview
from keras_prune.cli import common
from keras_prune.cli.choices import default_of
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import PolynomialDecay

NAME = "schedule"
SCHEDULES = {"polynomial": PolynomialDecay, "constant": ConstantSparsity}

# The schedule previewed when options are left out. The schedule classes
# take these without defaults (a schedule is the user's choice), so they
# are the command's own example: a cubic ramp to 80 % over 1000 steps.
EXAMPLE_INITIAL = 0.0
EXAMPLE_FINAL = 0.8
EXAMPLE_BEGIN = 0
EXAMPLE_RAMP_STEPS = 1000
# Without an end step, this many update intervals are previewed.
OPEN_END_UPDATES = 10

_RAMP = (
    f"{EXAMPLE_INITIAL:.0%} -> {EXAMPLE_FINAL:.0%} over steps {EXAMPLE_BEGIN}.."
    f"{EXAMPLE_BEGIN + EXAMPLE_RAMP_STEPS}, masks"
)
_EVERY = f"updated every {default_of(PolynomialDecay, 'frequency')} steps"
EXAMPLES = f"""\
examples:
  keras-prune schedule polynomial       {_RAMP}
                                        {_EVERY}
  keras-prune schedule polynomial --initial 0.5 --final 0.9 \\
      --begin 2000 --end 4000 --steps 5000
                                        half of the weights go at once, at 2000
  keras-prune schedule constant --target 0.5 --begin 1000 --frequency 200
  keras-prune schedule polynomial --power 1 --plot schedule.png
                                        a linear ramp, also drawn to schedule.png
  keras-prune schedule polynomial --json
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Previews a pruning schedule (keras_prune.preview): the "
        "steps at which the masks are updated and the sparsity each update "
        "applies; between updates the masks hold. Values are checked as "
        "PolynomialDecay / ConstantSparsity check them.",
    )
    parser.add_argument(
        "kind",
        choices=tuple(SCHEDULES),
        help="polynomial: PolynomialDecay, sparsity rises from --initial to "
        "--final between --begin and --end; constant: ConstantSparsity, "
        "every update prunes to --final",
    )
    parser.add_argument(
        "--initial",
        type=float,
        help="polynomial only: the sparsity applied at --begin, at once "
        f"(default: {EXAMPLE_INITIAL})",
    )
    parser.add_argument(
        "--final",
        "--target",
        dest="final",
        type=float,
        default=EXAMPLE_FINAL,
        help="polynomial: the sparsity reached at --end; constant: the "
        "sparsity of every update (default: %(default)s)",
    )
    parser.add_argument(
        "--begin",
        type=int,
        default=EXAMPLE_BEGIN,
        help="training step of the first mask update (default: %(default)s)",
    )
    parser.add_argument(
        "--end",
        type=int,
        help="polynomial: the step at which --final is reached (default: "
        f"--begin + {EXAMPLE_RAMP_STEPS}); constant: the last step at which "
        "masks may be updated, -1 for no end (default: "
        f"{default_of(ConstantSparsity, 'end_step')})",
    )
    parser.add_argument(
        "--frequency",
        type=int,
        help="training steps between mask updates (default: "
        f"{_per_kind('frequency')})",
    )
    parser.add_argument(
        "--power",
        type=float,
        help="polynomial only: the exponent of the ramp; 1 is linear, 3 "
        "prunes fast at first and slowly near --end (default: "
        f"{default_of(PolynomialDecay, 'power')})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="training steps to preview (default: --end + --frequency; "
        f"without an end, --begin + {OPEN_END_UPDATES} x --frequency)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw target and actual sparsity per step to this file "
        "(needs matplotlib)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the --plot file"
    )
    common.add_json(parser, "the preview (SchedulePreview.to_dict())")


def _per_kind(name):
    """A default of both schedule classes, in words."""
    values = {kind: default_of(cls, name) for kind, cls in SCHEDULES.items()}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{value} for {kind}" for kind, value in values.items())


def run(args):
    try:
        schedule = _schedule(args)
        steps = args.steps
        if steps is None:
            if schedule.end_step == -1:
                steps = schedule.begin_step + OPEN_END_UPDATES * schedule.frequency
            else:
                steps = schedule.end_step + schedule.frequency
        shown = preview(schedule, steps)
    except ValueError as err:
        args.parser.error(str(err))
    if args.plot:
        common.check_writable(args, args.plot)
        if importlib.util.find_spec("matplotlib") is None:
            raise common.CommandError(
                "--plot needs matplotlib: pip install keras-prune[plots] (or "
                "pip install matplotlib)."
            )
        try:
            image_format(args.plot)
        except ValueError as err:
            args.parser.error(str(err))
    if args.json:
        common.print_json(shown.to_dict())
    else:
        print(shown.to_text())
    if args.plot:
        common.write_atomically(args.plot, shown.plot)
        common.log(f"wrote {args.plot}")
    return 0


def _schedule(args):
    cls = SCHEDULES[args.kind]
    frequency = args.frequency
    if frequency is None:
        frequency = default_of(cls, "frequency")
    if cls is ConstantSparsity:
        for flag, value in (("--initial", args.initial), ("--power", args.power)):
            if value is not None:
                raise ValueError(
                    f"{flag} applies to polynomial only; constant prunes to "
                    "--final (or --target) at every update."
                )
        end = default_of(cls, "end_step") if args.end is None else args.end
        return ConstantSparsity(args.final, args.begin, end, frequency)
    return PolynomialDecay(
        initial_sparsity=EXAMPLE_INITIAL if args.initial is None else args.initial,
        final_sparsity=args.final,
        begin_step=args.begin,
        end_step=args.begin + EXAMPLE_RAMP_STEPS if args.end is None else args.end,
        power=default_of(cls, "power") if args.power is None else args.power,
        frequency=frequency,
    )
