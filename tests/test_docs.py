"""The Python examples of README.md and docs/*.md run: the docs' in order,
per file; each of the README's alone, in a process of its own, as a user
pastes it."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

from keras_prune.cli import app
from keras_prune.criteria import base as criteria_base
from keras_prune.structured.layer_rules import base as rules_base

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
README = ROOT / "README.md"


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # What the examples register (a command, a criterion, a layer rule) is
    # theirs: other tests, in whatever order they run, see the built-ins.
    for module, name in ((app, "COMMANDS"), (criteria_base, "_REGISTRY"),
                         (rules_base, "_REGISTRY")):
        value = getattr(module, name)
        monkeypatch.setattr(module, name, type(value)(value))
    blocks = python_blocks(path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(path.name), "exec"), namespace)


def test_readme_has_its_examples(tmp_path):
    assert len(python_blocks(README)) >= 3


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_each_readme_block_runs_alone(index, tmp_path):
    block = python_blocks(README)[index]
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
        text=True, timeout=600,
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend(),
                 PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, f"README block {index + 1}:\n{block}\n{done.stderr[-3000:]}"
