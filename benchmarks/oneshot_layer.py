"""One-shot pruning of one layer from calibration statistics: SparseGPT vs
Wanda vs magnitude, reconstruction error and speed.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/oneshot_layer.py --write
    .venv/bin/python benchmarks/oneshot_layer.py --quick

The solver is NumPy (`keras_prune.methods.obs`), the same on every backend;
the workers run under KERAS_BACKEND (default tensorflow) only because the
package imports Keras.

(a) Reconstruction error ‖(W − Ŵ)X‖² / ‖WX‖² (from XᵀX) on a synthetic
layer with outlier input features, as in LLM activations: `--cols` (512)
inputs, `--rows` (512) outputs, W ~ N(0, 1/cols), X `--samples` (2048)
rows of N(0, 1) features of which `--outliers` (4), chosen at random, are
scaled by factors drawn uniformly from 20-100. Patterns 50 %, 2:4 and 4:8;
methods: magnitude and Wanda (masks only, per output row) and SparseGPT
(block 128, damping 1 %).

(b) Speed on one 4096×4096 layer with 128 calibration sequences of 128
tokens (16,384 rows of X, float32 activations). Timed separately: the Gram
matrix (float32 products of each sequence accumulated into float64), Wanda's
statistics (Σ x_j² per feature), SparseGPT at 50 % (the whole call:
checks, factorization, sweep) and Wanda's masking (the mask and W·mask).
The work SparseGPT needs, in flops: the factorization 2/3·cols³ (a
Cholesky, cols³/3, and a triangular inverse, cols³/3; ours does 7/6·cols³
as matrix products, the reference 4/3·cols³: Cholesky, inverse from it,
Cholesky) in float64, and the OBS updates rows·cols·(cols − 1) (every
column's error row times the rest of its row of U) in float32. The bound
is that work at this machine's matmul rates, measured in the same round (a
(cols × cols) @ (cols × 512) NumPy product, float32 and float64). The
sweep also runs with float64 updates, for the dtype choice in obs.py. Each
round does everything once; `--rounds` (3) rounds, medians. `--threads`
(2 1): one worker per thread count.

Seeds: `--seeds` 0 1 2 (declared 2026-12-07, before the first run); a seed
draws W, X and the outlier features and scales. Errors are medians over
the seeds with the spread (min-max). Speed uses seed 0.
"""

import os
import resource
import statistics
import tempfile
import time

import numpy as np

import common

PATTERNS = (("50 %", 0.5, None), ("2:4", None, (2, 4)),
            ("4:8", None, (4, 8)))
METHODS = ("magnitude", "wanda", "sparsegpt")


def synthetic_layer(seed, rows, cols, samples, outliers):
    """(W, X): W (rows, cols) ~ N(0, 1/cols); X (samples, cols) N(0, 1) with
    `outliers` random features scaled by U(20, 100)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)) / np.sqrt(cols)
    x = rng.standard_normal((samples, cols))
    features = rng.choice(cols, outliers, replace=False)
    x[:, features] *= rng.uniform(20, 100, outliers)
    return w, x


def errors(spec, log):
    from keras_prune.methods import obs

    out = []
    for seed in spec["seeds"]:
        w, x = synthetic_layer(seed, spec["rows"], spec["cols"],
                               spec["samples"], spec["outliers"])
        gram = x.T @ x
        for name, sparsity, n_m in PATTERNS:
            keep = {
                "magnitude": obs.magnitude_keep(w, sparsity or 0, n_m=n_m),
                "wanda": obs.wanda_keep(w, np.diag(gram), sparsity or 0,
                                        n_m=n_m)}
            new = {k: w * v for k, v in keep.items()}
            new["sparsegpt"], keep["sparsegpt"] = obs.sparsegpt(
                w, gram, sparsity or 0, n_m=n_m)
            for method in METHODS:
                out.append({
                    "seed": seed, "pattern": name, "method": method,
                    "error": obs.reconstruction_error(w, new[method], gram),
                    "kept": float(keep[method].mean())})
            log(f"seed {seed} {name}: " + ", ".join(
                f"{r['method']} {r['error']:.4g}" for r in out[-3:]))
    return {"errors": out}


def speed(spec, log):
    from keras_prune.methods import obs

    rows, cols = spec["rows"], spec["cols"]
    seqs, tokens = spec["sequences"], spec["tokens"]
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(
        np.float32)
    x = rng.standard_normal((seqs, tokens, cols), dtype=np.float32)
    x[:, :, rng.choice(cols, 4, replace=False)] *= 50
    probe = {dt: (rng.standard_normal((cols, cols)).astype(dt),
                  rng.standard_normal((cols, 512)).astype(dt))
             for dt in (np.float32, np.float64)}
    factor_flops = 2 * cols ** 3 / 3
    update_flops = rows * cols * (cols - 1)
    rounds = []
    for r in range(spec["rounds"]):
        rec = {}
        for dt, (a, b) in probe.items():
            a @ b
            t0 = time.perf_counter()
            a @ b
            rec[f"gflops_{np.dtype(dt).name}"] = (
                2 * a.shape[0] * a.shape[1] * b.shape[1]
                / (time.perf_counter() - t0) / 1e9)
        t0 = time.perf_counter()
        gram = np.zeros((cols, cols))
        for chunk in range(0, seqs, 8):
            # 8 sequences (1,024 tokens) per float32 product: A.T @ A runs
            # as a SYRK, and the float64 sum is touched 16 times, not 128.
            batch = x[chunk:chunk + 8].reshape(-1, cols)
            gram += batch.T @ batch
        rec["gram_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sq_norms = np.zeros(cols)
        for seq in x:
            sq_norms += np.einsum("tj,tj->j", seq, seq, dtype=np.float64)
        rec["norms_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        new, keep = obs.sparsegpt(w, gram, 0.5)
        rec["sparsegpt_s"] = time.perf_counter() - t0
        rec["error32"] = obs.reconstruction_error(w, new, gram)
        h = gram.copy()
        h[np.diag_indices(cols)] += 0.01 * np.mean(np.diag(h))
        t0 = time.perf_counter()
        upper = obs.inverse_hessian_factor(h)
        rec["factor_s"] = time.perf_counter() - t0
        for dt in (np.float32, np.float64):
            t0 = time.perf_counter()
            new_dt, _ = obs._obs_sweep(w.astype(np.float64), upper, 0.5,
                                       None, 128, dt)
            rec[f"sweep_{np.dtype(dt).name}_s"] = time.perf_counter() - t0
            rec[f"error_{np.dtype(dt).name}"] = obs.reconstruction_error(
                w, new_dt, gram)
        t0 = time.perf_counter()
        mask = obs.wanda_keep(w, sq_norms, 0.5)
        pruned = w * mask
        rec["wanda_s"] = time.perf_counter() - t0
        bound = (factor_flops / rec["gflops_float64"]
                 + update_flops / rec["gflops_float32"]) / 1e9
        rec["bound_s"] = bound
        log(f"round {r}: sparsegpt {rec['sparsegpt_s']:.2f} s (bound "
            f"{bound:.2f} s), factor {rec['factor_s']:.2f} s, sweep "
            f"{rec['sweep_float32_s']:.2f} / {rec['sweep_float64_s']:.2f} "
            f"s (f32 / f64), gram {rec['gram_s']:.2f} s, wanda "
            f"{rec['wanda_s']:.3f} s, {rec['gflops_float32']:.0f} / "
            f"{rec['gflops_float64']:.0f} GFLOP/s")
        rounds.append(rec)
        del pruned, new, new_dt
    return {"threads": spec["threads"], "rounds": rounds,
            "factor_flops": factor_flops, "update_flops": update_flops,
            "gram_bytes": cols * cols * 8, "norms_bytes": cols * 8,
            "maxrss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def work(spec, log):
    return errors(spec, log) if spec["part"] == "errors" else speed(spec,
                                                                   log)


def measure(args, data):
    quick = args.quick
    backend = common.default_backend()
    err_spec = {"part": "errors", "seeds": [0] if quick else args.seeds,
                "rows": 64 if quick else args.rows,
                "cols": 64 if quick else args.cols,
                "samples": 256 if quick else args.samples,
                "outliers": args.outliers}
    data.update(quick=quick, backend=backend, error_spec=err_spec)
    with tempfile.TemporaryDirectory(prefix="oneshot_layer_") as tmp:
        data["errors"] = common.run_worker(
            "oneshot_layer.py", backend, err_spec,
            os.path.join(tmp, "errors"), threads=args.threads[0])["errors"]
        data["speed"] = []
        for threads in args.threads:
            spec = {"part": "speed", "threads": threads,
                    "rows": 128 if quick else 4096,
                    "cols": 128 if quick else 4096,
                    "sequences": 4 if quick else 128,
                    "tokens": 32 if quick else 128,
                    "rounds": 1 if quick else args.rounds}
            data["speed"].append(common.run_worker(
                "oneshot_layer.py", backend, spec,
                os.path.join(tmp, f"speed{threads}"), threads=threads))
            data["speed"][-1].update(
                {k: spec[k] for k in ("rows", "cols", "sequences", "tokens")})


def _cell(values, form="{:.3g}"):
    text = form.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({form.format(min(values))}-{form.format(max(values))})"
    return text


def render(data):
    spec = data["error_spec"]
    lines = [
        f"**(a) Reconstruction error** ‖(W − Ŵ)X‖² / ‖WX‖², {spec['cols']} "
        f"inputs × {spec['rows']} outputs, {spec['samples']} calibration "
        f"rows, {spec['outliers']} outlier features (20-100×); seeds "
        f"{spec['seeds']}, median (min-max):", "",
        "| pattern | magnitude | Wanda | SparseGPT | SparseGPT < Wanda < "
        "magnitude |", "|---|---|---|---|---|"]
    for name, _, _ in PATTERNS:
        by = {m: [r["error"] for r in data["errors"]
                  if r["pattern"] == name and r["method"] == m]
              for m in METHODS}
        order = all(s < w < m for s, w, m in zip(
            by["sparsegpt"], by["wanda"], by["magnitude"]))
        lines.append(f"| {name} | " + " | ".join(
            _cell(by[m]) for m in METHODS)
            + f" | {'every seed' if order else 'not every seed'} |")
    for run in data["speed"]:
        rounds = run["rounds"]

        def med(key, rounds=rounds):
            return statistics.median(r[key] for r in rounds)

        ratio = [r["sparsegpt_s"] / r["bound_s"] for r in rounds]
        lines += [
            "", f"**(b) Speed, {run['threads']} thread(s)**: "
            f"{run['rows']}×{run['cols']} layer, {run['sequences']} × "
            f"{run['tokens']} calibration tokens, median of {len(rounds)} "
            "rounds (min-max):", "",
            "| what | value |", "|---|---|",
            f"| matmul rate float32 / float64 | "
            f"{med('gflops_float32'):.0f} / {med('gflops_float64'):.0f} "
            "GFLOP/s |",
            f"| work: factorization (float64) + updates (float32) | "
            f"{run['factor_flops'] / 1e9:.1f} + "
            f"{run['update_flops'] / 1e9:.1f} GFLOP |",
            f"| bound (that work at those rates) | {med('bound_s'):.2f} s |",
            f"| SparseGPT 50 %, whole call | "
            + _cell([r["sparsegpt_s"] for r in rounds], "{:.2f}") + " s |",
            "| SparseGPT / bound | " + _cell(ratio, "{:.2f}") + "× |",
            f"| of which factorization | {med('factor_s'):.2f} s |",
            f"| sweep, float32 / float64 updates | "
            f"{med('sweep_float32_s'):.2f} / {med('sweep_float64_s'):.2f} s "
            "|",
            f"| error with float32 / float64 updates | "
            f"{med('error_float32'):.6g} / {med('error_float64'):.6g} |",
            f"| Gram matrix XᵀX (float64, {run['gram_bytes'] / 2**20:.0f} "
            f"MiB) | {med('gram_s'):.2f} s |",
            f"| Wanda statistics Σx² ({run['norms_bytes'] / 2**10:.0f} KiB) "
            f"| {med('norms_s'):.2f} s |",
            "| Wanda masking (mask + W·mask) | "
            + _cell([r["wanda_s"] for r in rounds], "{:.3f}") + " s |",
            f"| worker peak RSS | {run['maxrss_mib']:.0f} MiB |"]
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser(
        "oneshot_layer.py", __doc__,
        quick="64×64 and 128×128 layers, one seed, one round")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--outliers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="intra-op threads, one speed worker each "
                             "(default 2 1)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
