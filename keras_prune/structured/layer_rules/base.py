"""`LayerRule`: everything structured pruning knows about one layer class.

A rule says, for the classes it is registered for:

- `role`: how channels flow through the layer in the channel graph
  (`graph.py`): a `PRODUCER` makes new channels from the ones it reads, a
  layer `THROUGH` which channels pass keeps per-channel weights,
  `ELEMENTWISE` layers pass channels on untouched, and so on (see `ROLES`);
  None: the walker does not follow the layer and leaves the channels that
  reach it whole;
- `axes`: where a member's channels index each of the layer's weights
  (slicing in `surgery.py`, Taylor scores, zeroing in `verify`);
- `channel_kernel` / `scale`: the weights the l1/l2, TAO and bn criteria read;
- `new_config`: the config of the layer with fewer channels;
- `macs` / `params`: its cost (`cost.py`, `plan_for_budget`);
- `fold_axis`: how a BatchNormalization after it folds into it (`fold.py`).

Rules are found by the layer's class (its most derived registered base
class, so a subclass of Dense is pruned as a Dense). A new layer class is a
rule class and one `register(...)` line.
"""

import dataclasses
import math

import keras
import numpy as np

# Roles of a layer in the channel graph.
PRODUCER = "producer"          # reads channels, makes a new group (Conv, Dense)
THROUGH = "through"            # per-channel weights, channels pass on (BN)
ELEMENTWISE = "elementwise"    # channels pass on untouched (ReLU, pooling)
GLOBAL_POOLING = "global_pooling"  # the channels pass, space is reduced
MERGE = "merge"                # adds or multiplies tensors: groups merge
CONCATENATE = "concatenate"    # stacks tensors' channels side by side
FLATTEN = "flatten"            # channel c becomes H*W features
RESHAPE = "reshape"            # a Flatten, or a no-op on the channel axis
ATTENTION = "attention"        # MultiHeadAttention: heads and projections
BLOCK = "block"                # a transformer block: its MLP channels
ROLES = (PRODUCER, THROUGH, ELEMENTWISE, GLOBAL_POOLING, MERGE, CONCATENATE,
         FLATTEN, RESHAPE, ATTENTION, BLOCK)

# The inputs of a MultiHeadAttention, each read by its own projection kernel;
# they are also the roles of the members that feed them.
ATTENTION_INPUTS = ("query", "key", "value")

_REGISTRY = {}
# Rules of classes named by (module prefix, class name): a library we do
# not import (keras-hub) is matched by name.
_BY_NAME = {}


class NotCounted(Exception):
    """A layer's MACs cannot be counted; the message says why."""


@dataclasses.dataclass
class Cut:
    """What surgery keeps of one layer.

    Attributes:
        inputs: kept input features (indices into the layer's input axis).
        outputs: kept output channels.
        reads: for a MultiHeadAttention: dict query/key/value -> kept
            features of that input.
        heads: for a MultiHeadAttention: kept heads.
    """

    inputs: list
    outputs: list
    reads: dict = None
    heads: list = None


def numpy(variable, dtype=None):
    """A variable's value as a NumPy array (of `dtype` if given)."""
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=dtype)


def expand(channels, repeat):
    """Channel indices -> entries of an axis where each channel owns
    `repeat` consecutive entries (c * repeat + j)."""
    if repeat == 1:
        return list(channels)
    return [c * repeat + j for c in channels for j in range(repeat)]


def product(dims, what):
    """The product of `dims`, or NotCounted when one of them is unknown."""
    if any(d is None for d in dims):
        raise NotCounted(
            f"not counted: the {what} has an unknown size {tuple(dims)}; "
            "give the model a fully known input shape (batch aside)"
        )
    return math.prod(int(d) for d in dims)


class LayerRule:
    """How structured pruning treats a layer class (see the module doc).

    Subclasses override what differs; the defaults describe a layer the
    walker does not follow, without weights to slice and without a MAC
    formula.

    Attributes:
        role: one of `ROLES`, or None.
        exact: the graph follows only the registered classes themselves;
            a subclass is left whole (its call may compute something else).
        reads_flattened: a producer that may read a flattened tensor.
        kernels: dict member role -> name of the layer attribute holding
            the kernel whose slices make the member's channels (what the
            l1/l2 and TAO criteria measure).
        fold_axis: `(weight name, axis)` of the output channels a following
            BatchNormalization folds into (a tuple of two axes when channel
            c is entries c * m .. c * m + m - 1 of the last two), or None.
        classes: the classes the rule is registered for (set by
            `register`).
    """

    role = None
    exact = False
    reads_flattened = False
    kernels = {}
    fold_axis = None
    classes = ()

    # --- the channel graph ---------------------------------------------

    def role_for(self, layer):
        """The role of this instance (the class's `role` unless an instance
        acts as another: a Conv2D with `groups` = its channels is a
        depthwise convolution)."""
        return self.role

    def unsupported(self, layer, input_shape):
        """Why the graph cannot follow this instance (a text), or None."""
        return None

    def channels(self, layer):
        """A producer's number of output channels."""
        raise NotImplementedError(
            f"{type(self).__name__} is a {self.role}, not a producer.")

    # --- weights -------------------------------------------------------

    def axes(self, layer, role):
        """Where a member's channels index the layer's weights.

        Args:
            layer: the layer.
            role: the member's role (`"out"`, `"in"`, `"through"`, ...).

        Returns:
            dict `weight_key` -> `(axis, repeat)`; `repeat` > 1 when each
            channel owns that many consecutive entries of the axis.
        """
        return {}

    def weight_key(self, layer, variable):
        """How `axes` names a variable: `(None, name)` (a sublayer's name
        first for layers made of sublayers)."""
        return None, variable.name

    def channel_kernel(self, layer, role):
        """The kernel that makes a member's channels, as a float64 matrix
        (rows, channels on the layer's axis), or None."""
        name = self.kernels.get(role)
        if name is None:
            return None
        axis, _ = self.axes(layer, role)[(None, name)]
        kernel = np.moveaxis(numpy(getattr(layer, name), np.float64), axis,
                             -1)
        return kernel.reshape(-1, kernel.shape[-1])

    def scale(self, layer, role):
        """The per-channel scale network slimming ranks by (a
        BatchNormalization's gamma), or None."""
        return None

    def slice_weights(self, layer, cut):
        """The layer's weights (in `layer.weights` order) cut to `cut`.

        Args:
            layer: the layer.
            cut: a `Cut`; a `"through"` layer's channels are its inputs.

        Returns:
            list of NumPy arrays.
        """
        by_role = ((self.axes(layer, "in"), cut.inputs),
                   (self.axes(layer, "out"), cut.outputs),
                   (self.axes(layer, "through"), cut.inputs))
        values = []
        for w in layer.weights:
            key, value = self.weight_key(layer, w), numpy(w)
            for axes, keep in by_role:
                if key in axes:
                    axis, repeat = axes[key]
                    value = value.take(expand(keep, repeat), axis=axis)
            values.append(value)
        return values

    def zeroed_weights(self, layer, role, rows):
        """The layer's weights with nothing read from the input features
        `rows` of a member of `role` (`"in"`, or an attention input): zeros
        at those entries of every weight of `axes(layer, role)`."""
        return zero_entries(self, layer, self.axes(layer, role), rows)

    def new_config(self, layer, cut):
        """The layer's config for the channels of `cut`."""
        return layer.get_config()

    # --- cost ----------------------------------------------------------

    def macs(self, layer, input_shapes, output_shapes, arguments):
        """`(MACs of one call for one sample, how they were counted)`.

        Args:
            layer: the layer.
            input_shapes / output_shapes: lists of the call's tensor shapes
                (batch axis first; its size is ignored).
            arguments: dict: for a MultiHeadAttention the `query`, `value`
                (and `key`) shapes and optionally `heads`.

        Raises:
            NotCounted: no rule, or a size is unknown.
        """
        raise NotCounted(f"not counted: no MAC rule for {type(layer).__name__}")

    def params(self, layer, input_shape, output_shape, arguments):
        """Parameters of the layer rebuilt for these channel counts (the
        last axis of one call's shapes), or None without a formula."""
        return None


def zero_entries(rule, layer, axes, rows):
    """`layer`'s weights with zeros at the entries `rows` of the weights of
    `axes` (as `LayerRule.axes` returns them)."""
    values = []
    for w in layer.weights:
        key, value = rule.weight_key(layer, w), numpy(w).copy()
        if key in axes:
            axis, repeat = axes[key]
            index = [slice(None)] * value.ndim
            index[axis] = expand(rows, repeat)
            value[tuple(index)] = 0
        values.append(value)
    return values


class ProducerRule(LayerRule):
    """A layer that reads channels and makes `filters` new ones (a
    convolution); its kernel's last axis holds the output channels."""

    role = PRODUCER
    kernels = {"out": "kernel"}
    fold_axis = ("kernel", -1)

    def unsupported(self, layer, input_shape):
        groups = getattr(layer, "groups", 1)
        if groups != 1:
            return f"is a grouped convolution (groups={groups})"
        return None

    def channels(self, layer):
        return layer.filters

    def new_config(self, layer, cut):
        return dict(layer.get_config(), filters=len(cut.outputs))


def register(*classes):
    """Class decorator: one instance of the `LayerRule` subclass becomes
    the rule of each of `classes` (replacing an earlier rule)."""

    def decorator(rule_class):
        if rule_class.role not in ROLES + (None,):
            raise ValueError(
                f"{rule_class.__name__}.role must be one of {list(ROLES)} "
                f"or None, got {rule_class.role!r}."
            )
        rule = rule_class()
        rule.classes = tuple(classes)
        for cls in classes:
            _REGISTRY[cls] = rule
        return rule_class

    return decorator


def register_by_name(module, *names):
    """Class decorator: like `register`, for the classes called `names`
    in a module under `module` (matched without importing it)."""

    def decorator(rule_class):
        rule = rule_class()
        rule.classes = ()
        for name in names:
            _BY_NAME[(module, name)] = rule
        return rule_class

    return decorator


def rule_for(layer):
    """The `LayerRule` of `layer`'s class or of its nearest registered base
    class; without one, the default `LayerRule` (not followed, weights
    kept as they are, MACs not counted)."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    cls = type(layer)
    for (module, name), rule in _BY_NAME.items():
        if cls.__name__ == name and cls.__module__.startswith(module):
            return rule
    return _UNKNOWN


_UNKNOWN = LayerRule()


def exact_rule(layer):
    """The `LayerRule` registered for `layer`'s class itself, or None."""
    return _REGISTRY.get(type(layer))
