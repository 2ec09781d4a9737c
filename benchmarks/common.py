"""Helpers shared by the benchmark scripts (standard library and NumPy only
at import time, so that the tfmot worker, which runs under tf_keras, can
import it too; `limit_threads` imports Keras when it is called)."""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def thread_env(threads):
    """Environment variables that cap a worker subprocess at `threads`
    intra-op / inter-op threads (OpenMP, MKL, TensorFlow, XLA's CPU client;
    with 1, XLA's multi-threaded Eigen is off too). `threads` 0 or None:
    none, the frameworks' defaults. Appends to the caller's XLA_FLAGS."""
    if not threads:
        return {}
    n = str(threads)
    xla = f"intra_op_parallelism_threads={n}"
    if threads == 1:
        xla = "--xla_cpu_multi_thread_eigen=false " + xla
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + xla).strip(),
    }


def limit_threads():
    """1 intra-op / 1 inter-op thread through TensorFlow's or torch's own
    setters, for the backend Keras runs on (JAX has none: `thread_env`'s
    XLA_FLAGS cover it). Call in the worker before building a model."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)


def machine():
    """CPU count, memory (GiB, NaN where /proc/meminfo is missing) and
    Python version, for a results file's `machine` field."""
    try:
        with open("/proc/meminfo") as f:
            mem = int(re.search(r"MemTotal:\s+(\d+)",
                                f.read()).group(1)) / 2**20
    except OSError:
        mem = float("nan")
    return {"cpus": os.cpu_count(), "mem_gib": mem,
            "python": platform.python_version()}


def load_averages():
    """The 1, 5 and 15-minute load averages (NaNs where unavailable)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def command_line(script):
    """`python benchmarks/<script> <this process's arguments>`, as a results
    file records the command that produced it."""
    return (f"python benchmarks/{script}"
            + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""))


def save_json(path, data):
    """Writes `data` to `path` as indented JSON."""
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def add_report_arguments(
        parser, from_json_help="re-render (and write) a --json file"):
    """The options of a results section: --json (save the raw results),
    --from-json (re-render saved results instead of measuring), --reading
    (a file with the text of the "Reading" paragraph); see `print_report`."""
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--from-json", help=from_json_help)
    parser.add_argument("--reading",
                        help="text of the 'Reading' paragraph (a file)")


def add_worker_arguments(parser):
    """The hidden options by which `run_worker` starts a script as its own
    worker: --worker, --spec (the JSON spec in), --out (the JSON result)."""
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)


def run_worker(script, backend, spec, stem, label, threads=1):
    """Runs one measurement in a fresh interpreter and returns its result.

    Writes `spec` to `<stem>.spec.json` and runs
    `script --worker --spec <stem>.spec.json --out <stem>.json` from the
    repository root with KERAS_BACKEND=`backend` (set before Keras is
    imported), TensorFlow's C++ logging off and `thread_env(threads)`
    (0: the frameworks' default threads). The worker's output goes to this
    process's stdout / stderr. A failed worker ends the run with
    "`label` worker (`backend`) failed: exit N".
    """
    spec_path = f"{stem}.spec.json"
    out_path = f"{stem}.json"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(thread_env(threads))
    cmd = [sys.executable, os.path.abspath(script), "--worker",
           "--spec", spec_path, "--out", out_path]
    proc = subprocess.run(cmd, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(
            f"{label} worker ({backend}) failed: exit {proc.returncode}")
    with open(out_path) as f:
        return json.load(f)


def worker_main(args, work, label):
    """The worker side of `run_worker`: reads the spec of `args.spec`,
    returns `work(spec, log)` plus its wall time (`worker_s`) as JSON in
    `args.out`. `log` prints "[<spec[label]> <backend>] message" at once.
    The repository root goes first on sys.path, so that the workers import
    this checkout's keras_prune."""
    sys.path.insert(0, ROOT)
    with open(args.spec) as f:
        spec = json.load(f)

    def log(message):
        print(f"[{spec[label]} {os.environ.get('KERAS_BACKEND')}] {message}",
              flush=True)

    t0 = time.perf_counter()
    result = work(spec, log)
    result["worker_s"] = time.perf_counter() - t0
    with open(args.out, "w") as f:
        json.dump(result, f)


def run_header(data, note=""):
    """The first line of a results section: date, command (`command_line`)
    and wall time of the run in `data`, then `note` (e.g. " (--quick)")."""
    return (f"**Date**: {data['date']}. **Command** (from the repository "
            f"root): `{data['command']}` — wall time "
            f"{data['wall_s'] / 60:.1f} min{note}.")


def print_report(data, render, reading=None, json_path=None):
    """Prints a results section and returns its Markdown text.

    Adds the text of the file `reading` (if any) to `data` as
    `data["reading"]` and saves `data` to `json_path` (if any). The section
    is `render(data)` followed, where `data` has a reading (now or from the
    re-rendered JSON), by a "**Reading.** ..." paragraph.
    """
    if reading:
        with open(reading) as f:
            data["reading"] = f.read().strip()
    if json_path:
        save_json(json_path, data)
    text = render(data)
    if data.get("reading"):
        text += "\n\n**Reading.** " + data["reading"]
    print(text)
    return text
