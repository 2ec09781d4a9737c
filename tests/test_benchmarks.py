"""The skeleton every script of benchmarks/ shares (benchmarks/common.py).

No timing is asserted (a benchmark measures speed; a test does not): these
tests check that the shared options parse, that a saved record re-renders
into a results file with its header, and that one real, tiny run goes
through a worker process on the backend under test and back.
"""

import json
import pathlib

import keras
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(
    p.stem for p in BENCHMARKS.glob("*.py")
    if p.stem not in ("common", "vs_tfmot_worker", "record_tfmot_fixtures")
)



def finetune_record(seeds, recipe="oneshot", command="--seeds 0,1"):
    """A saved structured_finetune record, as its --json writes it."""
    runs = []
    for seed in seeds:
        runs.append({
            "backend": "tensorflow", "seed": seed, "n_train": 55000,
            "n_val": 5000, "n_test": 10000, "epochs": 6,
            "finetune_epochs": 2, "ratio": 0.5, "recipe": recipe,
            "verify": 0.0, "worker_s": 600.0,
            "dense": {"params": 309418, "macs": 37160000, "val": 0.9242,
                      "test": 0.9234},
            "pruned": {"params": 78426, "macs": 9350000, "val": 0.0851,
                       "test": 0.0847},
            "finetune": [
                {"lr": 1e-3, "val": 0.9090, "test": 0.9071},
                {"lr": 2e-3, "val": 0.9150, "test": 0.9101},
                {"lr": 3e-3, "val": 0.9134, "test": 0.9116},
            ],
        })
    return {
        "argv": command.split(), "date": "2026-11-22 09:00",
        "command": f"python benchmarks/structured_finetune.py {command}",
        "commit": "bfadd40",
        "machine": {"cpus": 2, "cpu": "AMD EPYC", "mem_gib": 23.4,
                    "python": "3.11.7"},
        "versions": {"keras": "3.15.1", "numpy": "2.4.6"},
        "load_start": [1.2, 0.8, 0.9], "quick": False, "accuracy": runs,
        "wall_s": 1344.0,
    }


def test_backends_option_takes_commas_and_spaces(bench):
    common = bench("common")
    parser = common.parser("x.py", "A benchmark.", backends=common.BACKENDS)
    args = parser.parse_args(["--backends", "jax,torch", "tensorflow"])
    assert args.backends == ["jax", "torch", "tensorflow"]
    assert parser.parse_args([]).backends == list(common.BACKENDS)
    with pytest.raises(SystemExit):
        parser.parse_args(["--backends", "theano"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_the_shared_options(bench, script, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench(script).main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--json", "--from-json", "--reading", "--write"):
        assert option in help_text
    assert f"benchmarks/results/{script}.md" in help_text


def test_results_file_from_saved_records(bench, tmp_path):
    """--from-json of two saved runs (seeds 0, 1 and 2, 3) of one recipe,
    --reading, --json and --write: one results file, named by the recipe."""
    common = bench("common")
    finetune = bench("structured_finetune")
    paths = []
    for seeds in ((2, 3), (0, 1)):
        listed = ",".join(map(str, seeds))
        path = tmp_path / f"kd_{listed}.json"
        path.write_text(json.dumps(finetune_record(
            seeds, "kd", f"--recipe kd --seeds {listed}")))
        paths.append(str(path))
    reading = tmp_path / "reading.txt"
    reading.write_text("Distillation did not help here.\n")
    merged = tmp_path / "merged.json"

    document = finetune.main(["--from-json", *paths, "--reading",
                              str(reading), "--json", str(merged),
                              "--write"])

    written = tmp_path / "results" / "structured_finetune_kd.md"
    assert written.read_text() == document
    lines = document.splitlines()
    assert lines[0].startswith("# Structured pruning's accuracy goal")
    assert lines[0].endswith("(not on the test set) — kd")
    assert ("- **Command** (from the repository root): "
            "`python benchmarks/structured_finetune.py --recipe kd --seeds "
            "2,3` and `python benchmarks/structured_finetune.py --recipe kd "
            "--seeds 0,1`") in lines
    assert ("- **Date**: 2026-11-22 09:00; **commit** bfadd40; **wall time** "
            "44.8 min") in lines
    assert ("- **Machine**: 2 CPUs (AMD EPYC), 23 GiB, no GPU, Python 3.11.7; "
            "load average at the start 1.2, 0.8, 0.9 (1, 5, 15 min)") in lines
    assert "- **Versions**: keras 3.15.1, numpy 2.4.6" in lines
    assert ("seeds 0, 1, 2, 3 (2 runs, the seeds of each in parallel)"
            in document)
    # Every seed chose 2e-3 on validation: 92.34 - 91.01 = 1.33 points.
    rows = [line for line in lines
            if line.startswith("| ") and "**91.01**" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| 0", "| 1", "| 2", "| 3"]
    assert "1.33 points (each seed: 1.33 / 1.33 / 1.33 / 1.33) — **MISS**" \
        in document
    assert document.rstrip().endswith(
        "**Reading.** Distillation did not help here.")
    saved = json.loads(merged.read_text())
    assert saved["reading"] == "Distillation did not help here."
    assert [r["seed"] for r in saved["accuracy"]] == [0, 1, 2, 3]
    assert not (pathlib.Path(common.RESULTS_DIR)
                / "structured_finetune.md").exists()


def test_a_real_run_through_a_worker(bench, tmp_path):
    """sizes_packed.py on the backend under test, one untrained LeNet at
    90 %: measured in a worker process, rendered, saved and written; then
    the saved record renders to the same file."""
    backend = keras.backend.backend()
    record = tmp_path / "sizes.json"
    argv = ["--backends", backend, "--epochs", "0", "--train-samples", "0",
            "--test-samples", "200", "--sparsities", "0.9", "--models",
            "lenet"]
    sizes_packed = bench("sizes_packed")

    document = sizes_packed.main(argv + ["--json", str(record), "--write"])

    written = tmp_path / "results" / "sizes_packed.md"
    assert written.read_text() == document
    assert (f"- **Command** (from the repository root): `python "
            f"benchmarks/sizes_packed.py {' '.join(argv)} --json {record} "
            "--write`") in document.splitlines()
    assert "**commit** not recorded" not in document
    saved = json.loads(record.read_text())
    (run,) = saved["runs"]
    assert run["backend"] == backend
    assert "worker_s" in run  # added by the worker side of the skeleton
    (row,) = run["models"][0]["rows"]
    assert row["target"] == 0.9 and row["sparsity"] >= 0.9
    assert row["packed_int8_bytes"] < row["packed_bytes"] < row["dense_bytes"]
    assert (f"| LeNet-300-100 | 90% | {row['sparsity']:.1%} | "
            f"{row['dense_bytes']:,} |") in document

    written.unlink()
    again = sizes_packed.main(["--from-json", str(record), "--write"])
    assert again == document == written.read_text()


def test_the_zoo_matrix_through_a_worker(bench, tmp_path):
    """zoo.py --quick on the backend under test, two models: both ways ran,
    and the matrix shows what each did."""
    pytest.importorskip("keras_hub")
    backend = keras.backend.backend()
    record = tmp_path / "zoo.json"
    document = bench("zoo").main(["--quick", "--backends", backend,
                                  "--models", "gpt2,convnext",
                                  "--json", str(record)])
    (run,) = json.loads(record.read_text())["runs"]
    rows = {r["model"]: r for r in run["rows"]}
    assert set(rows) == {"hub:gpt2", "apps:convnext"}
    gpt2, convnext = rows["hub:gpt2"], rows["apps:convnext"]
    assert gpt2["unstructured"]["path"] == "copied whole"
    assert gpt2["unstructured"]["sparsity"] == 0.5
    # Everything but the tied token embedding (64 x 16) is prunable.
    u = gpt2["unstructured"]
    assert u["kernels"] - u["prunable"] == 64 * 16
    # Its MLPs are cut (2 blocks x 8 of 32 channels x (16 + 1 + 16)
    # weights); its embeddings are left whole.
    # The two embeddings, and each block's attention (heads left whole).
    assert gpt2["structured"]["left_whole"] == 4
    before, after = gpt2["structured"]["params"]
    assert before - after == 2 * 8 * 33
    s = convnext["structured"]
    assert s["ok"] and s["params"][1] < s["params"][0]
    assert s["macs"][1] < s["macs"][0] and s["uncounted"] == 0
    assert "| apps:convnext | ok | clone |" in document
    assert not (tmp_path / "results" / "zoo.md").exists()  # --quick


def test_deploy_latency_beside_torch_pruning(bench, tmp_path):
    """deploy_latency.py --quick, ResNet-18, our side planned and exported
    on the backend under test: every variant exported, equal to Keras,
    timed on ONNX Runtime, and the MACs each side reports."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch_pruning")
    backend = keras.backend.backend()
    record = tmp_path / "latency.json"
    document = bench("deploy_latency").main(
        ["--quick", "--models", "resnet18", "--backend", backend,
         "--json", str(record)])
    data = json.loads(record.read_text())
    assert data["block"]["block"] >= 1
    variants = {v["label"]: v for v in data["models"]["resnet18"]}
    assert list(variants) == [
        "dense", "ours 50%", "ours 50% rounded", "ours rounded, MACs held",
        "Torch-Pruning dense", "Torch-Pruning 50%",
        "Torch-Pruning 50% round_to"]
    # Half the channels of every group: a quarter of the convolutions' MACs
    # (the stem's input and the classifier's output stay).
    assert variants["dense"]["macs"] == 555_422_720
    assert variants["ours 50%"]["macs"] == 139_299_328
    assert variants["ours 50%"]["widths"] == [32, 64, 128, 256]
    held = variants["ours rounded, MACs held"]
    assert held["macs"] <= variants["ours 50%"]["macs"]
    assert all(w % data["block"]["block"] == 0 for w in held["widths"])
    assert variants["Torch-Pruning 50%"]["widths"] == [32, 64, 128, 256]
    for v in variants.values():
        assert v["ms"]["onnx"]["1"] > 0 and v["ms"]["onnx"]["8"] > 0
        assert v.get("onnx_diff", 0) <= 1e-5
    assert ("litert" in variants["dense"]["files"]) == (
        backend == "tensorflow")
    assert "| ours rounded, MACs held | 139,299,328 |" in document
    assert not (tmp_path / "results").exists()  # --quick


def test_compare_noise_quick(bench, tmp_path):
    """compare_noise.py --quick on the backend under test: both call
    orders, both batch sizes, and no self-comparison called measurable."""
    backend = keras.backend.backend()
    record = tmp_path / "noise.json"
    document = bench("compare_noise").main(
        ["--quick", "--backends", backend, "--json", str(record)])
    (run,) = json.loads(record.read_text())["runs"]
    assert run["backend"] == backend
    for order in ("fixed", "rotating"):
        assert len(run["runs"][order]) == 3
        for found in run["runs"][order]:
            assert set(found) == {"1", "32"}
            for ratio in found.values():
                assert ratio["low"] <= ratio["time_ratio"] <= ratio["high"]
    assert not any(r["measurable"] for found in run["runs"]["rotating"]
                   for r in found.values())
    assert f"| {backend} | rotating | 32 |" in document


def test_prune_at_init_quick(bench, tmp_path):
    """prune_at_init.py --quick on the backend under test: every method ran
    at every sparsity, the table and the cost line are there."""
    backend = keras.backend.backend()
    record = tmp_path / "record.json"
    document = bench("prune_at_init").main(
        ["--quick", "--backends", backend, "--json", str(record)])
    data = json.loads(record.read_text())
    (run,) = data["runs"][0]["runs"]
    assert {(r["method"], r["sparsity"]) for r in run["results"]} == {
        (m, 0.99) for m in ("synflow", "snip", "grasp", "magnitude",
                            "random")}
    # A network with a collapsed layer is credited, not trained.
    for r in run["results"]:
        assert r["trained"] == (not r["collapsed"])
    assert "| 100x | 99 % |" in document
    assert "one SynFlow round" in document
    assert not (tmp_path / "results").exists()  # --quick


def test_movement_quick(bench, tmp_path):
    """movement.py --quick on the backend under test: pretraining, the
    dense fine-tuning and both methods ran, every pruned model reached its
    sparsity (the script asserts it), the cost of both steps was timed and
    the tables rendered."""
    backend = keras.backend.backend()
    record = tmp_path / "record.json"
    document = bench("movement").main(
        ["--quick", "--backends", backend, "--json", str(record)])
    data = json.loads(record.read_text())
    (result,) = data["runs"]
    assert result["backend"] == backend
    (run,) = result["runs"]
    assert [(r["method"], r["sparsity"]) for r in run["results"]] == [
        ("magnitude", 0.9), ("movement", 0.9)]
    assert set(result["cost"]) == {"scores", "plain"}
    assert "| 10 % | 90 % |" in document
    assert f"| {backend} |" in document
    assert not (tmp_path / "results").exists()  # --quick


def test_supermask_quick(bench, tmp_path):
    """supermask.py --quick on the backend under test: the dense reference
    and one learned mask at 50 % (exact sparsity), the table rendered."""
    backend = keras.backend.backend()
    record = tmp_path / "record.json"
    document = bench("supermask").main(
        ["--quick", "--backends", backend, "--json", str(record)])
    data = json.loads(record.read_text())
    (run,) = data["runs"][0]["runs"]
    (result,) = run["results"]
    assert result["sparsity"] == 0.5
    assert abs(result["reached"] - 0.5) < 1e-3
    assert "| 50 % |" in document
    assert not (tmp_path / "results").exists()  # --quick


def test_lottery_quick(bench, tmp_path):
    """lottery.py --quick on the backend under test: every variant ran its
    rounds, the controls kept the ticket's per-layer counts, the plot was
    written and the results table and goals rendered."""
    record = tmp_path / "lottery.json"
    plot = tmp_path / "lottery.png"
    document = bench("lottery").main(
        ["--quick", "--json", str(record), "--plot", str(plot)])
    data = json.loads(record.read_text())
    assert data["backend"] == keras.backend.backend()
    (run,) = data["runs"]  # --quick: seed 0 only
    assert run["seed"] == 0
    results = run["results"]
    assert list(results) == ["init", "k=5", "lr", "finetune", "reinit",
                             "random_mask"]
    for found in results.values():
        assert [r["index"] for r in found["rounds"]] == [0, 1, 2]
    for control in ("reinit", "random_mask"):
        assert [list(r["layers"].values())
                for r in results[control]["rounds"]] == [
            list(r["layers"].values()) for r in results["init"]["rounds"]]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "| 2 | 64.1 % |" in document
    assert "seeds 0." in document and "Spread over the seeds" not in document
    assert "pruning machinery <= 5 % of a round" in document
    assert not (tmp_path / "results").exists()  # --quick writes no file
