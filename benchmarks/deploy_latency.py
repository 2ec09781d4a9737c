"""Structured pruning on the deploy runtime: ONNX Runtime (and LiteRT) latency of our plans, with and without latency-aware rounding, beside Torch-Pruning's.

Not part of the test suite (tests/test_benchmarks.py runs `--quick`). Run
from the repository root:

    .venv/bin/python benchmarks/deploy_latency.py --write     # ~6 min
    .venv/bin/python benchmarks/deploy_latency.py --quick     # ~2 min

Two models, random weights (latency does not depend on the values), built
the same way in Keras and in PyTorch:

- ResNet-18, CIFAR layout (3x3 stem, no max-pool, 64/128/256/512, 32x32x3,
  10 classes);
- MobileNetV2 (alpha 1.0, 224x224x3, 1000 classes): Keras's
  `keras.applications.MobileNetV2(weights=None)` and torchvision's layout
  written out here (torchvision is not installed: its wheels pull another
  torch).

Protocol, declared before the run:

1. The channel block of ONNX Runtime on this machine is measured first
   (`keras_prune.measure_channel_block`, 1 thread): the rounding uses the
   measured value, never an assumed 16.
2. Keras side (one worker, TensorFlow backend, 1 thread), per model:
   `dense`; `ours 50%` = `plan_pruning(ratio=0.5)` (L2, layer scope) +
   `apply_plan`; `ours 50% rounded` = the same with `round_to=block,
   rounding="nearest"`; `ours rounded, MACs held` = `plan_pruning(
   target_macs=<ours 50%'s MACs>, scope="layer", round_to=block,
   rounding="nearest")`: rounded AND within the unrounded plan's MAC
   count. Every model is BatchNorm-folded (`fold_batchnorm`) and exported
   by `keras_prune.export(format="onnx")` (tf2onnx); the ResNet variants
   also to LiteRT (`format="litert"`). MACs and parameters: `model_cost`.
3. PyTorch side (one worker): the same networks, pruned by Torch-Pruning
   (`MagnitudePruner`, L2 group importance, `pruning_ratio=0.5`, the
   classifier ignored), also with its `round_to=block` (Torch-Pruning
   rounds kept channels DOWN); exported by `torch.onnx.export` in eval
   mode (BatchNorm folded by the exporter). MACs: Torch-Pruning's
   `count_ops_and_params`.
4. Timing (this process): every ONNX file of a model in ONNX Runtime (CPU,
   1 intra-op thread, sequential, all graph optimizations), batch 1 and 8,
   random inputs; warm-up, then rounds in which every file runs once in a
   rotating order; medians. Speed-up = dense median / variant median, each
   side against its own dense model; "÷ MACs" = speed-up / MAC reduction
   (1.0: the runtime turns every MAC removed into time). LiteRT files
   likewise (its interpreter, 1 thread).

5. The accuracy cost of rounding (declared 2026-12-06 before its first
   run): Fashion-MNIST (`load_fashion_mnist`), the first `ACC_TRAIN` =
   10,000 training images, the 10,000 test images; structured.py's
   ResNet-style CNN with widths (40, 88, 136), so that half of every group
   is not a multiple of the block (20, 44, 68: to 16 the nearest is down,
   up, down). Per seed (0 and 1, one worker each, in parallel, 1 thread):
   dense trained `ACC_EPOCHS` = 3 epochs (Adam 1e-3 cosine, batch 32:
   with 128, 237 steps leave BatchNormalization's moving statistics
   unsettled and every model at chance on the test set);
   the three plans above made from it; each pruned model fine-tuned 1 epoch (Adam 1e-3 cosine, the same
   permutation); test accuracy before and after fine-tuning, and MACs.
   The cost of rounding = accuracy of `ours 50%` minus that of each
   rounded plan, mean over seeds. `--quick`: 1,000 images, 1 epoch, one
   seed.

Keras-level latency (the same plans run by Keras itself) is in
results/structured.md and results/structured_fold.md: 0.31-0.40 of the MAC
reduction at batch 1, because Keras dispatches layer by layer from Python.
"""

import os
import tempfile
import warnings

import numpy as np

import common
from structured import interleaved

MODELS = ("resnet18", "mobilenetv2")
TITLES = {"resnet18": "ResNet-18 (CIFAR layout, 32×32×3)",
          "mobilenetv2": "MobileNetV2 (224×224×3, alpha 1.0)"}
SHAPES = {"resnet18": (32, 32, 3), "mobilenetv2": (224, 224, 3)}
RATIO = 0.5
BATCHES = (1, 8)
ROUNDS = {"resnet18": (300, 60), "mobilenetv2": (200, 40)}
QUICK_ROUNDS = {"resnet18": (20, 5), "mobilenetv2": (10, 3)}
OURS = ("ours 50%", "ours 50% rounded", "ours rounded, MACs held")
ACC_WIDTHS = (40, 88, 136)
ACC_TRAIN, ACC_EPOCHS, ACC_SEEDS, ACC_BATCH = 10_000, 3, (0, 1), 32
THEIRS = ("Torch-Pruning 50%", "Torch-Pruning 50% round_to")


# --------------------------------------------------------------------------
# Keras side


def keras_resnet18(classes=10):
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, name):
        x = layers.Conv2D(filters, kernel, stride, padding="same",
                          use_bias=False, name=name)(x)
        return layers.BatchNormalization(name=name + "_bn")(x)

    inputs = keras.Input(SHAPES["resnet18"])
    x = layers.ReLU()(conv_bn(inputs, 64, 3, 1, "stem"))
    width = 64
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage and not block else 1
            name = f"s{stage}b{block}"
            y = layers.ReLU()(conv_bn(x, filters, 3, stride, name + "_a"))
            y = conv_bn(y, filters, 3, 1, name + "_b")
            if stride != 1 or width != filters:
                x = conv_bn(x, filters, 1, stride, name + "_down")
            x = layers.ReLU()(layers.Add()([x, y]))
            width = filters
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="resnet18")


def keras_model(name):
    import keras

    if name == "resnet18":
        return keras_resnet18()
    return keras.applications.MobileNetV2(
        weights=None, input_shape=SHAPES["mobilenetv2"])


def _random_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics (a fold that went wrong shows)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, w.shape).astype("float32")
                if i in (0, 3) else
                rng.normal(0, 0.1, w.shape).astype("float32")
                for i, w in enumerate(layer.get_weights())])


def our_plans(dense, block):
    """The three plans of the protocol, by label."""
    from keras_prune.structured import apply_plan
    from keras_prune.structured import model_cost
    from keras_prune.structured import plan_pruning

    plain = plan_pruning(dense, ratio=RATIO)
    held = model_cost(apply_plan(dense, plain)).macs
    return {
        "ours 50%": plain,
        "ours 50% rounded": plan_pruning(
            dense, ratio=RATIO, round_to=block, rounding="nearest"),
        "ours rounded, MACs held": plan_pruning(
            dense, target_macs=held, scope="layer", round_to=block,
            rounding="nearest"),
    }


def accuracy_work(spec, log):
    """Step 5 of the protocol, one seed."""
    import keras

    from common import fit_epochs
    from keras_prune.datasets import load_fashion_mnist
    from keras_prune.structured import apply_plan
    from keras_prune.structured import model_cost
    from structured import _accuracy
    from structured import _compile
    from structured import resnet_cnn

    common.limit_threads()
    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[:spec["n_train"]], y[:spec["n_train"]]
    # --quick: part of the test set (7 evaluations of 10,000 images were
    # most of the smoke run's time).
    x_test, y_test = x_test[:spec.get("n_test")], y_test[:spec.get("n_test")]
    epochs, seed = spec["epochs"], spec["seed"]
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(len(x)) for _ in range(epochs + 1)]
    steps = -(-len(x) // ACC_BATCH)
    keras.utils.set_random_seed(seed)
    dense = _compile(resnet_cnn(ACC_WIDTHS, name="cnn"), 1e-3,
                     epochs * steps, True)
    fit_epochs(dense, x, y, perms, range(epochs), ACC_BATCH)
    rows = [{"label": "dense", "macs": int(model_cost(dense).macs),
             "accuracy": _accuracy(dense, x_test, y_test)}]
    log(f"seed {seed}: dense {rows[0]['accuracy']:.4f}")
    for label, plan in our_plans(dense, spec["block"]).items():
        model = apply_plan(dense, plan)
        row = {"label": label, "macs": int(model_cost(model).macs),
               "widths": sorted({int(sum(g["keep"])) for g in plan.groups
                                 if not g["blocked"]}),
               "pruned": _accuracy(model, x_test, y_test)}
        _compile(model, 1e-3, steps, True)
        fit_epochs(model, x, y, perms, range(epochs, epochs + 1),
                   ACC_BATCH)
        row["accuracy"] = _accuracy(model, x_test, y_test)
        rows.append(row)
        log(f"seed {seed}: {label} {row['accuracy']:.4f}")
    return {"seed": seed, "rows": rows}


def keras_work(spec, log):
    import keras

    import keras_prune
    from keras_prune.structured import apply_plan
    from keras_prune.structured import fold_batchnorm
    from keras_prune.structured import model_cost

    common.limit_threads()
    rows = {}
    for name in spec["models"]:
        keras.utils.set_random_seed(0)
        dense = keras_model(name)
        _random_batchnorm(dense)
        plans = our_plans(dense, spec["block"])
        models = {"dense": dense}
        for label in OURS:
            models[label] = apply_plan(dense, plans[label])
        x = np.random.default_rng(1).standard_normal(
            (2,) + SHAPES[name]).astype("float32")
        out = []
        for label, model in models.items():
            folded = fold_batchnorm(model).model
            cost = model_cost(model)
            path = os.path.join(spec["dir"], f"{name} {label}.onnx")
            keras_prune.export(folded, path, overwrite=True)
            files = {"onnx": path}
            if name == "resnet18" and keras.backend.backend() == "tensorflow":
                files["litert"] = path[:-5] + ".tflite"
                keras_prune.export(folded, files["litert"], format="litert",
                                   overwrite=True)
            # The ONNX file computes what Keras computes.
            import onnxruntime

            session = onnxruntime.InferenceSession(
                path, providers=["CPUExecutionProvider"])
            got = session.run(None, {session.get_inputs()[0].name: x})[0]
            want = keras.ops.convert_to_numpy(model(x, training=False))
            widths = None
            if label != "dense":
                widths = sorted({int(sum(g["keep"])) for g in
                                 plans[label].groups
                                 if not g["blocked"]})
            out.append({
                "label": label, "files": files, "macs": int(cost.macs),
                "params": int(cost.params), "widths": widths,
                "onnx_diff": float(np.max(np.abs(got - want))
                                   / max(np.max(np.abs(want)), 1e-12)),
            })
            log(f"{name}: {label} exported ({cost.macs:,} MACs)")
        rows[name] = out
    return {"rows": rows}


# --------------------------------------------------------------------------
# PyTorch side


def torch_model(name):
    import torch
    from torch import nn

    def conv_bn(cin, cout, kernel, stride=1, groups=1, act=None):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                            groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act:
            layers.append(act())
        return nn.Sequential(*layers)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.a = conv_bn(cin, cout, 3, stride, act=nn.ReLU)
            self.b = conv_bn(cout, cout, 3)
            self.down = (conv_bn(cin, cout, 1, stride)
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.down(x) + self.b(self.a(x)))

    class ResNet18(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            blocks, cin = [conv_bn(3, 64, 3, act=nn.ReLU)], 64
            for stage, cout in enumerate((64, 128, 256, 512)):
                for block in range(2):
                    blocks.append(Basic(cin, cout,
                                        2 if stage and not block else 1))
                    cin = cout
            self.features = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            layers = ([conv_bn(cin, hidden, 1, act=nn.ReLU6)]
                      if expand != 1 else [])
            layers += [conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6),
                       conv_bn(hidden, cout, 1)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.conv(x)
            return x + y if self.residual else y

    class MobileNetV2(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
            for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                               (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                               (6, 320, 1, 1)):
                for i in range(n):
                    layers.append(Inverted(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(1280, classes)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    torch.manual_seed(0)
    model = ResNet18() if name == "resnet18" else MobileNetV2()
    for m in model.modules():  # non-trivial statistics, as on the Keras side
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def torch_work(spec, log):
    import torch
    import torch_pruning as tp

    torch.set_num_threads(1)
    rows = {}
    for name in spec["models"]:
        h, w, c = SHAPES[name]
        example = torch.randn(1, c, h, w)
        out = []
        for label, round_to in (("Torch-Pruning dense", None),
                                (THEIRS[0], None),
                                (THEIRS[1], spec["block"])):
            model = torch_model(name)
            if label != "Torch-Pruning dense":
                importance = tp.importance.MagnitudeImportance(p=2)
                pruner = tp.pruner.MagnitudePruner(
                    model, example, importance=importance,
                    pruning_ratio=RATIO, ignored_layers=[model.fc],
                    round_to=round_to)
                pruner.step()
            model.eval()
            macs, params = tp.utils.count_ops_and_params(model, example)
            widths = sorted({m.out_channels for m in model.modules()
                             if isinstance(m, torch.nn.Conv2d)})
            path = os.path.join(spec["dir"], f"{name} {label}.onnx")
            # The TorchScript exporter folds BatchNorm in eval mode; torch
            # 2.13 warns that it is no longer the default.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, (example,), path, dynamo=False,
                                  input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}},
                                  opset_version=17)
            out.append({"label": label, "files": {"onnx": path},
                        "macs": int(macs), "params": int(params),
                        "widths": widths})
            log(f"{name}: {label} exported ({int(macs):,} MACs)")
        rows[name] = out
    return {"rows": rows}


def work(spec, log):
    return {"torch": torch_work, "keras": keras_work,
            "accuracy": accuracy_work}[spec["side"]](spec, log)


# --------------------------------------------------------------------------
# Timing


def _onnx_runner(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    session = onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def _litert_runner(path, batch):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    shape = list(interpreter.get_input_details()[0]["shape"])
    interpreter.resize_tensor_input(index, [batch] + shape[1:])
    interpreter.allocate_tensors()

    def run(x):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    return run


def _time_model(name, variants, rounds, log):
    """Fills each variant's "ms" {runtime: {batch: ms}}."""
    h, w, c = SHAPES[name]
    for batch, n_rounds in zip(BATCHES, rounds):
        rng = np.random.default_rng(batch)
        for runtime in ("onnx", "litert"):
            chosen = [v for v in variants if runtime in v["files"]]
            if not chosen:
                continue
            runners, inputs = [], []
            for v in chosen:
                nchw = v["side"] == "torch"
                shape = (batch, c, h, w) if nchw else (batch, h, w, c)
                inputs.append(rng.standard_normal(shape).astype("float32"))
                path = v["files"][runtime]
                runners.append(_onnx_runner(path) if runtime == "onnx"
                               else _litert_runner(path, batch))
            medians = interleaved(runners, inputs, n_rounds, warmup=5)
            for v, s in zip(chosen, medians):
                v.setdefault("ms", {}).setdefault(runtime, {})[str(batch)] = (
                    s * 1e3)
            log(f"{name}: {runtime} batch {batch} timed")


def measure(args, data):
    import keras_prune

    data["quick"] = bool(args.quick)
    block = keras_prune.measure_channel_block(threads=1)
    print(block.summary(), flush=True)
    data["block"] = block.to_dict()
    models = [m for v in args.models for m in v.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: no model {unknown[0]!r}; choose from "
                         f"{', '.join(MODELS)}")
    data["backend"] = args.backend
    with tempfile.TemporaryDirectory(prefix="deploy_latency_") as tmp:
        spec = {"models": models, "block": block.block, "dir": tmp}
        keras_side = common.run_worker(
            "deploy_latency.py", args.backend, dict(spec, side="keras"),
            os.path.join(tmp, "keras"))
        torch_side = common.run_worker(
            "deploy_latency.py", "torch", dict(spec, side="torch"),
            os.path.join(tmp, "torch"))
        data["models"] = {}
        for name in models:
            variants = ([dict(v, side="keras") for v in
                         keras_side["rows"][name]]
                        + [dict(v, side="torch") for v in
                           torch_side["rows"][name]])
            rounds = (QUICK_ROUNDS if args.quick else ROUNDS)[name]
            _time_model(name, variants, rounds,
                        lambda m: print(f"[timing] {m}", flush=True))
            for v in variants:
                v["files"] = sorted(v["files"])
            data["models"][name] = variants
        if not args.no_accuracy:
            data["accuracy"] = _accuracy_runs(args, block.block, tmp)


def _accuracy_runs(args, block, tmp):
    """Step 5: one worker per seed, in parallel."""
    import concurrent.futures

    seeds = ACC_SEEDS[:1] if args.quick else ACC_SEEDS
    spec = {"side": "accuracy", "block": block,
            "n_train": 1000 if args.quick else ACC_TRAIN,
            "n_test": 500 if args.quick else None,
            "epochs": 1 if args.quick else ACC_EPOCHS}
    with concurrent.futures.ThreadPoolExecutor(len(seeds)) as pool:
        runs = pool.map(
            lambda s: common.run_worker(
                "deploy_latency.py", args.backend, dict(spec, seed=s),
                os.path.join(tmp, f"accuracy{s}")), seeds)
        return {"n_train": spec["n_train"], "epochs": spec["epochs"],
                "n_test": spec["n_test"] or 10_000, "runs": list(runs)}


# --------------------------------------------------------------------------
# Rendering


def _widths(widths):
    if not widths:
        return ""
    shown = ", ".join(str(w) for w in widths[:8])
    return shown + (", …" if len(widths) > 8 else "")


def render(data):
    b = data["block"]
    lines = [
        f"Our models planned and exported on the "
        f"{data.get('backend', 'tensorflow')} backend.", "",
        f"Channel block measured first: **{b['block']}** "
        f"({b['runtime']} {b['version']}, {b['threads']} thread; step "
        "widths tried and the share of channel counts that cost as much as "
        "the next multiple: " + ", ".join(
            f"{k}: {v:.0%}" for k, v in b["held"].items()) + "). Each side's "
        "speed-up is against its own dense model; ÷ MACs = speed-up / MAC "
        "reduction.", ""]
    add = lines.append
    for name, variants in data["models"].items():
        add(f"**{TITLES[name]}**")
        add("")
        runtimes = [r for r in ("onnx", "litert")
                    if any(r in v.get("ms", {}) for v in variants)]
        head = ["variant", "MACs", "MAC reduction", "params",
                "kept widths (groups)"]
        for runtime in runtimes:
            for batch in BATCHES:
                rt = "ONNX Runtime" if runtime == "onnx" else "LiteRT"
                head += [f"{rt} b{batch} ms", "speed-up (÷ MACs)"]
        add("| " + " | ".join(head) + " |")
        add("|" + "---|" * len(head))
        dense = {v["side"]: v for v in variants
                 if v["label"] in ("dense", "Torch-Pruning dense")}
        for v in variants:
            base = dense[v["side"]]
            reduction = base["macs"] / v["macs"]
            cells = [v["label"], f"{v['macs']:,}", f"{reduction:.2f}×",
                     f"{v['params']:,}", _widths(v.get("widths"))
                     if v["label"] not in ("dense", "Torch-Pruning dense")
                     else ""]
            for runtime in runtimes:
                for batch in BATCHES:
                    ms = v.get("ms", {}).get(runtime, {}).get(str(batch))
                    ref = base.get("ms", {}).get(runtime, {}).get(str(batch))
                    if ms is None or ref is None:
                        cells += ["", ""]
                        continue
                    speed = ref / ms
                    cells += [f"{ms:.2f}",
                              f"{speed:.2f}× ({speed / reduction:.2f})"]
            add("| " + " | ".join(cells) + " |")
        diffs = [v["onnx_diff"] for v in variants if "onnx_diff" in v]
        add("")
        add(f"Our ONNX files vs Keras (folded, 2 random inputs): largest "
            f"difference {max(diffs):.1e} of the output range.")
        add("")
    if data.get("accuracy"):
        lines += _render_accuracy(data["accuracy"])
    return "\n".join(lines).rstrip("\n")


def _render_accuracy(acc):
    runs = acc["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    lines = [
        f"**The accuracy cost of rounding** (Fashion-MNIST, ResNet-style "
        f"CNN {ACC_WIDTHS}, {acc['n_train']:,} training images, dense "
        f"{acc['epochs']} epoch(s) at batch {ACC_BATCH}, each pruned model "
        f"fine-tuned 1 epoch; "
        f"{acc.get('n_test', 10_000):,} test images; seeds {seeds}, "
        "mean)", "",
        "| variant | MACs | kept widths | test acc. pruned | test acc. "
        "fine-tuned | vs ours 50% |", "|---|---|---|---|---|---|"]
    labels = [r["label"] for r in runs[0]["rows"]]

    def mean(label, key):
        values = [row[key] for r in runs for row in r["rows"]
                  if row["label"] == label]
        return sum(values) / len(values)

    base = mean("ours 50%", "accuracy")
    for label in labels:
        row = runs[0]["rows"][labels.index(label)]
        pruned = "" if label == "dense" else f"{mean(label, 'pruned'):.2%}"
        delta = ("" if label in ("dense", "ours 50%") else
                 f"{(mean(label, 'accuracy') - base) * 100:+.2f} pt")
        lines.append(
            f"| {label} | {row['macs']:,} | {_widths(row.get('widths'))} | "
            f"{pruned} | {mean(label, 'accuracy'):.2%} | {delta} |")
    return lines


def main(argv=None):
    parser = common.parser(
        "deploy_latency.py", __doc__,
        quick="a few timing rounds (a smoke run: its figures are not "
              "measurements)")
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help="models, comma- or space-separated (default: "
                             f"{','.join(MODELS)})")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="skip the accuracy cost of rounding (step 5)")
    parser.add_argument("--backend", default="tensorflow",
                        choices=common.BACKENDS,
                        help="the Keras backend that plans and exports our "
                             "models (default tensorflow; LiteRT files only "
                             "there)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
