"""The Python examples of README.md and docs/*.md run, in order, per file."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(path.name), "exec"), namespace)


def test_readme_has_its_examples(tmp_path):
    assert len(python_blocks(ROOT / "README.md")) >= 3
