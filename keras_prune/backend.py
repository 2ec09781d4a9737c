"""The only module that branches on `keras.backend.backend()`."""

import keras
from keras import ops


def name():
    return keras.backend.backend()


def public_attributes(layer):
    """`(name, value)` of a layer's public attributes.

    On the torch backend, Keras layers are `torch.nn.Module`s, which keep
    sub-layer attributes in `_modules` rather than in the instance dict.
    """
    found = {k: v for k, v in vars(layer).items() if not k.startswith("_")}
    if name() == "torch":
        found.update(
            (k, v) for k, v in layer._modules.items() if not k.startswith("_")
        )
    return list(found.items())


def use_one_thread_for_small_models():
    """torch: one intra-op thread. The demo's ops are too small to gain from
    two threads, and on a 2-core machine torch's second thread made each step
    of the demo CNN up to 10x slower whenever another process ran."""
    if name() == "torch":
        import torch

        torch.set_num_threads(1)


def mask_as(mask, dtype):
    """A bool mask as 0/1 values of `dtype`.

    torch: through the mask's uint8 view; torch's bool-to-float cast is a
    slow path on CPU (99 vs 20 us for 235 K values).
    """
    if name() == "torch":
        mask = mask.view(__import__("torch").uint8)
    return ops.cast(mask, dtype)
