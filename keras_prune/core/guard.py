"""Refuse to train a pruned model without a mask driver, before any work.

A wrapper whose schedule moves masks needs a driver at training time
(`UpdatePruningStep` in `fit`, `update_masks` in a custom loop): without
one, training would run and never prune. The wrapper's forward pass raises
when it is called for training untracked, but that happens inside the first
train step, and Keras's JAX trainer has by then detached the model's
variables (they are lost when the step raises). So `fit` is checked first.

Nothing happens at import: `install()` is called by the wrapper's
constructor, so the check exists only in processes that create pruned
layers, and it only acts on models that contain one: `fit` of any other
model goes straight to Keras's.
"""

import functools
import inspect

import keras

from keras_prune.core.walk import walk

MISSING_CALLBACK = (
    "Training a pruned model needs the keras_prune.UpdatePruningStep "
    "callback: model.fit(..., callbacks=[keras_prune.UpdatePruningStep()]). "
    "In a custom training loop, call keras_prune.update_masks(model, step) "
    "before each step instead."
)

# A callback class with this attribute set to True drives the masks.
DRIVER_ATTRIBUTE = "drives_pruning_masks"


def needs_driver(model):
    """Whether `model` holds a wrapper whose masks move during training
    (asked by attribute: this module sits below the wrapper)."""
    return any(
        getattr(layer, "needs_mask_driver", False)
        for layer, _ in walk(model, include_self=False)
    )


def _guard(fit):
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        arguments = signature.bind(self, *args, **kwargs).arguments
        callbacks = arguments.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        driven = any(
            getattr(c, DRIVER_ATTRIBUTE, False) for c in callbacks or ()
        )
        if not driven and needs_driver(self):
            raise ValueError(MISSING_CALLBACK)
        if driven and not self.built and isinstance(self, keras.Sequential):
            _build_from(self, arguments.get("x"))
        return fit(self, *args, **kwargs)

    guarded.keras_prune_guard = True
    return guarded


def _build_from(model, x):
    """Builds a Sequential without an Input (tfmot's usual model) from the
    shape of the data `fit` got, so that the masks exist before the first
    step's update (Keras's TensorFlow trainer builds inside that step)."""
    spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
    if spec is not None:
        spec = spec[0] if isinstance(spec, tuple) else spec
        shape = getattr(spec, "shape", None)
    else:
        shape = getattr(x, "shape", None)
    if shape is not None and len(shape) >= 1:
        model.build((None,) + tuple(shape[1:]))


def install():
    """Checks every later `fit` of a pruned model (once per process)."""
    if not getattr(keras.Model.fit, "keras_prune_guard", False):
        keras.Model.fit = _guard(keras.Model.fit)
