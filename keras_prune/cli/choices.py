"""The library's choices and defaults, as the commands offer them.

The command line restates none of them: the options' `choices=` are the
library's tuples and registries, and a default the help prints or a
command uses is read from the signature of the function that applies it
(`default_of`), so that the command and the Python API cannot drift apart.
"""

import inspect

from keras_prune import criteria
from keras_prune import datasets

from keras_prune.structured import EQUALIZATIONS
from keras_prune.structured import NORMALIZERS
from keras_prune.structured import REDUCTIONS
from keras_prune.structured import ROUNDINGS
from keras_prune.structured import SCOPES as CHANNEL_SCOPES

__all__ = [
    "CHANNEL_SCOPES",
    "DATA_SETS",
    "EQUALIZATIONS",
    "NORMALIZERS",
    "REDUCTIONS",
    "ROUNDINGS",
    "channel_criteria",
    "default_of",
    "describe_criteria",
    "escape",
    "listed",
    "weight_criteria",
]

DATA_SETS = datasets.NAMES


def default_of(function, name):
    """The default value of parameter `name` of `function` (or of a class's
    constructor).

    Example:

    ```python
    default_of(keras_prune.PolynomialDecay, "power")  # 3
    ```
    """
    parameter = inspect.signature(function).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(
            f"{getattr(function, '__name__', function)}'s parameter {name!r} "
            "has no default to offer."
        )
    return parameter.default


def weight_criteria(needs=None):
    """Registered weight criteria (sorted), those that need `needs` only
    when given (`criteria.WEIGHTS`, `criteria.GRADIENTS`, ...)."""
    names = criteria.available(criteria.WEIGHT)
    if needs is None:
        return names
    return [n for n in names if criteria.get(n, criteria.WEIGHT).needs == needs]


def channel_criteria(needs=None):
    """Registered channel criteria, those that need `needs` only when given."""
    names = criteria.available(criteria.CHANNEL)
    if needs is None:
        return names
    return [n for n in names if criteria.get(n, criteria.CHANNEL).needs == needs]


def describe_criteria(names, granularity=criteria.WEIGHT):
    """`name: description; ...` for a help text (argparse-safe)."""
    parts = []
    for name in names:
        description = criteria.get(name, granularity).description
        parts.append(f"{name}: {description}" if description else name)
    return escape("; ".join(parts))


def listed(values):
    """`a, b or c` (argparse-safe)."""
    words = [str(v) for v in values]
    if len(words) < 2:
        return escape("".join(words))
    return escape(", ".join(words[:-1]) + " or " + words[-1])


def escape(text):
    """Text for an argparse help string, which is %-formatted."""
    return text.replace("%", "%%")
