"""The only module that branches on `keras.backend.backend()`."""

import contextlib

import keras
import numpy as np
from keras import ops


def name():
    return keras.backend.backend()


def sub_modules(layer):
    """`{name: value}` of sub-layers held outside the instance dict.

    On the torch backend Keras layers are `torch.nn.Module`s, which keep
    sub-layer attributes in `_modules` rather than in `vars(layer)`.
    """
    if name() == "torch":
        return dict(layer._modules)
    return {}


def host_view(variable):
    """`variable`'s value as a read-only NumPy array, if possible a view.

    `np.asarray` of the gradient-stopped value shares the backend's CPU
    buffer on TensorFlow, JAX and torch, where `ops.convert_to_numpy` copies
    it (`np.array`; on TensorFlow twice): 3 copies of every weight per
    global update saved. On torch the array is the parameter's own memory,
    which `assign` overwrites in place: it is read-only here, and must be
    read before the variable is assigned. Where no view exists (a GPU
    tensor, torch's bfloat16), a copy.
    """
    value = ops.stop_gradient(variable.value)
    try:
        array = np.asarray(value)
    except (TypeError, RuntimeError, ValueError):
        return ops.convert_to_numpy(value)
    array = array.view()
    array.flags.writeable = False
    return array


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


def compiles_updates():
    """Whether `compiled_update` compiles (TensorFlow) or returns None."""
    return name() == "tensorflow"


def compiled_update(fn):
    """`fn` as one compiled call that may assign variables, or None.

    TensorFlow: `tf.function` (no autograph: `fn`'s Python loops are over
    layers, not tensors). One graph call replaces a dozen eager reads and
    assigns of 20-50 us each (docs/architecture.md, "Fast paths"). JAX
    cannot assign variables inside `jit`, and torch runs eagerly anyway:
    None there.
    """
    if not compiles_updates():
        return None
    import tensorflow as tf

    compiled = tf.function(fn, autograph=False, jit_compile=True)

    def call(*args):
        # Tensors, not NumPy scalars: those would retrace at every value.
        return compiled(*[tf.convert_to_tensor(a) for a in args])

    return call


def is_distributed(variable):
    """Whether `variable` is a per-device copy set (TF MirroredStrategy)."""
    if name() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(variable.value, tf.distribute.DistributedValues)


def lay_out_like(variable, reference):
    """Under a `keras.distribution` (JAX) gives `variable` (a mask) the
    layout of `reference` (its kernel), unless the distribution's layout
    map names `variable` itself; a mask then shards as its kernel does
    instead of being replicated on every device. Elsewhere: nothing."""
    distribution = keras.distribution.distribution()
    layout = getattr(reference, "_layout", None)
    if (name() != "jax" or distribution is None or layout is None
            or tuple(variable.shape) != tuple(reference.shape)):
        return
    layout_map = getattr(distribution, "_layout_map", None)
    if layout_map is not None and layout_map[variable.path] is not None:
        return
    variable._layout = layout
    if getattr(variable, "_value", None) is not None:  # else laid out at init
        variable._direct_assign(variable.value)


def unshared(value):
    """`value` as a variable may take it without sharing its buffer with
    another variable: on JAX a copy, in the value's own layout (a
    trainer's step donates its variables' buffers, which would delete the
    other variable's value); elsewhere as it is (`assign` copies)."""
    return ops.copy(value) if name() == "jax" else value


def assign(variable, value):
    """`variable.assign(value)` for a host (NumPy) value. Under a
    `keras.distribution` (JAX) the value goes from the host straight into
    the variable's layout, shard by shard, not whole onto the default
    device first (which Keras's `assign` of a NumPy array does)."""
    layout = getattr(variable, "_layout", None) if name() == "jax" else None
    if layout is not None and keras.distribution.distribution() is not None:
        import jax

        value = jax.device_put(
            np.asarray(value, dtype=variable.dtype),
            getattr(layout, "backend_layout", layout))
    variable.assign(value)


def loss_gradients(model, loss_fn):
    """A function `(x, y) -> (loss, gradients)` for `loss_fn(y, model(x))`.

    The gradients are w.r.t. `model.trainable_variables` (numpy arrays, in
    that order). The forward pass runs with `training=False` (BatchNorm on
    its moving statistics, no dropout: the same numbers on every backend)
    and no variable of the model changes. Variables the loss does not reach
    get zeros.
    """
    variables = model.trainable_variables
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        def compute(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=False))
            return loss, tape.gradient(
                loss, variables,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
    elif backend == "jax":
        import jax

        def forward(trainable, non_trainable, x, y):
            y_pred, _ = model.stateless_call(trainable, non_trainable, x,
                                             training=False)
            return loss_fn(y, y_pred)

        # Compiled once per batch shape: op by op, jax compiles every
        # primitive on first use (9 s for a small CNN).
        gradient = jax.jit(jax.value_and_grad(forward))
        trainable = [v.value for v in variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def compute(x, y):
            return gradient(trainable, non_trainable, x, y)
    elif backend == "torch":
        import torch

        def compute(x, y):
            values = [v.value for v in variables]
            loss = loss_fn(y, model(x, training=False))
            grads = torch.autograd.grad(loss, values, allow_unused=True)
            return loss, [torch.zeros_like(v) if g is None else g
                          for g, v in zip(grads, values)]
    else:
        raise NotImplementedError(
            f"Gradients are not implemented for the {backend!r} backend; "
            "use tensorflow, jax or torch."
        )

    def gradients(x, y):
        loss, grads = compute(x, y)
        return float(ops.convert_to_numpy(loss)), [
            ops.convert_to_numpy(g) for g in grads
        ]

    return gradients


def float64_scope():
    """A context in which float64 values stay float64.

    JAX computes in float32 unless x64 is enabled: `jax.enable_x64(True)`
    enables it inside this context only, so the process keeps its setting.
    TensorFlow and torch need nothing. A limit not lifted here: Keras 3.15's
    `ops.matmul` returned float32 for two float64 torch tensors (it gives
    the backend's dtype objects to its type lattice). SynFlow's scores of a
    float64 Dense/BatchNorm net against a NumPy float64 reference, largest
    relative error: TensorFlow 4e-11, JAX 9e-8, torch 1.5e-7.
    """
    if name() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def no_gradients():
    """A context for forward passes that need no gradients: on torch,
    `torch.no_grad()` (otherwise autograd keeps every activation of a
    calibration pass alive); nothing elsewhere (eager TF and JAX record
    nothing outside a tape or a transformation)."""
    if name() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def objective_gradients(model, objective):
    """`(trainable, non_trainable, x, *extra) -> (value, gradients)` of
    `objective(model(x), *extra)` w.r.t. the trainable values.

    Stateless (`model.stateless_call`, `training=False`: BatchNorm on the
    given moving statistics): the values are arrays in the order of
    `model.trainable_variables` / `non_trainable_variables`, and no variable
    of the model is read or changed. `extra` (e.g. the targets) are
    arguments, not constants, so JAX compiles once per shape, not once per
    batch. Gradients come back as NumPy arrays; values the objective does
    not reach get zeros.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        def compute(trainable, non_trainable, x, *extra):
            trainable = [tf.convert_to_tensor(v) for v in trainable]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                y, _ = model.stateless_call(trainable, non_trainable, x,
                                            training=False)
                value = objective(y, *extra)
            return value, tape.gradient(
                value, trainable,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
    elif backend == "jax":
        import jax

        def forward(trainable, non_trainable, x, *extra):
            y, _ = model.stateless_call(trainable, non_trainable, x,
                                        training=False)
            return objective(y, *extra)

        compute = jax.jit(jax.value_and_grad(forward))
    elif backend == "torch":
        import torch

        def compute(trainable, non_trainable, x, *extra):
            trainable = [ops.convert_to_tensor(v).detach().requires_grad_()
                         for v in trainable]
            non_trainable = [ops.convert_to_tensor(v) for v in non_trainable]
            # Callers may run under torch.no_grad (a Keras callback does).
            with torch.enable_grad():
                y, _ = model.stateless_call(trainable, non_trainable, x,
                                            training=False)
                value = objective(y, *extra)
                grads = torch.autograd.grad(value, trainable,
                                            allow_unused=True)
            return value, [torch.zeros_like(v) if g is None else g
                           for g, v in zip(grads, trainable)]
    else:
        raise NotImplementedError(
            f"Gradients are not implemented for the {backend!r} backend; "
            "use tensorflow, jax or torch."
        )

    def gradients(trainable, non_trainable, x, *extra):
        value, grads = compute(trainable, non_trainable, x, *extra)
        return float(ops.convert_to_numpy(value)), [
            ops.convert_to_numpy(g) for g in grads
        ]

    return gradients


def hessian_vector_products(model, loss_fn, variables):
    """`(x, y, vectors) -> H @ vectors` of `loss_fn(y, model(x))` w.r.t.
    `variables` (some of `model.trainable_variables`).

    Exact, by double backpropagation: nested `GradientTape`s (TensorFlow),
    forward-over-reverse `jax.jvp` of `jax.grad` (JAX), `autograd.grad`
    with `create_graph=True` (torch). `training=False`, no variable changes.
    `vectors` are NumPy arrays of the variables' shapes; the products come
    back as NumPy arrays (zeros where the loss does not reach).
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        zero = tf.UnconnectedGradients.ZERO

        def compute(x, y, vectors):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = loss_fn(y, model(x, training=False))
                grads = inner.gradient(loss, variables,
                                       unconnected_gradients=zero)
                dot = tf.add_n([
                    tf.reduce_sum(g * tf.cast(v, g.dtype))
                    for g, v in zip(grads, vectors)])
            return outer.gradient(dot, variables, unconnected_gradients=zero)
    elif backend == "jax":
        import jax

        everything = model.trainable_variables
        where = [next(i for i, t in enumerate(everything) if t is v)
                 for v in variables]

        def loss_of(chosen, trainable, non_trainable, x, y):
            trainable = list(trainable)
            for i, value in zip(where, chosen):
                trainable[i] = value
            y_pred, _ = model.stateless_call(trainable, non_trainable, x,
                                             training=False)
            return loss_fn(y, y_pred)

        def product(chosen, vectors, trainable, non_trainable, x, y):
            def gradient(c):
                return jax.grad(loss_of)(c, trainable, non_trainable, x, y)

            return jax.jvp(gradient, (chosen,), (vectors,))[1]

        product = jax.jit(product)

        def compute(x, y, vectors):
            vectors = [ops.cast(v, variables[i].dtype)
                       for i, v in enumerate(vectors)]
            return product(
                [v.value for v in variables], vectors,
                [v.value for v in everything],
                [v.value for v in model.non_trainable_variables], x, y)
    elif backend == "torch":
        import torch

        def compute(x, y, vectors):
            values = [v.value for v in variables]
            loss = loss_fn(y, model(x, training=False))
            grads = torch.autograd.grad(loss, values, create_graph=True,
                                        allow_unused=True)
            dot = sum(
                (g * ops.cast(ops.convert_to_tensor(v), g.dtype)).sum()
                for g, v in zip(grads, vectors) if g is not None)
            products = torch.autograd.grad(dot, values, allow_unused=True)
            return [torch.zeros_like(v) if p is None else p
                    for p, v in zip(products, values)]
    else:
        raise NotImplementedError(
            f"Hessian products are not implemented for the {backend!r} "
            "backend; use tensorflow, jax or torch."
        )

    def products(x, y, vectors):
        return [ops.convert_to_numpy(p) for p in compute(x, y, vectors)]

    return products


def stateless_loss_gradients(model, loss_fn):
    """`(trainable, non_trainable, x, y) -> (loss, gradients)` of
    `loss_fn(y, model(x))` w.r.t. the trainable values: `objective_gradients`
    with the targets as an argument."""
    return objective_gradients(model, lambda y_pred, y: loss_fn(y, y_pred))
