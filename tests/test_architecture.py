"""The package's shape: imports run one way, and no module grows unbounded.

Read from the source with the standard library's `ast` (nothing imported):
every `import` counts, the ones inside functions too, so that a circle
cannot hide behind a function-local import.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "keras_prune")

# Bottom to top: a module may import from its own package and from the
# packages before it, never from one after it (docs/architecture.md).
LAYERS = (
    ("keras_prune.backend", "keras_prune.datasets"),
    ("keras_prune.criteria",),
    ("keras_prune.core",),
    ("keras_prune.training",),
    ("keras_prune.analysis",),
    ("keras_prune.methods",),
    ("keras_prune.deploy",),
    ("keras_prune.structured",),
    ("keras_prune.cli",),
)
MAX_LINES = 600


def _modules():
    found = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path, os.path.dirname(ROOT))[:-3]
                dotted = dotted.replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[: -len(".__init__")]
                found[dotted] = path
    return found


MODULES = _modules()


def _imports(module):
    """`(imported module, line, inside a function)` for every import."""
    path = MODULES[module]
    package = module if path.endswith("__init__.py") else (
        module.rsplit(".", 1)[0])
    tree = ast.parse(open(path, encoding="utf-8").read())
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES
                else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "keras_prune":
                found.append((target, node.lineno, id(node) in in_function))
    return found


GRAPH = {m: sorted({t for t, _, _ in _imports(m) if t in MODULES})
         for m in MODULES}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer(module):
    for rank, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return rank
    return None


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_the_cycle_check_finds_a_circle():
    # The check itself must be able to fail.
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == [
        ["a", "b", "c"]]


def test_packages_import_only_downwards():
    wrong = []
    for module in MODULES:
        rank = _layer(module)
        if rank is None:
            continue
        for target, line, _ in _imports(module):
            target_rank = _layer(target)
            if target_rank is not None and target_rank > rank:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if m != "keras_prune" and _layer(m) is None] == []


def test_modules_do_not_import_the_package_root():
    # keras_prune/__init__.py imports everything: a module importing it
    # would sit both below and above every other.
    wrong = [
        f"{module}:{line}"
        for module in MODULES if module != "keras_prune"
        for target, line, _ in _imports(module) if target == "keras_prune"
    ]
    assert wrong == []


def test_no_function_local_imports_of_the_package():
    # Dependencies are declared at the top of each module, where this test
    # and readers see them (optional third-party packages may be imported
    # lazily; keras_prune's own modules may not).
    wrong = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        for target, line, local in _imports(module) if local
    ]
    assert wrong == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    with open(MODULES[module], encoding="utf-8") as file:
        lines = sum(1 for _ in file)
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines"
