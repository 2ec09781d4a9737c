"""The criteria registry: how important each weight (or channel) is.

A criterion turns what it needs into scores, larger = more important; a
pattern (`core.patterns`) turns scores and a target into masks, and a
schedule says when. Gradual pruning (`prune_low_magnitude` +
`UpdatePruningStep`, `update_masks`), one-shot pruning (`prune_now`),
structured planning (`plan_pruning`) and the command line all take their
criteria, by name, from this one registry.

What a criterion needs is declared, so that every driver can check before
any work that it can provide it:

- `WEIGHTS`: the weights alone (magnitude, random);
- `GRADIENTS`: gradients of a loss on data (`prune_now(..., data=,
  loss=)`, `UpdatePruningStep(data=, loss=)`);
- `ACTIVATIONS`: statistics of the layers' inputs on calibration data
  (`prune_now(..., calibration_data=x)`; `criteria.calibrate`);
- `TRAINING_STATE`: state accumulated during training.

A new criterion is one class (or function) and a registration:

```python
@keras_prune.criteria.register("abs_times_noise")
class AbsTimesNoise(keras_prune.criteria.Criterion):
    def score(self, layer, variable, weights, context):
        return np.abs(weights) * context.rng(variable.path).random(weights.shape)
```

after which `criterion="abs_times_noise"` works in `prune_low_magnitude`,
`prune_now` and `keras-prune prune --criterion abs_times_noise
--plugin my_criteria.py`.
"""

import numpy as np
from keras import ops

from keras_prune.criteria.data import mean_gradients

WEIGHTS = "weights"
GRADIENTS = "gradients"
ACTIVATIONS = "activations"
TRAINING_STATE = "training_state"
NEEDS = (WEIGHTS, GRADIENTS, ACTIVATIONS, TRAINING_STATE)

# What a criterion scores: every weight of a prunable variable, or every
# channel of a structured channel group.
WEIGHT = "weight"
CHANNEL = "channel"
GRANULARITIES = (WEIGHT, CHANNEL)

# (granularity, name) -> criterion: a weight and a channel criterion may
# share a name ("random", "taylor").
_REGISTRY = {}


class Criterion:
    """Base class of pruning criteria.

    Subclasses set `needs` (one of `NEEDS`) and `granularity` (one of
    `GRANULARITIES`) and implement, for weight criteria, `score` (or
    `layer_scores` when the variables of a layer are scored together);
    channel criteria are described in `keras_prune.criteria.channel`.
    Register a subclass with `register(name)`; its registered name is its
    `name`. Settings are constructor arguments, returned by `get_config`.
    """

    name = None
    needs = WEIGHTS
    granularity = WEIGHT
    description = ""
    # A criterion whose scores are learned during training (movement,
    # supermask): the weights it prunes carry a trainable score tensor
    # (`core.scored.PruneWithScores`), which `score_initializer` starts.
    learned = False
    # A learned criterion whose masks are its scores above a threshold, not
    # the top-v the schedule asks for (soft movement).
    by_threshold = False

    def check_spec(self, spec):
        """Raises, when a layer is wrapped for pruning with this criterion,
        for settings (a `PruningSpec`) it cannot work with; none here."""

    def score_initializer(self, variable):
        """The initializer of a learned criterion's score tensor for
        `variable` (a Keras initializer or its name)."""
        raise NotImplementedError(
            f"{type(self).__name__} learns no scores (learned = False)."
        )

    def score(self, layer, variable, weights, context):
        """Scores of one prunable variable.

        Args:
            layer: the layer the variable is pruned in (the wrapped layer).
            variable: the `keras.Variable`.
            weights: its value, a NumPy array.
            context: a `ScoringContext` (data, gradients, step, seed).

        Returns:
            A non-negative NumPy array of the variable's shape; larger
            scores are kept first.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement score(layer, variable, "
            "weights, context)."
        )

    def layer_scores(self, layer, variables, context):
        """Scores of each of `variables` of `layer` (by default `score`
        of each, on a NumPy copy of its value)."""
        return [
            self.score(layer, v, context.value(v), context) for v in variables
        ]

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash((type(self), repr(sorted(self.get_config().items()))))

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({settings})"


class FunctionCriterion(Criterion):
    """A weight criterion from a function `fn(layer, variable, weights) ->
    scores` (negative scores are made absolute)."""

    def __init__(self, fn, name=None):
        self.fn = fn
        self.name = name

    def score(self, layer, variable, weights, context):
        scores = np.asarray(self.fn(layer, variable, weights))
        return np.abs(scores) if np.any(scores < 0) else scores

    def get_config(self):
        return {"name": self.name}

    def __eq__(self, other):
        return isinstance(other, FunctionCriterion) and other.fn is self.fn

    def __hash__(self):
        return hash(self.fn)

    def __repr__(self):
        return f"FunctionCriterion({self.name or self.fn!r})"


def register(name, *, replace=False):
    """Registers a `Criterion` subclass or a scoring function under `name`.

    Use as a decorator. A function `fn(layer, variable, weights) -> scores`
    becomes a weight criterion needing only the weights.

    Args:
        name: the name the criterion is chosen by (`criterion="name"`,
            `--criterion name`).
        replace: allow replacing another criterion registered under the
            name (the same class or function defined again, e.g. by running
            its module twice, replaces it anyway).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"A criterion name must be an identifier (letters, digits, _), "
            f"got {name!r}."
        )

    def decorator(obj):
        key = (_granularity(obj), name)
        if key in _REGISTRY and not replace and not _same_definition(
            _REGISTRY[key], obj
        ):
            raise ValueError(
                f"A criterion named {name!r} is registered already "
                f"({_REGISTRY[key]!r}); choose another name or pass "
                "replace=True."
            )
        if isinstance(obj, type) and issubclass(obj, Criterion):
            if obj.needs not in NEEDS:
                raise ValueError(
                    f"{obj.__name__}.needs must be one of {list(NEEDS)}, got "
                    f"{obj.needs!r}."
                )
            if obj.granularity not in GRANULARITIES:
                raise ValueError(
                    f"{obj.__name__}.granularity must be one of "
                    f"{list(GRANULARITIES)}, got {obj.granularity!r}."
                )
            obj.name = name
        elif not callable(obj):
            raise ValueError(
                "register() decorates a Criterion subclass or a function "
                f"fn(layer, variable, weights) -> scores, got {obj!r}."
            )
        _REGISTRY[key] = obj
        return obj

    return decorator


def _same_definition(old, new):
    """Whether `new` is `old` defined again (a module or plugin file run a
    second time): then it replaces it, as schedules do."""
    return old is new or (
        getattr(old, "__module__", None) == getattr(new, "__module__", 0)
        and getattr(old, "__qualname__", None)
        == getattr(new, "__qualname__", 0)
    )


def available(granularity=WEIGHT):
    """The registered criterion names of a granularity, sorted."""
    return sorted(name for g, name in _REGISTRY if g == granularity)


def _granularity(obj):
    return obj.granularity if isinstance(obj, type) else WEIGHT


def get(identifier, granularity=WEIGHT):
    """The `Criterion` for a name, a config dict, a function or an instance.

    Args:
        identifier: a registered name (`"magnitude"`), a dict
            `{"name": ..., "config": {...}}` (what `serialize` writes), a
            `Criterion`, or a function `fn(layer, variable, weights) ->
            scores`.
        granularity: what the caller scores (`WEIGHT` or `CHANNEL`).

    Raises:
        ValueError: naming the registered choices, for an unknown name or
            a criterion of another granularity.
    """
    if isinstance(identifier, Criterion):
        criterion = identifier
    elif callable(identifier) and not isinstance(identifier, type):
        criterion = FunctionCriterion(identifier)
    else:
        criterion = _from_registry(identifier, granularity)
    if criterion.granularity != granularity:
        raise ValueError(
            f"criterion {criterion.name!r} scores {criterion.granularity}s, "
            f"and this needs a criterion that scores {granularity}s: one of "
            f"{available(granularity)}."
        )
    return criterion


def _from_registry(identifier, granularity):
    name, config = identifier, {}
    if isinstance(identifier, dict):
        name, config = identifier.get("name"), identifier.get("config") or {}
    obj = _REGISTRY.get((granularity, name)) if isinstance(name, str) else None
    if obj is None and isinstance(name, str) and any(
            n == name for _, n in _REGISTRY):
        raise ValueError(
            f"criterion {name!r} does not score {granularity}s; this needs "
            f"one of {available(granularity)}."
        )
    if obj is None:
        raise ValueError(
            f"criterion must be one of {available(granularity)} (or a "
            "Criterion, or a function fn(layer, variable, weights) -> "
            f"scores), got {identifier!r}. Register new criteria with "
            "keras_prune.criteria.register(name)."
        )
    if isinstance(obj, type):
        return obj.from_config(config)
    return FunctionCriterion(obj, name)


def serialize(criterion):
    """What a saved model stores: the name and settings of a registered
    criterion (an unregistered one cannot be reloaded: ValueError)."""
    key = (criterion.granularity, criterion.name)
    if criterion.name is None or _REGISTRY.get(key) is None:
        raise ValueError(
            f"{criterion!r} is not registered, so a model pruned with it "
            "cannot be saved and reloaded. Register it with "
            "@keras_prune.criteria.register(name)."
        )
    config = criterion.get_config()
    if isinstance(criterion, FunctionCriterion):
        config = {}
    return {"name": criterion.name, "config": config}


class ScoringContext:
    """What a criterion may use besides the weights.

    Created by the driver (`prune_now`, `UpdatePruningStep`,
    `update_masks`) for one mask update.

    Attributes:
        model: the pruned model (None when scoring layers alone).
        step: the training step of the update (0 for one-shot pruning).
        seed: the seed of random criteria.
        data, loss, batch_size: for criteria that need gradients.
        calibration: the `CalibrationStatistics` of criteria that need
            activations (None otherwise).
        cache: a dict where a criterion keeps what it computes once per
            update for all variables together.
    """

    def __init__(self, model=None, step=0, seed=0, data=None, loss=None,
                 batch_size=32, training_state=None, calibration=None):
        self.model = model
        self.calibration = calibration
        self.step = int(step)
        self.seed = int(seed)
        self.data = data
        self.loss = loss
        self.batch_size = batch_size
        self._gradients = None
        # What a criterion computes once for all variables (GraSP's Hg).
        self.cache = {}
        # id(prunable variable) -> its learned score variable.
        self.training_state = dict(training_state or {})

    def add_training_state(self, state):
        """Adds `{id(prunable variable): score variable}` entries (those
        already there stay)."""
        for key, value in state.items():
            self.training_state.setdefault(key, value)

    def state(self, variable):
        """The learned scores of `variable` as a NumPy array (criteria
        that need `TRAINING_STATE`)."""
        found = self.training_state.get(id(variable))
        if found is None:
            raise ValueError(
                f"{variable.path!r} has no learned scores: a criterion that "
                "learns its scores prunes layers wrapped by "
                "prune_low_magnitude(model, ..., criterion=NAME), trained "
                "with fit (or update_masks in a custom loop)."
            )
        return ops.convert_to_numpy(found)

    def input_statistics(self, variable):
        """The `InputStatistics` of the layer `variable` is the kernel of
        (criteria that need `ACTIVATIONS`)."""
        if self.calibration is None or variable.path not in self.calibration:
            raise ValueError(
                f"{variable.path!r} has no calibration statistics: a criterion "
                "that needs activations prunes Dense and EinsumDense kernels "
                "with prune_now(model, sparsity, criterion=NAME, "
                "calibration_data=x)."
            )
        return self.calibration[variable.path]

    def value(self, variable):
        """The variable's value as a NumPy array."""
        return ops.convert_to_numpy(variable)

    def rng(self, *key):
        """A NumPy generator seeded by the seed and `key` (strings and
        integers): the same numbers for the same key at every update."""
        parts = [self.seed]
        for part in key:
            if isinstance(part, str):
                parts.extend(part.encode())
            else:
                parts.append(int(part))
        return np.random.default_rng(parts)

    def gradient(self, variable):
        """The mean gradient of the loss over `data` for `variable` (a
        trainable variable of `model`), computed once per context."""
        if self._gradients is None:
            self._gradients = mean_gradients(
                self.model, self.data, self.loss, self.batch_size
            )
        return self._gradients[id(variable)]
