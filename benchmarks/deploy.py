"""Deployment of a pruned model: post-training int8 vs sparsity-preserving
QAT, and the exported files' sizes, on each backend.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/deploy.py           # ~5 min
    .venv/bin/python benchmarks/deploy.py --write   # and results/deploy.md

Each backend of `--backends` runs in its own worker process (KERAS_BACKEND
is fixed at import). LeNet-300-100 is trained densely on Fashion-MNIST
(`--epochs`, Adam 1e-3, batch 128), pruned one-shot to 90 % (`prune_now`,
global magnitude) and fine-tuned 1 epoch with the masks held. Then, from
that pruned model, with the same extra training budget (`--qat-epochs`, Adam
1e-4):

- PTQ: float fine-tuning, then `keras_prune.quantize(model, "int8")`;
- PQAT: `prune_preserving_qat` fine-tuning, then the same int8 quantization.

Reported: test accuracy of the float and the int8 model; the largest change
of a logit from the model that was trained to its int8 version; whether
every pruned zero is still zero in the int8 kernels. Then the stripped float
model exported with `keras_prune.export` in every format the backend writes,
each file run back (onnxruntime, `tf.saved_model.load`, LiteRT interpreter)
and compared with Keras's outputs.
"""

import os
import tempfile

import common


def work(spec, log):
    """PTQ vs PQAT and the exports, on this worker's backend."""
    import keras
    import numpy as np

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist

    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, x_test = x.reshape(-1, 784), x_test.reshape(-1, 784)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(x, y, batch_size=128, epochs=spec["epochs"], verbose=0)
    pruned, _ = keras_prune.prune_now(model, 0.9)
    pruned.compile(keras.optimizers.Adam(1e-3), loss)
    pruned.fit(x, y, batch_size=128, epochs=1, verbose=0)
    stripped = keras_prune.strip_pruning(pruned)
    zeros = [
        keras.ops.convert_to_numpy(layer.kernel) == 0
        for layer in stripped.layers
    ]

    def accuracy(m):
        return float(np.mean(np.argmax(m.predict(x_test, verbose=0), -1)
                             == y_test))

    def int8_row(name, trained):
        float_model = keras_prune.strip_pruning(trained) \
            if keras_prune.core.layers.pruned_layers(trained) else trained
        int8 = keras_prune.quantize(float_model, "int8")
        reference = trained.predict(x_test, verbose=0)
        out = int8.predict(x_test, verbose=0)
        kept = all(
            np.array_equal(
                keras.ops.convert_to_numpy(layer._kernel)[z], np.zeros(z.sum(),
                                                                       "int8"))
            for layer, z in zip(int8.layers, zeros)
        )
        return {
            "method": name,
            "float_acc": accuracy(float_model),
            "int8_acc": accuracy(int8),
            "max_logit_change": float(np.max(np.abs(out - reference))),
            "logit_scale": float(np.max(np.abs(reference))),
            "zeros_kept": bool(kept),
        }

    rows = []
    keras.utils.set_random_seed(1)
    # PTQ baseline: the same wrapped copy with its masks held, trained in
    # float (no fake quantization).
    float_ft = keras_prune.prune_preserving_qat(stripped)
    for wrapper in keras_prune.core.layers.pruned_layers(float_ft):
        wrapper.qat_mode = None
    float_ft.compile(keras.optimizers.Adam(1e-4), loss)
    float_ft.fit(x, y, batch_size=128, epochs=spec["qat_epochs"],
                 verbose=0)
    rows.append(int8_row("PTQ (float fine-tuning)", float_ft))
    keras.utils.set_random_seed(1)
    qat = keras_prune.prune_preserving_qat(stripped)
    qat.compile(keras.optimizers.Adam(1e-4), loss)
    qat.fit(x, y, batch_size=128, epochs=spec["qat_epochs"], verbose=0)
    rows.append(int8_row("PQAT", qat))
    log("PTQ and PQAT done")

    exports = []
    backend = keras.backend.backend()
    sample = x_test[:256]
    expected = stripped.predict(sample, verbose=0)
    formats = [("onnx", "m.onnx", {})]
    if backend != "torch":
        formats.append(("tf_saved_model", "sm", {}))
    if backend == "tensorflow":
        import tensorflow as tf

        formats += [
            ("litert", "m.tflite", {}),
            ("litert", "sparse.tflite", {"sparsity": True}),
            ("litert", "int8.tflite",
             {"optimizations": [tf.lite.Optimize.DEFAULT]}),
        ]
    with tempfile.TemporaryDirectory() as directory:
        for fmt, name, kwargs in formats:
            path = os.path.join(directory, name)
            result = keras_prune.export(stripped, path, format=fmt, **kwargs)
            out = run_back(fmt, path, sample)
            label = fmt + (" sparsity=True" if kwargs.get("sparsity") else "")
            if "optimizations" in kwargs:
                label += " Optimize.DEFAULT (dynamic int8)"
            exports.append({
                "format": label,
                "bytes": result.bytes,
                "zipped_bytes": result.zipped_bytes,
                "max_abs_diff": float(np.max(np.abs(out - expected))),
            })
    size = keras_prune.model_size(stripped)
    return {
        "backend": backend,
        "qat": rows,
        "exports": exports,
        "dense_bytes": size.dense_bytes,
        "packed_bytes": size.packed_bytes,
        "sparsity": size.sparsity,
    }


def run_back(fmt, path, x):
    import numpy as np

    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path)
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        return loaded.serve(x).numpy()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return np.asarray(out)


def measure(args, data):
    data["epochs"], data["qat_epochs"] = args.epochs, args.qat_epochs
    data["results"] = common.run_backends(
        "deploy.py", args.backends,
        {"epochs": args.epochs, "qat_epochs": args.qat_epochs}, threads=0)


def render(data):
    results = data["results"]
    lines = [
        f"LeNet-300-100, Fashion-MNIST, {data['epochs']} dense epochs, "
        f"one-shot 90 % + 1 epoch with masks held, then "
        f"{data['qat_epochs']} epoch(s) at Adam 1e-4 of float fine-tuning "
        "(PTQ) or PQAT.",
        "",
        "| backend | method | float acc. | int8 acc. | max logit change "
        "trained → int8 | zeros kept in int8 |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for q in r["qat"]:
            lines.append(
                f"| {r['backend']} | {q['method']} | {q['float_acc']:.2%} "
                f"| {q['int8_acc']:.2%} | {q['max_logit_change']:.2e} "
                f"(of {q['logit_scale']:.1f}) | "
                f"{'yes' if q['zeros_kept'] else 'NO'} |"
            )
    lines += [
        "",
        "Exported files of the stripped 90 % model (dense float32 weights: "
        f"{results[0]['dense_bytes']:,} B; packed: "
        f"{results[0]['packed_bytes']:,} B); largest difference from "
        "Keras's outputs on 256 test images, each file run back:",
        "",
        "| backend | format | bytes | zipped | ratio vs dense | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for e in r["exports"]:
            lines.append(
                f"| {r['backend']} | {e['format']} | {e['bytes']:,} "
                f"| {e['zipped_bytes']:,} "
                f"| {r['dense_bytes'] / e['bytes']:.1f}× "
                f"| {e['max_abs_diff']:.1e} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser("deploy.py", __doc__, backends=common.BACKENDS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--write-results", dest="write", action="store_true",
                        help="the same as --write")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
