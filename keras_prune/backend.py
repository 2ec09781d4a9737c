"""The only module that branches on `keras.backend.backend()`."""

import keras


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
