"""The skeleton every benchmark script shares: its common options, its worker
processes, the header of its results and the results file it writes.

A script declares its options on `parser(...)` and hands `main` three
functions: `measure(args, data)` fills the run record `data` (by running
workers: `run_worker` / `run_backends`), `render(data)` turns a record into
Markdown, and `work(spec, log)` is what one worker measures. `main` then
gives every script the same behaviour:

- `--worker --spec S --out O`: run `work` in this process (`worker_main`);
- otherwise measure a new record (`new_run`: arguments, date, command,
  commit, machine, versions, load) or, with `--from-json`, re-read saved
  ones; add the text of `--reading`; save the record to `--json`; print the
  results document (`document`: a header with the command, date, commit
  and machine, then `render(data)`);
- with `--write` (or by default in a full run, where the script asks for
  it, unless `--no-write`) write that document as the whole of
  `benchmarks/results/<script>.md` (`results_path`).

Standard library and NumPy only at import time, so that the tfmot worker,
which runs under tf_keras, can import it too; `limit_threads` imports Keras
when it is called.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
BACKENDS = ("tensorflow", "jax", "torch")

# Scripts run as `python benchmarks/x.py` have benchmarks/ on sys.path, not
# the repository root: without this they would import whichever keras_prune
# is installed instead of this checkout's.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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


def thread_env(threads):
    """Environment variables that cap a worker subprocess at `threads`
    intra-op / inter-op threads (OpenMP, MKL, TensorFlow, XLA's CPU client;
    with 1, XLA's multi-threaded Eigen is off too). `threads` 0 or None:
    none, the frameworks' defaults. Appends to the caller's XLA_FLAGS."""
    if not threads:
        return {}
    n = str(threads)
    env = {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
    }
    if threads == 1:
        # XLA has no thread-count flag: its CPU client uses every core
        # unless its multi-threaded Eigen is off. (XLA_FLAGS must start
        # with "--", or XLA reads it as a file name and aborts.)
        xla = ("--xla_cpu_multi_thread_eigen=false "
               "intra_op_parallelism_threads=1")
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                            + xla).strip()
    return env


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
    """CPU count and model, memory (GiB, NaN where /proc/meminfo is missing)
    and Python version, for a record's `machine` field."""
    try:
        with open("/proc/meminfo") as f:
            mem = int(re.search(r"MemTotal:\s+(\d+)",
                                f.read()).group(1)) / 2**20
    except OSError:
        mem = float("nan")
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem,
            "python": platform.python_version()}


def load_averages():
    """The 1, 5 and 15-minute load averages (NaNs where unavailable)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def commit():
    """The checked-out commit, with " (+ uncommitted changes)" when the
    library or the benchmarks differ from it (the results files excepted);
    "unknown" outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "keras_prune",
                    "benchmarks", ":!benchmarks/results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (+ uncommitted changes)" if dirty else "")


def command_line(script, argv):
    """`python benchmarks/<script> <argv>`, as a results file records the
    command that produced it."""
    return " ".join(["python", f"benchmarks/{script}", *argv])


def save_json(path, data):
    """Writes `data` to `path` as indented JSON."""
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def default_backend():
    """KERAS_BACKEND if set, else tensorflow: the backend a script that used
    to run in the calling process measured by default."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


class _BackendList(argparse.Action):
    """Backends given comma- or space-separated, checked against BACKENDS."""

    def __call__(self, parser, namespace, values, option_string=None):
        names = [n for v in values for n in v.split(",") if n]
        unknown = sorted(set(names) - set(BACKENDS))
        if unknown or not names:
            parser.error(f"{option_string}: {', '.join(unknown) or 'none'} "
                         f"given; choose from {', '.join(BACKENDS)}")
        setattr(namespace, self.dest, names)


def add_backends(parser, option="--backends", default=BACKENDS, help=None):
    """A list-of-backends option (`--backends tensorflow,jax` or
    `--backends tensorflow jax`); its value is a list."""
    parser.add_argument(
        option, nargs="+", action=_BackendList, default=list(default),
        help=(help or "backends to measure, one worker process each")
        + f" (default: {','.join(default)})")


def lenet():
    """LeNet-300-100 (Frankle & Carbin's MNIST network) for 784 inputs."""
    import keras

    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10),
    ])


def parser(script, doc, *, quick=None, backends=None, threads=None,
           write_by_default=False, workers=True):
    """The ArgumentParser of `benchmarks/<script>`, with the options it
    shares with the other scripts; the script adds its own.

    Always: --json (save the record), --from-json (re-render saved records
    instead of measuring), --reading (a file with the text of the "Reading"
    paragraph), --write (write results/<script>.md). Where asked: --quick
    (`quick`: its help), --backends (`backends`: the default list), --threads
    (`threads`: the default), --no-write (`write_by_default`: a full run
    writes unless told not to) and the hidden worker options (`workers`).
    """
    # The docstring's first paragraph: the --help description and the title
    # of the results file.
    first_paragraph = doc.strip().split("\n\n")[0]
    p = argparse.ArgumentParser(
        prog=script, description=" ".join(first_paragraph.split()),
        epilog=f"Results: benchmarks/results/{os.path.splitext(script)[0]}"
               ".md (--write).")
    if quick:
        p.add_argument("--quick", action="store_true", help=quick)
    if backends:
        add_backends(p, default=backends)
    if threads is not None:
        p.add_argument(
            "--threads", type=int, default=threads,
            help=f"intra-op threads of every worker (default {threads}; 0: "
                 "the backends' own). On a shared machine multi-threaded "
                 "step times swing with the other processes' load.")
    p.add_argument("--json", help="also save the raw record here")
    p.add_argument("--from-json", nargs="+", metavar="JSON",
                   help="re-render (and with --write, write) saved --json "
                        "records instead of measuring")
    p.add_argument("--reading",
                   help="text of the 'Reading' paragraph (a file)")
    p.add_argument("--write", action="store_true",
                   help="write the results file"
                        + (" also in --quick mode" if write_by_default and
                           quick else ""))
    if write_by_default:
        p.add_argument("--no-write", action="store_true",
                       help="do not write the results file")
    if workers:
        p.add_argument("--worker", action="store_true",
                       help=argparse.SUPPRESS)
        p.add_argument("--spec", help=argparse.SUPPRESS)
        p.add_argument("--out", help=argparse.SUPPRESS)
    p.set_defaults(_write_by_default=write_by_default)
    return p


def run_worker(script, backend, spec, stem, label=None, threads=1):
    """Runs one measurement in a fresh interpreter and returns its result.

    Writes `spec` to `<stem>.spec.json` and runs
    `benchmarks/<script> --worker --spec <stem>.spec.json --out <stem>.json`
    from the repository root with KERAS_BACKEND=`backend` (set before Keras
    is imported), TensorFlow's C++ logging off and `thread_env(threads)`
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
    cmd = [sys.executable, os.path.join(HERE, os.path.basename(script)),
           "--worker", "--spec", spec_path, "--out", out_path]
    proc = subprocess.run(cmd, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(
            f"{label or script} worker ({backend}) failed: exit "
            f"{proc.returncode}")
    with open(out_path) as f:
        return json.load(f)


def run_backends(script, backends, spec, label=None, threads=1):
    """`run_worker` once per backend, one after the other, in a temporary
    directory: the list of their results."""
    with tempfile.TemporaryDirectory(prefix=os.path.splitext(script)[0]
                                     + "_") as tmp:
        return [run_worker(script, backend, spec,
                           os.path.join(tmp, backend), label, threads)
                for backend in backends]


def worker_main(args, work, label=None):
    """The worker side of `run_worker`: reads the spec of `args.spec`,
    returns `work(spec, log)` plus its wall time (`worker_s`) as JSON in
    `args.out`. `log` prints "[<spec[label]> <backend>] message" at once."""
    with open(args.spec) as f:
        spec = json.load(f)
    prefix = " ".join(([str(spec[label])] if label else [])
                      + [os.environ.get("KERAS_BACKEND", "?")])

    def log(message):
        print(f"[{prefix}] {message}", flush=True)

    t0 = time.perf_counter()
    result = work(spec, log)
    result["worker_s"] = time.perf_counter() - t0
    with open(args.out, "w") as f:
        json.dump(result, f)


def new_run(script, argv):
    """A new record of `benchmarks/<script> <argv>`: its arguments, date,
    command, commit, machine, versions and the load averages at its start;
    `main` adds `wall_s` at its end."""
    return {
        "argv": list(argv),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": command_line(script, argv),
        "commit": commit(),
        "machine": machine(),
        "versions": versions(),
        "load_start": list(load_averages()),
    }


def median_cell(values, form="{:.2f}"):
    """The median of `values` in `form`, with the spread over several
    seeds in brackets: "85.40 (81.50-85.70)"."""
    text = form.format(statistics.median(values))
    if len(values) > 1:
        text += (f" ({form.format(min(values))}-"
                 f"{form.format(max(values))})")
    return text


def results_path(name):
    """benchmarks/results/<name>.md, where `name` is a script's stem (and a
    variant's suffix)."""
    return os.path.join(RESULTS_DIR, name + ".md")


def header(data):
    """The lines that open every results document: the command, its date,
    commit and wall time, the machine and the versions of `data` (fields
    that a record written before the shared skeleton lacks are left out)."""
    m = data["machine"]
    run = [f"- **Date**: {data['date']}",
           f"**commit** {data.get('commit', 'not recorded')}"]
    if "wall_s" in data:
        run.append(f"**wall time** {data['wall_s'] / 60:.1f} min")
    quick = (" (--quick: a smoke run; its figures are not measurements)"
             if data.get("quick") else "")
    load = ""
    if data.get("load_start"):
        load = ("; load average at the start "
                + ", ".join(f"{x:.1f}" for x in data["load_start"])
                + " (1, 5, 15 min)")
    cpus = m.get("cpus", m.get("cores"))
    memory = f", {m['mem_gib']:.0f} GiB" if "mem_gib" in m else ""
    lines = [
        # Records merged by --from-json hold one command a line.
        "- **Command** (from the repository root): " + " and ".join(
            f"`{c}`" for c in data["command"].split("\n")),
        "; ".join(run) + quick,
        f"- **Machine**: {cpus} CPUs ({m.get('cpu', '?')}){memory}, no GPU, "
        f"Python {m['python']}{load}",
    ]
    if data.get("versions"):
        lines.append("- **Versions**: " + ", ".join(
            f"{k} {v}" for k, v in data["versions"].items()))
    return lines


def document(title, script, data, text):
    """The whole results file: title, provenance note, `header(data)`, then
    the rendered `text`."""
    return "\n".join(
        [f"# {title}", "",
         f"Generated by `benchmarks/{script}` (`--write`): re-run its command "
         "to update this file; notes on how these figures moved over time go "
         "to [HISTORY.md](../HISTORY.md).", ""]
        + header(data) + ["", text, ""])


def _one_record(paths):
    if len(paths) != 1:
        raise SystemExit(f"--from-json: this script re-renders one record, "
                         f"got {len(paths)}")
    with open(paths[0]) as f:
        return json.load(f)


def main(parser, measure, render, argv=None, *, work=None, label=None,
         merge=_one_record, variant=None):
    """Runs a benchmark script as the module docstring describes.

    `merge(paths)`: the record re-rendered from the --from-json files (by
    default exactly one). `variant(data)`: a suffix of the results file's
    name and title for a record that is one of several variants of the
    script (None: the plain name). Returns the results document.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    script = parser.prog
    if getattr(args, "worker", False):
        worker_main(args, work, label)
        return None
    if args.from_json:
        data = merge(args.from_json)
    else:
        data = new_run(script, argv)
        t0 = time.perf_counter()
        measure(args, data)
        data["wall_s"] = time.perf_counter() - t0
    if args.reading:
        with open(args.reading) as f:
            data["reading"] = f.read().strip()
    if args.json:
        save_json(args.json, data)
    text = render(data)
    if data.get("reading"):
        text += "\n\n**Reading.** " + data["reading"]
    suffix = variant(data) if variant else None
    name = os.path.splitext(script)[0] + (f"_{suffix}" if suffix else "")
    title = parser.description.rstrip(".") + (f" — {suffix}" if suffix else "")
    doc = document(title, script, data, text)
    print(doc)
    if args.write or (args._write_by_default and not getattr(
            args, "quick", False) and not args.no_write):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(results_path(name), "w") as f:
            f.write(doc)
        print(f"(wrote {os.path.relpath(results_path(name), ROOT)})")
    return doc
