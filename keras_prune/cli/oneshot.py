"""`keras-prune oneshot`: Wanda, SparseGPT or magnitude pruning of a saved
model at once, calibrated on inputs from a .npy / .npz file, written
stripped, with the per-layer reconstruction report."""

import os
import warnings
import zipfile

import numpy as np

import keras_prune_cli
from keras_prune.cli import common
from keras_prune.cli.choices import default_of
from keras_prune.core import registry
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.core.walk import all_layers
from keras_prune.criteria import calibrate
from keras_prune.methods.oneshot import NonFiniteScoresError
from keras_prune.methods.oneshot import prune_now
from keras_prune.methods.sparsegpt import SparseGPT

NAME = "oneshot"
METHODS = ("wanda", "sparsegpt", "magnitude")
CALIBRATED = ("wanda", "sparsegpt")
BATCH_SIZE = default_of(prune_now, "batch_size")
EXAMPLES = """\
examples:
  keras-prune oneshot model.keras -o pruned.keras --method wanda \\
      --sparsity 0.5 --calibration x.npy
                                        half of every output row's inputs,
                                        scored |w| * ||x|| on the inputs in x.npy
  keras-prune oneshot model.keras -o pruned.keras --method sparsegpt \\
      --pattern 2:4 --calibration x.npy
                                        2 zeros in every 4 inputs, kept weights
                                        updated to make up for the pruned ones
  keras-prune oneshot backbone.keras -o pruned.keras --method sparsegpt \\
      --sparsity 0.5 --calibration tokens.npz --batch-size 8
                                        a keras-hub backbone: tokens.npz holds
                                        token_ids and padding_mask
  keras-prune oneshot model.keras -o pruned.keras --method magnitude \\
      --sparsity 0.5                    the baseline: no calibration data
"""


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Prunes a trained model at once, without training "
        "(keras_prune.prune_now with criterion wanda, sparsegpt or "
        "magnitude), the same fraction of every output row (or an M:N "
        "pattern), strips the pruning wrappers and writes a plain Keras "
        "model whose pruned weights are exact zeros, then prints its "
        "SparsityReport and, with calibration data, each layer's "
        "reconstruction error ||WX - W^X||^2 / ||WX||^2, worst first. Wanda "
        "and SparseGPT prune Dense and EinsumDense layers (keras-hub's "
        "attention and feed-forward layers too); magnitude every prunable "
        "weight. The output is not compiled; see docs/oneshot.md.",
    )
    parser.add_argument(
        "model", metavar="MODEL.keras", help="the model to prune (only read)"
    )
    common.add_output(parser)
    parser.add_argument(
        "--method",
        choices=METHODS,
        required=True,
        help="wanda: |w| * ||x_j|| on the calibration inputs; sparsegpt: "
        "masks and updates of the kept weights from the inputs' X^T X; "
        "magnitude: |w|, no calibration data",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        metavar="FRACTION",
        help="fraction of every output row's weights set to zero, in "
        "[0, 1), e.g. 0.5 (or give --pattern)",
    )
    parser.add_argument(
        "--pattern",
        type=keras_prune_cli.n_m_pattern,
        metavar="M:N",
        help="M zeros in every N consecutive inputs of each output "
        "(sparsity_m_by_n=(M, N)), e.g. 2:4 or 4:8, instead of --sparsity",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE",
        help="for wanda and sparsegpt: the model's inputs, no labels: a .npy "
        "file (np.save of one array) or a .npz file (np.savez of arrays "
        "named as the model's inputs, e.g. token_ids and padding_mask); a "
        "few hundred samples are typical (only read)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help=f"calibration samples per batch (default: {BATCH_SIZE})",
    )
    parser.add_argument(
        "--damping",
        type=float,
        help="sparsegpt: lambda = DAMPING * mean(diag(X^T X)) added to its "
        f"diagonal (default: {default_of(SparseGPT, 'damping')})",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        metavar="COLUMNS",
        help="sparsegpt: columns per block of mask selection and update "
        f"(default: {default_of(SparseGPT, 'block_size')})",
    )
    parser.add_argument(
        "--no-sequential",
        action="store_true",
        help="sparsegpt: measure every layer in one pass on the dense "
        "model, instead of each block on the outputs of the pruned blocks "
        "before it (faster, usually a little worse)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="names of layers to leave dense (repeatable)",
    )
    common.add_json(parser, "the report and the reconstruction errors")
    common.add_unsafe(parser)


def run(args):
    sparsity = _check_options(args)
    criterion = args.method
    if args.method == "sparsegpt":
        criterion = {"name": "sparsegpt", "config": _solver_config(args)}
    common.check_output(args, args.output, [args.model, args.calibration])
    data = _read_calibration(args) if args.calibration else None
    model = common.load(args.model, args.unsafe)
    _check_model(args, model)
    batch_size = args.batch_size or BATCH_SIZE
    if data is not None:
        _check_calibration(args, data, model)
    # Per output row, as the papers (and N:M per layer): magnitude too, so
    # that the three methods are compared on the same masks' shape.
    scope = "layer" if args.pattern else "row"
    common.log(_plan(args, data))
    try:
        with (common.progress_on_stderr(),
              warnings.catch_warnings(record=True) as caught):
            # A model that clone_model cannot rebuild (a keras-hub backbone)
            # is copied whole; the advice to use inplace=True is for Python.
            warnings.filterwarnings(
                "ignore", message=r"prune_low_magnitude: .* copied whole")
            pruned, report = prune_now(
                model, sparsity, scope=scope, criterion=criterion,
                exclude=args.exclude, sparsity_m_by_n=args.pattern,
                batch_size=batch_size, calibration_data=data,
            )
        _show(args, caught)
    except NonFiniteScoresError as err:
        raise common.CommandError(f"cannot prune {args.model}: {err}") from None
    except ValueError as err:
        args.parser.error(_in_command_words(args, err))
    common.write_atomically(args.output, strip_pruning(pruned).save)
    common.log(
        f"wrote {args.output}: pruned to {report.prunable_sparsity:.1%} of "
        "its prunable weights, stripped (plain Keras layers), not compiled"
    )
    if args.json:
        found = report.to_dict()
        found["reconstruction"] = (None if report.reconstruction is None
                                   else report.reconstruction.to_dict())
        common.print_json(found)
        return 0
    print(report.summary())
    if report.reconstruction is not None:
        print()
        print(report.reconstruction)
    return 0


def _check_options(args):
    """Usage errors of the command line alone; the sparsity to prune to."""
    if args.sparsity is not None and args.pattern is not None:
        args.parser.error(
            f"--sparsity {args.sparsity} and --pattern "
            f"{args.pattern[0]}:{args.pattern[1]} both set how much is "
            f"pruned; give one (--pattern {args.pattern[0]}:"
            f"{args.pattern[1]} prunes {args.pattern[0] / args.pattern[1]:g})."
        )
    if args.sparsity is None and args.pattern is None:
        args.parser.error(
            "give --sparsity FRACTION (e.g. 0.5, of every output row) or "
            "--pattern M:N (e.g. 2:4)."
        )
    if args.sparsity is not None and not 0 <= args.sparsity < 1:
        args.parser.error(
            f"--sparsity must be in [0, 1), got {args.sparsity}: it is the "
            "fraction of every output row's weights set to zero, e.g. 0.5."
        )
    if args.method in CALIBRATED and args.calibration is None:
        args.parser.error(
            f"--method {args.method} scores with the layers' inputs: pass "
            "--calibration FILE (.npy or .npz of the model's inputs), or use "
            "--method magnitude."
        )
    if args.method not in CALIBRATED:
        for flag, given in (("--calibration", args.calibration),
                            ("--batch-size", args.batch_size)):
            if given is not None:
                args.parser.error(
                    f"{flag} is for --method wanda or sparsegpt; --method "
                    f"{args.method} needs only the weights: leave it out."
                )
    if args.method != "sparsegpt":
        for flag, given in (("--damping", args.damping),
                            ("--block-size", args.block_size),
                            ("--no-sequential", args.no_sequential or None)):
            if given is not None:
                args.parser.error(
                    f"{flag} is an option of --method sparsegpt, not of "
                    f"--method {args.method}: leave it out."
                )
    if args.batch_size is not None and args.batch_size < 1:
        args.parser.error(
            f"--batch-size must be a positive number of samples, got "
            f"{args.batch_size}; e.g. {BATCH_SIZE}."
        )
    if args.calibration is not None and not args.calibration.endswith(
            (".npy", ".npz")):
        args.parser.error(
            f"--calibration {args.calibration!r} must be a .npy file (one "
            "array, np.save) or a .npz file (arrays by input name, "
            "np.savez) of the model's inputs."
        )
    if args.pattern is not None:
        m, n = args.pattern
        return m / n
    return args.sparsity


def _solver_config(args):
    """SparseGPT's settings, usage errors for values it refuses."""
    config = {"sequential": not args.no_sequential}
    if args.damping is not None:
        config["damping"] = args.damping
    if args.block_size is not None:
        config["block_size"] = args.block_size
    try:
        SparseGPT(**config)
    except ValueError as err:
        args.parser.error(
            str(err).replace("sparsegpt: block_size", "--block-size")
            .replace("sparsegpt: damping", "--damping"))
    return config


def _read_calibration(args):
    """The calibration file's array (.npy) or dict of arrays (.npz), or a
    CommandError saying why it cannot be read."""
    path = args.calibration
    if not os.path.exists(path):
        raise common.CommandError(f"--calibration {path}: no such file.")
    if os.path.isdir(path):
        raise common.CommandError(
            f"--calibration {path} is a directory, not a .npy or .npz file."
        )
    if not _has_numpy_header(path):
        kind = "a .npy file" if path.endswith(".npy") else "a .npz archive"
        raise common.CommandError(
            f"--calibration {path} is not {kind} (NumPy's header is missing); "
            "write it with " + ("np.save." if path.endswith(".npy")
                                else "np.savez.")
        )
    try:
        # No pickles: loading an object array could run code.
        with open(path, "rb") as file:
            loaded = np.load(file, allow_pickle=False)
            if path.endswith(".npz"):
                data = {name: loaded[name] for name in loaded.files}
            else:
                data = np.asarray(loaded)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        kind = ("np.save of one array" if path.endswith(".npy")
                else "np.savez of arrays named as the model's inputs")
        raise common.CommandError(
            f"cannot read --calibration {path} ({type(err).__name__}: "
            f"{common.one_line(err)}); it must be written by {kind}, with "
            "numbers, not Python objects."
        ) from None
    if isinstance(data, dict) and not data:
        raise common.CommandError(
            f"--calibration {path} holds no arrays; save the model's inputs "
            "with np.savez(FILE, name=array, ...)."
        )
    return data


def _has_numpy_header(path):
    """Whether the file starts as np.save (or np.savez, a zip) writes it:
    numpy would take any other .npy for a pickle, and say so."""
    if path.endswith(".npz"):
        return zipfile.is_zipfile(path)
    with open(path, "rb") as file:
        return file.read(6) == b"\x93NUMPY"


def _check_model(args, model):
    """A CommandError for a model this command cannot prune (the file, not
    the command line, is the cause)."""
    if pruned_layers(model):
        raise common.CommandError(
            f"{args.model} is already pruned (it holds pruning wrappers): run "
            "`keras-prune strip` on it first, then prune the stripped model."
        )
    excluded = set(args.exclude or [])
    prunable = [
        layer for layer in all_layers(model)
        if layer is not model and layer.name not in excluded
        and registry.prunable_weights(layer)
    ]
    if args.method in CALIBRATED:
        prunable = [layer for layer in prunable
                    if isinstance(layer, calibrate.SUPPORTED)]
    if not prunable:
        what = ("is a Dense or EinsumDense layer with a prunable kernel, "
                f"the layers --method {args.method} prunes"
                if args.method in CALIBRATED
                else "holds a weight keras-prune prunes")
        left = " outside --exclude" if excluded else ""
        raise common.CommandError(
            f"{args.model} has nothing to prune: none of its layers{left} "
            f"{what} (`keras-prune report {args.model}` gives each weight's "
            "reason)."
        )


def _check_calibration(args, data, model):
    """A usage error naming the file when its arrays do not fit the
    model's inputs (checked whole, before any work)."""
    try:
        calibrate.calibration_batches(data, model, max(_samples(data), 1))
    except (ValueError, TypeError) as err:
        message = (str(err)
                   .replace("calibration_data: batch 0",
                            f"--calibration {args.calibration}")
                   .replace(" is a dict (", " holds named arrays (")
                   .replace(" is ndarray;", " holds one array;")
                   .replace(" is [", " holds ["))
        if "the model takes one array input" in message:
            message += " Save it as a .npy file (np.save)."
        if "the model takes a dict of" in message:
            message += (" Save its inputs under those names in a .npz file "
                        "(np.savez(FILE, name=array, ...)).")
        args.parser.error(_in_command_words(args, message))


def _show(args, caught):
    """The library's own warnings as one `warning:` line each, in the
    command's words; any other warning as Python shows it."""
    for found in caught:
        message = str(found.message)
        if message.startswith("sparsegpt:"):
            common.log(f"warning: {_in_command_words(args, message)}")
        else:
            warnings.showwarning(found.message, found.category,
                                 found.filename, found.lineno)


def _in_command_words(args, err):
    """A library message with its argument names as the options."""
    return (str(err)
            .replace("calibration_data=", "--calibration FILE")
            .replace("calibration_data", f"--calibration {args.calibration}")
            .replace("exclude / per_layer", "--exclude")
            .replace("exclude names", "--exclude names"))


def _plan(args, data):
    """The progress line saying what is about to run."""
    how = (f"{args.pattern[0]}:{args.pattern[1]}" if args.pattern
           else f"{args.sparsity:g} of every output row")
    if data is None:
        return f"pruning {args.model} by magnitude, {how}"
    return (f"pruning {args.model} by {args.method}, {how}, on "
            f"{_samples(data):,} calibration samples from {args.calibration}")


def _samples(data):
    """The number of samples in the calibration arrays (0 for a scalar)."""
    first = next(iter(data.values())) if isinstance(data, dict) else data
    return int(first.shape[0]) if first.ndim else 0
