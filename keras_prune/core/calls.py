"""How a wrapper passes a call on: what the wrapped layer's `call` takes.

The wrapper's own `call(inputs, *args, training=None, mask=None, **kwargs)`
forwards everything; these read the wrapped layer's signature so that it
gets only what it accepts (Embedding rejects `training`, Dense `mask`), its
first input also by keyword (`query=` of MultiHeadAttention), and Keras
checks the call's arguments one by one, as it would for the layer itself.
"""

import inspect


def accepts(fn, name):
    """Whether `fn` takes a parameter `name` (or any keyword)."""
    params = inspect.signature(fn).parameters
    return name in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def signature_with_context(fn):
    """`fn`'s signature with `training` and `mask` keyword parameters."""
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    names = {p.name for p in parameters}
    variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    plain = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in ("training", "mask") if name not in names
    ]
    return signature.replace(parameters=plain + extra + variadic)


def first_parameter(fn):
    """The name of the first parameter of a (bound) `call`, or None."""
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            return parameter.name
        return None
    return None
