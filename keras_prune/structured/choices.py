"""The named choices of structured pruning, in one place (the command line
offers these, never its own copies)."""

# How a group's member score vectors are combined.
REDUCTIONS = ("mean", "sum", "max")
# How a score vector is scaled to compare groups: by its largest score, by
# its L2 norm times its length (TAO's), or not at all.
NORMALIZERS = ("max", "l2", "off")
# TAO's equalization_criterion: how the normalized scores of the layers of
# one group are merged (max, min, mean, geometric mean).
EQUALIZATIONS = ("union", "intersection", "arithmetic_mean", "geometric_mean")
# Where channels are ranked: within each group, or over all groups.
SCOPES = ("layer", "global")
# How `round_to` rounds a group's kept count: up (never more removed than
# asked), or to the nearest multiple (ties up: a runtime's channel block
# without moving the MAC total far from the target).
ROUNDINGS = ("up", "nearest")


def check_choice(name, value, choices):
    """ValueError naming `name`, its `choices` and `value` if not one of them.

    Args:
        name: the argument's name, for the message.
        value: what was given.
        choices: the allowed values (a tuple).
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
