"""One-shot pruning under Keras's distribution API: the same masks as on one
device, and the memory each device holds and peaks at.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/oneshot_distribution.py --write
    .venv/bin/python benchmarks/oneshot_distribution.py --quick

One JAX worker process per setting and method (keras.distribution runs on
JAX; a fresh process, so no run sees another's leftovers), with `--devices`
(8) simulated CPU devices (XLA's host platform device count). The model: a
`--inputs` → `--hidden` → `--inputs` MLP (1024 → 4096 → 1024, relu),
random weights (seed 0), calibration data `--rows` (256) rows of N(0, 1)
inputs whose features 0-3 are scaled ×20-×80 (outlier features). Pruned
by `prune_now` at 50 %: Wanda and SparseGPT per output row, magnitude with
the global threshold; under four settings, each model built inside its
distribution:

- one device: no distribution;
- DataParallel: every device, calibration batches sharded;
- ModelParallel: mesh (2, devices / 2) ("batch", "model"), the two kernels
  sharded over "model" (first: columns, second: rows) by a LayoutMap (its
  keys match whole variable paths); the pruned copy's masks follow their
  kernels' layout;
- ModelParallel, masks replicated: the same, with LayoutMap keys naming the
  masks (`.*first/mask_0_kernel`) replicated, which the library respects.

Measured per setting and method: whether masks and kernels equal the one
device's (masks exactly, kernels to 1e-5); the bytes of live JAX arrays on
each device (every buffer of every array's shards, each buffer once)
before `prune_now` (the user's model), at its peak during `prune_now`, and
after it (the user's model and the pruned copy); the host's peak of
Python/NumPy allocations during `prune_now` (tracemalloc: the statistics,
the Gram matrices, the solver); the wall time. The peak is sampled when
each layer's calibration input arrives (the moment the forward pass holds
the most) and by a thread every millisecond: it sees every array alive,
garbage not yet collected included, not XLA's scratch inside one operation
(there the peak is one operation's temporaries above it). Device 0 is
reported apart: on simulated CPU devices it is where JAX places host
arrays turned into device arrays whole (Keras initializing a variable
before laying it out, a NumPy value assigned). Device memory counters
(`memory_stats()`) do not exist on CPU devices; on a GPU they would give
the allocator's exact peak.
"""

import collections
import gc
import os
import re
import statistics
import tempfile
import threading
import time
import tracemalloc

import numpy as np

import common

SETTINGS = ("one device", "DataParallel", "ModelParallel",
            "ModelParallel, masks replicated")
METHODS = ("wanda", "sparsegpt", "magnitude")


def calibration(rows, inputs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, inputs))
    x[:, :4] *= [20.0, 40.0, 60.0, 80.0]
    return x.astype("float32")


class DeviceBytes:
    """Bytes of live JAX arrays per device: `sample()` now, `peak` the
    largest seen per device since `start()` (a thread samples every
    millisecond until `stop()`)."""

    def __init__(self, jax):
        self.jax = jax
        self.peak = collections.Counter()
        self._running = False

    def sample(self):
        buffers = {}
        for array in self.jax.live_arrays():
            try:
                for shard in array.addressable_shards:
                    data = shard.data
                    # Keras's Variable.__array__ leaves a second Array on the
                    # same buffer: count each buffer once.
                    buffers[(str(shard.device),
                             data.unsafe_buffer_pointer())] = data.nbytes
            except Exception:  # deleted meanwhile (the sampling thread)
                continue
        found = collections.Counter()
        for (device, _), size in buffers.items():
            found[device] += size
        for device, size in found.items():
            self.peak[device] = max(self.peak[device], size)
        return found

    def start(self):
        self.peak = collections.Counter()
        self._running = True
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while self._running:
            self.sample()
            time.sleep(0.001)

    def stop(self):
        self._running = False
        self._thread.join()
        self.sample()
        return dict(self.peak)


def work(spec, log):
    import jax
    import keras

    import keras_prune
    from keras_prune.core.layers import pruned_layers
    from keras_prune.criteria import calibrate

    devices = jax.devices()
    if len(devices) != spec["devices"]:
        raise SystemExit(f"expected {spec['devices']} devices, JAX has "
                         f"{len(devices)} (XLA_FLAGS={os.environ.get('XLA_FLAGS')})")
    memory = DeviceBytes(jax)
    # The moment a layer's calibration input arrives is when the forward
    # pass holds the most: sample there too, not only on the thread's clock.
    update = calibrate.InputStatistics.update

    def observed(self, inputs):
        memory.sample()
        return update(self, inputs)

    calibrate.InputStatistics.update = observed
    x = calibration(spec["rows"], spec["inputs"])

    def distribution(setting):
        if setting == "one device":
            return None
        if setting == "DataParallel":
            return keras.distribution.DataParallel(devices=devices)
        mesh = keras.distribution.DeviceMesh(
            (2, len(devices) // 2), ["batch", "model"], devices)
        layout = keras.distribution.LayoutMap(mesh)
        # Keys are regular expressions matched against the whole path; the
        # pruned copy's masks are `prune_low_magnitude_<layer>/mask_0_kernel`.
        layout["first/kernel"] = (None, "model")
        layout["second/kernel"] = ("model", None)
        if setting.endswith("masks replicated"):
            layout[".*first/mask_0_kernel"] = (None, None)
            layout[".*second/mask_0_kernel"] = (None, None)
        return keras.distribution.ModelParallel(
            layout_map=layout, batch_dim_name="batch")

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((spec["inputs"],))
        hidden = keras.layers.Dense(spec["hidden"], activation="relu",
                                    name="first")(inputs)
        return keras.Model(inputs, keras.layers.Dense(
            spec["inputs"], name="second")(hidden))

    def prune(model, method):
        if method == "magnitude":
            return keras_prune.prune_now(model, 0.5, scope="global")
        return keras_prune.prune_now(model, 0.5, criterion=method,
                                     calibration_data=x, batch_size=64)

    setting, method = spec["setting"], spec["method"]
    keras.distribution.set_distribution(distribution(setting))
    try:
        model = build()
        gc.collect()
        before = memory.sample()
        memory.start()
        tracemalloc.start()
        t0 = time.perf_counter()
        pruned, _ = prune(model, method)
        seconds = time.perf_counter() - t0
        host_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = memory.stop()
        after = memory.sample()
    finally:
        keras.distribution.set_distribution(None)
    calibrate.InputStatistics.update = update
    found = {}
    for w in pruned_layers(pruned):
        name = w.layer.name
        found[f"{name}.mask"] = np.asarray(w.masks[0])
        found[f"{name}.kernel"] = np.asarray(w.prunable_weights[0])
    if setting == "one device":
        np.savez(spec["reference"], **found)
    reference = np.load(spec["reference"])
    same_masks = all(np.array_equal(found[k], reference[k])
                     for k in reference.files if k.endswith(".mask"))
    same_kernels = all(
        np.allclose(found[k], reference[k], rtol=1e-5, atol=1e-5)
        for k in reference.files if k.endswith(".kernel"))
    used = sorted(peak, key=lambda d: int(d.split(":")[-1]))
    mask_sharding = sorted({
        str(getattr(w.masks[0].value.sharding, "spec", "-"))
        for w in pruned_layers(pruned)})
    log(f"{setting} {method}: masks {same_masks}, peak "
        f"{max(peak.values()) / 2**20:.1f} MiB a device, host "
        f"{host_peak / 2**20:.0f} MiB, {seconds:.1f} s")
    return {
        "setting": setting, "method": method,
        "same_masks": same_masks, "same_kernels": same_kernels,
        "devices_used": len(used),
        "before": max(before.values()),
        "peak": max(peak.values()),
        "peak_device_0": peak[used[0]],
        "peak_others": max([peak[d] for d in used[1:]], default=None),
        "peak_per_device": [peak[d] for d in used],
        "after": max(after.values()),
        "host_peak": host_peak, "seconds": seconds,
        "mask_sharding": mask_sharding, "devices": used}


def measure(args, data):
    spec = {"devices": args.devices, "inputs": args.inputs,
            "hidden": args.hidden, "rows": args.rows}
    if args.quick:
        spec.update(devices=4, inputs=64, hidden=256, rows=32)
    data["spec"] = spec
    data["quick"] = args.quick
    # The worker's own device count (replacing one set for the tests).
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                   os.environ.get("XLA_FLAGS", ""))
    saved = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_force_host_platform_device_count={spec['devices']}"
    ).strip()
    try:
        with tempfile.TemporaryDirectory(prefix="oneshot_distribution_") as t:
            data["runs"] = [
                common.run_worker(
                    "oneshot_distribution.py", "jax",
                    dict(spec, setting=setting, method=method,
                         reference=os.path.join(t, f"{method}.npz")),
                    os.path.join(t, f"{i}_{j}"), threads=0)
                for i, setting in enumerate(SETTINGS)
                for j, method in enumerate(METHODS)]
    finally:
        if saved is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = saved


def _mib(size):
    return f"{size / 2**20:.1f}"


def render(data):
    spec = data["spec"]
    f, h = spec["inputs"], spec["hidden"]
    weights = (2 * f * h + h + f) * 4
    lines = [
        f"{f} → {h} → {f} MLP ({_mib(weights)} MiB of float32 weights), "
        f"{spec['rows']} calibration rows, 50 %, JAX on {spec['devices']} "
        "simulated CPU devices. Memory per device: MiB of live JAX arrays, the "
        "largest over the devices used (the peak: device 0, which on CPU "
        "devices also holds what JAX and Keras stage from the host, and the "
        "largest of the others); host: peak of Python/NumPy allocations "
        "during `prune_now` (tracemalloc).", "",
        "| setting | method | masks = one device | kernels = one device | "
        "devices | before | peak during prune_now: device 0 / the others | "
        "after | masks sharded as | host peak | time (tracemalloc on) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in data["runs"]:
        lines.append(
            f"| {run['setting']} | {run['method']} | "
            f"{'yes' if run['same_masks'] else 'NO'} | "
            f"{'yes' if run['same_kernels'] else 'NO'} | "
            f"{run['devices_used']} | {_mib(run['before'])} | "
            f"{_mib(run['peak_device_0'])} / "
            f"{'-' if run['peak_others'] is None else _mib(run['peak_others'])}"
            f" | {_mib(run['after'])} | "
            f"{', '.join(run['mask_sharding'])} | "
            f"{_mib(run['host_peak'])} | {run['seconds']:.1f} s |")
    spread = [(r["setting"], r["method"],
               max(r["peak_per_device"]) - min(r["peak_per_device"]))
              for r in data["runs"] if r["devices_used"] > 1]
    if spread:
        widest = max(spread, key=lambda s: s[2])
        lines += ["", "Spread of the peak across the devices used: at most "
                  f"{_mib(widest[2])} MiB between the largest and the "
                  f"smallest ({widest[0]}, {widest[1]})."]
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser(
        "oneshot_distribution.py", __doc__,
        quick="a 64 → 256 → 64 MLP, 32 rows, 4 devices")
    parser.add_argument("--devices", type=int, default=8,
                        help="simulated CPU devices (even; default 8)")
    parser.add_argument("--inputs", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=256)
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
