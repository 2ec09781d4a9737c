"""`measure_channel_block`: the channel block of a deploy runtime, measured.

A runtime's convolution kernels work on blocks of output channels: ONNX
Runtime's CPU kernels (MLAS, x86-64) take 16 at a time, so a layer with 17
output channels costs as much as one with 32, and one with 12 as much as
16 (plus reorder nodes between blocked and plain layouts). A structured
plan whose kept counts are multiples of that block turns its MAC reduction
into speed; `plan_pruning(..., round_to=block, rounding="nearest")` does
that. The block depends on the runtime, its version and the CPU, so it is
measured here, not assumed.

How: one 1x1 convolution + ReLU (the pointwise layer that dominates
MobileNet-style networks) is built as an ONNX graph for every output
channel count 1..`max_channels` (`in_channels` inputs, `spatial` x
`spatial` pixels, batch 1), and ONNX Runtime times each (`threads`
intra-op threads, sequential execution, full graph optimization): warm-up
calls, then `rounds` rounds in which every graph runs once (interleaved,
so load on the machine falls on every count alike); the medians are kept.
A block B holds when, for at least 90 % of the counts c, c channels cost
nearly as much as the next multiple of B: the difference is at most half
of what B channels cost on average (the slope from the first count to the
last, times B), where a runtime whose cost grows with every channel
shows a difference of up to B - 1 channels' cost. The largest B in (1, 2,
4, ..., max_channels / 2) that holds is the block.
"""

import importlib.util
import math
import numbers
import time

import numpy as np

RUNTIMES = ("onnxruntime",)
# A block holds when this share of the counts costs within TOLERANCE x
# (B channels' average cost) of the block's end.
SHARE = 0.9
TOLERANCE = 0.5


class ChannelBlock:
    """What `measure_channel_block` measured.

    Attributes:
        block: the channel block (round kept channels to a multiple of it).
        runtime: the runtime ("onnxruntime") and `version`.
        threads: intra-op threads used.
        channels: the output channel counts timed (1..max_channels).
        seconds: the median time of each count's convolution, in seconds.
        held: block -> share of counts that follow a step function of
            that width (the largest with share >= 0.9 is `block`).
        setting: in_channels, spatial, rounds.
    """

    def __init__(self, block, runtime, version, threads, channels, seconds,
                 held, setting):
        self.block = block
        self.runtime = runtime
        self.version = version
        self.threads = threads
        self.channels = channels
        self.seconds = seconds
        self.held = held
        self.setting = setting

    def to_dict(self):
        return dict(vars(self))

    def summary(self):
        """The block, why, and the times per count."""
        lines = [
            f"{self.runtime} {self.version}, {self.threads} thread(s): "
            f"channel block {self.block} (1x1 convolution, "
            f"{self.setting['in_channels']} -> c channels, "
            f"{self.setting['spatial']}x{self.setting['spatial']}, batch 1, "
            f"median of {self.setting['rounds']} interleaved rounds)",
            "step widths tried (share of counts that cost as much as the "
            "next multiple): " + ", ".join(
                f"{b}: {share:.0%}" for b, share in self.held.items()),
            "microseconds per output channel count:",
        ]
        row = []
        for c, s in zip(self.channels, self.seconds):
            row.append(f"{c}:{s * 1e6:.0f}")
            if len(row) == 16:
                lines.append("  " + " ".join(row))
                row = []
        if row:
            lines.append("  " + " ".join(row))
        return "\n".join(lines)

    def __repr__(self):
        return (f"ChannelBlock(block={self.block}, runtime={self.runtime!r}, "
                f"threads={self.threads})")


def _check(runtime, threads, max_channels, in_channels, spatial, rounds):
    if runtime not in RUNTIMES:
        raise ValueError(
            f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
    for name, value, low in (("threads", threads, 1),
                             ("max_channels", max_channels, 4),
                             ("in_channels", in_channels, 1),
                             ("spatial", spatial, 1),
                             ("rounds", rounds, 1)):
        if (not isinstance(value, numbers.Integral)
                or isinstance(value, bool) or value < low):
            raise ValueError(
                f"{name} must be an integer >= {low}, got {value!r}.")
    missing = [name for name in ("onnx", "onnxruntime")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"measure_channel_block needs {', '.join(missing)}: pip install "
            "'keras-prune[export]'.")


def _session(cout, cin, spatial, threads, rng):
    import onnx
    import onnxruntime
    from onnx import TensorProto
    from onnx import helper
    from onnx import numpy_helper

    kernel = rng.standard_normal((cout, cin, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "channel_block",
        [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [1, cin, spatial, spatial])],
        [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, cout, spatial, spatial])],
        [numpy_helper.from_array(kernel, "w"),
         numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options,
        providers=["CPUExecutionProvider"])


def held_share(channels, seconds, block):
    """The share of `channels` whose time is within TOLERANCE x `block`
    channels' average cost of the time of the next multiple of `block`
    (among the counts whose next multiple was timed)."""
    time_of = dict(zip(channels, seconds))
    slope = max(0.0, (seconds[-1] - seconds[0])
                / max(1, channels[-1] - channels[0]))
    checked = [c for c in channels
               if int(math.ceil(c / block) * block) in time_of]
    if not checked:
        return 0.0
    good = sum(
        time_of[int(math.ceil(c / block) * block)] - time_of[c]
        <= TOLERANCE * block * slope
        for c in checked)
    return good / len(checked)


def block_of(channels, seconds, max_channels):
    """(block, {width: share}) from the timings (see the module)."""
    held = {}
    width = 1
    while width <= max_channels // 2:
        held[width] = held_share(channels, seconds, width)
        width *= 2
    block = max(b for b, share in held.items() if share >= SHARE or b == 1)
    return block, held


def measure_channel_block(runtime="onnxruntime", *, threads=1,
                          max_channels=64, in_channels=64, spatial=28,
                          rounds=30, seed=0):
    """The output-channel block of a deploy runtime's convolutions.

    Times a 1x1 convolution for every output channel count up to
    `max_channels` on the runtime (see the module for the protocol) and
    returns the step width of its cost: round a structured plan's kept
    channels to it (`plan_pruning(..., round_to=block.block,
    rounding="nearest")`) so that the smaller model's speed follows its
    MACs. Takes a few seconds.

    Args:
        runtime: `"onnxruntime"` (CPU execution provider).
        threads: intra-op threads, as the model will be deployed.
        max_channels: the largest count timed (the largest block found is
            half of it).
        in_channels, spatial: the convolution's input channels and its
            height = width.
        rounds: interleaved timing rounds (medians are kept).
        seed: for the random kernels and input.

    Returns:
        A `ChannelBlock` (`.block`, `.summary()`, the times).

    Example:

    ```python
    block = measure_channel_block()          # 16 with ONNX Runtime on x86
    plan = plan_pruning(model, ratio=0.5, round_to=block.block,
                        rounding="nearest")
    ```
    """
    _check(runtime, threads, max_channels, in_channels, spatial, rounds)
    import onnxruntime

    rng = np.random.default_rng(seed)
    channels = list(range(1, max_channels + 1))
    sessions = [_session(c, in_channels, spatial, threads, rng)
                for c in channels]
    x = rng.standard_normal((1, in_channels, spatial, spatial)).astype(
        np.float32)
    for session in sessions:
        for _ in range(3):
            session.run(None, {"x": x})
    times = [[] for _ in channels]
    for r in range(rounds):
        # A rotating start: no count always runs first or last.
        for i in np.roll(np.arange(len(channels)), r):
            start = time.perf_counter()
            sessions[i].run(None, {"x": x})
            times[i].append(time.perf_counter() - start)
    seconds = [float(np.median(t)) for t in times]
    block, held = block_of(channels, seconds, max_channels)
    return ChannelBlock(
        block, runtime, onnxruntime.__version__, threads, channels, seconds,
        held, {"in_channels": in_channels, "spatial": spatial,
               "rounds": rounds})
