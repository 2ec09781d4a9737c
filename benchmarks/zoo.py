"""The model zoo, pruned both ways on every backend: keras-hub backbones and keras.applications models.

Not part of the test suite (tests/test_zoo.py and
tests/test_structured_zoo.py assert the behaviour; this records the
matrix). Run from the repository root:

    .venv/bin/python benchmarks/zoo.py --write              # ~15 min
    .venv/bin/python benchmarks/zoo.py --quick --models gpt2,convnext

The models are tests/test_zoo.py's (small configs, random weights, nothing
downloaded); each backend of `--backends` runs in its own worker process.
Per model:

- **unstructured**: `prune_now(model, 0.5)` (layer scope): whether it ran,
  the copy path it said (clone / copied whole / objects), how many kernel
  weights are prunable of all Dense/EinsumDense/Conv/Embedding kernel
  weights at any depth, the sparsity reached on them, seconds;
- **structured**: `plan_pruning(model, 0.25)` + `apply_plan`: whether it
  ran, prunable groups of all groups, layers left whole (not followed),
  parameters and MACs before -> after (`model_cost`), `verify`'s max
  difference from the zeroed original (LayerNormalization groups are not
  exact by design: docs/structured.md), seconds.
"""

import math
import time
import warnings

import common

SPARSITY = 0.5
RATIO = 0.25
QUICK_MODELS = ("gpt2", "resnet", "convnext")


def _names():
    from tests.test_zoo import APPS
    from tests.test_zoo import HUB

    return {**{f"hub:{k}": v for k, v in HUB.items()},
            **{f"apps:{k}": v for k, v in APPS.items()}}


def _kernel_weights(model):
    import keras

    from tests.test_zoo import KERNEL_LAYERS

    kinds = KERNEL_LAYERS + (keras.layers.Embedding,)
    return sum(math.prod(v.shape) for layer in model._flatten_layers()
               if isinstance(layer, kinds)
               for v in layer._trainable_variables
               if "kernel" in v.name or v.name == "embeddings")


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:150] if text else ''}"


def _unstructured(model):
    import keras_prune

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        pruned, report = keras_prune.prune_now(model, SPARSITY,
                                               scope="layer")
    path = "clone"
    for w in said:
        text = str(w.message)
        if "copied as objects" in text or "copied as an object" in text:
            path = "objects"
            break
        if "copied whole" in text:
            path = "copied whole"
    return {"ok": True, "path": path, "seconds": time.perf_counter() - t0,
            "prunable": int(report.prunable_total),
            "kernels": _kernel_weights(model),
            "sparsity": float(report.prunable_zeros / max(
                report.prunable_total, 1))}


def _structured(model, x):
    from keras_prune.structured import apply_plan
    from keras_prune.structured import model_cost
    from keras_prune.structured import plan_pruning
    from keras_prune.structured import verify

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_pruning(model, RATIO)
        small = apply_plan(model, plan)
    seconds = time.perf_counter() - t0
    before, after = model_cost(model), model_cost(small)
    return {"ok": True, "seconds": seconds,
            "groups": len(plan.groups),
            "prunable_groups": sum(not g["blocked"] for g in plan.groups),
            "left_whole": len(plan.left_whole),
            "params": [before.params, after.params],
            "macs": [before.macs, after.macs],
            "uncounted": len(before.uncounted),
            "verify": verify(model, plan, x, small)}


def work(spec, log):
    """Each model of the spec on this worker's backend, both ways."""
    import keras

    from tests.test_zoo import _inputs

    builders = _names()
    rows = []
    for name in spec["models"]:
        keras.utils.set_random_seed(0)
        model = builders[name]()
        x = _inputs(model)
        row = {"model": name}
        for key, run in (("unstructured", lambda: _unstructured(model)),
                         ("structured", lambda: _structured(model, x))):
            try:
                row[key] = run()
            except Exception as error:  # recorded: the matrix shows it
                row[key] = {"ok": False, "error": _first_line(error)}
        rows.append(row)
        log(f"{name} done")
    return {"backend": keras.backend.backend(), "rows": rows}


def _selected(args):
    names = _names()
    if not args.models:
        wanted = QUICK_MODELS if args.quick else None
    else:
        wanted = [m for v in args.models for m in v.split(",") if m]
    if wanted is None:
        return list(names)
    found = []
    for want in wanted:
        hits = [n for n in names if want in (n, n.split(":", 1)[1])]
        if not hits:
            raise SystemExit(f"--models: no model {want!r}; choose from "
                             f"{', '.join(names)}")
        found += hits
    return found


def measure(args, data):
    data["quick"] = bool(args.quick)
    data["runs"] = common.run_backends(
        "zoo.py", args.backends, {"models": _selected(args)}, threads=0)




def render(data):
    lines = [f"Unstructured: `prune_now(model, {SPARSITY})`; structured: "
             f"`plan_pruning(model, {RATIO})` + `apply_plan`. Kernel weights: "
             "every Dense/EinsumDense/Conv/Embedding kernel at any depth.",
             ""]
    add = lines.append
    for run in data["runs"]:
        add(f"**{run['backend']}**")
        add("")
        add("| model | unstructured | copy | prunable / kernel weights | "
            "sparsity | s | structured | groups prunable / all | left whole "
            "| params | MACs | verify | s |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in run["rows"]:
            u, s = row["unstructured"], row["structured"]
            cells = [row["model"]]
            if u["ok"]:
                cells += ["ok", u["path"],
                          f"{u['prunable']:,} / {u['kernels']:,}",
                          f"{u['sparsity']:.1%}", f"{u['seconds']:.1f}"]
            else:
                cells += [u["error"], "", "", "", ""]
            if s["ok"]:
                cells += [
                    "ok", f"{s['prunable_groups']} / {s['groups']}",
                    str(s["left_whole"]),
                    f"{s['params'][0]:,} -> {s['params'][1]:,}",
                    f"{s['macs'][0]:,} -> {s['macs'][1]:,}" + (
                        f" ({s['uncounted']} layers not counted)"
                        if s["uncounted"] else ""),
                    f"{s['verify']:.1e}", f"{s['seconds']:.1f}"]
            else:
                cells += [s["error"], "", "", "", "", "", ""]
            add("| " + " | ".join(cells) + " |")
        add("")
    return "\n".join(lines).rstrip("\n")


def main(argv=None):
    parser = common.parser(
        "zoo.py", __doc__, quick="three models (gpt2, resnet, convnext) unless --models "
        "says", backends=list(common.BACKENDS),
        write_by_default=True)
    parser.add_argument("--models", nargs="+",
                        help="model names (gpt2 or hub:gpt2, convnext, ...)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
