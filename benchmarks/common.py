"""Helpers shared by the benchmark scripts (standard library and NumPy only,
so that the tfmot worker, which runs under tf_keras, can import it too)."""

import json
import subprocess
import sys

import numpy as np


def fit_epochs(model, x, y, perms, epochs, batch_size, callbacks=()):
    """`model.fit` one epoch at a time on pre-permuted data.

    `perms[e]` orders the training set for epoch `e`, so every framework and
    configuration sees the same batches (`shuffle=False`); `initial_epoch`
    keeps Keras's epoch counter (and callbacks) consistent across calls.
    """
    for epoch in epochs:
        order = perms[epoch]
        model.fit(
            x[order],
            y[order],
            batch_size=batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            verbose=0,
            callbacks=list(callbacks),
        )


def versions():
    """Installed versions of the frameworks, read in a fresh interpreter."""
    code = (
        "import json, importlib.metadata as m\n"
        "v = {}\n"
        "for p in ('keras', 'tensorflow-cpu', 'tensorflow', 'jax', 'jaxlib', "
        "'torch', 'numpy'):\n"
        "    try: v[p] = m.version(p)\n"
        "    except Exception: pass\n"
        "print(json.dumps(v))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def kernel_zeros(model):
    """Per layer with a kernel: name, shape, size, exact and negative zeros.

    A -0.0 equals 0 but its sign bit costs bytes in a compressed file.
    """
    out = []
    for layer in model.layers:
        if getattr(layer, "kernel", None) is None:
            continue
        kernel = layer.get_weights()[0]
        out.append(
            {
                "layer": layer.name,
                "shape": list(kernel.shape),
                "n": int(kernel.size),
                "zeros": int(np.count_nonzero(kernel == 0)),
                "negative_zeros": int(
                    np.count_nonzero((kernel == 0) & np.signbit(kernel))
                ),
            }
        )
    return out


def write_section(path, name, title, text):
    """Replaces the `<!-- name:begin -->` … `<!-- name:end -->` block of
    `path` (RESULTS.md, re-read right before writing) with `text`, or
    appends it under `title` when the file has no such block."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    with open(path) as f:
        content = f.read()
    block = f"{begin}\n{text}\n{end}"
    if begin in content and end in content:
        start = content.index(begin)
        stop = content.index(end) + len(end)
        content = content[:start] + block + content[stop:]
    else:
        content = content.rstrip("\n") + f"\n\n{title}\n\n{block}\n"
    with open(path, "w") as f:
        f.write(content)
