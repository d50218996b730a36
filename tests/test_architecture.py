"""The shape of the code base, checked by walking the source with ``ast`` (docs/architecture.md describes it).

- Layers: an import never points up (base < io < domain < tasks < train, pipelines < cli, apps, demo), and packages
  import each other without cycles.
- One training engine: an optimizer loop (``.backward()`` and ``.step()``) lives in ``medvl/train/`` only.
- Room sizes: no module over 450 lines, no function over 60.
- No guard that hides one of medvl's own modules (``find_spec``), and no private name imported across modules.

An exception is an entry of an allow-list below with its reason; an entry that no longer matches anything fails too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "medvl"

#: package (first name under medvl/) -> layer; an import may point to its own layer or below, never above
LAYERS = {
    **dict.fromkeys(("medvl", "errors", "log", "config", "atomic", "hashing", "workspace", "registry", "lazy",
                     "resources", "batch", "provenance"), 0),
    "io": 1,
    **dict.fromkeys(("pathology", "radiology", "knowledge", "models", "losses"), 2),
    "tasks": 3,
    **dict.fromkeys(("train", "pipelines"), 4),
    **dict.fromkeys(("cli", "apps", "demo", "doctor", "__main__"), 5),
}
LAYER_NAMES = ["base", "io", "domain", "tasks", "train/pipelines", "cli/apps/demo"]

#: modules with their own optimizer loop outside medvl/train/ -> why
TRAINING_LOOPS_ALLOWED = {
    "medvl/tasks/survival/model.py": "the deep Cox head's own small fit inside SurvivalModel.fit (an estimator, "
                                     "sklearn contract), not a training engine",
}
#: modules allowed over 450 lines -> why
LONG_MODULES_ALLOWED: dict[str, str] = {}
#: modules allowed to call importlib.util.find_spec -> why
FIND_SPEC_ALLOWED = {
    "medvl/doctor.py": "reports which optional third-party packages are installed",
    "medvl/knowledge/fingerprint.py": "hashes the files of the third-party ICD-10-CM package without importing it",
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _sources(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "medvl"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Every medvl module ``path`` imports (at any depth of the module, as run), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    module = _module_name(path, root)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if path.name != "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                found.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            elif node.module:
                found.append((node.module, node.lineno))
    return [(name, line) for name, line in found if name == "medvl" or name.startswith("medvl.")]


@pytest.fixture(scope="module")
def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> where (``file:line imports module``)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in _sources(PACKAGE):
        src = _package(_module_name(path))
        for name, line in _imports(path):
            dst = _package(name)
            if dst != src:
                edges[(src, dst)].append(f"{_rel(path)}:{line} imports {name}")
    return edges


def test_every_package_has_a_layer(package_edges):
    packages = {_package(_module_name(p)) for p in _sources(PACKAGE)}
    assert sorted(packages - set(LAYERS)) == [], "place the new package in LAYERS (and in docs/architecture.md)"


def test_no_import_points_up(package_edges):
    upward = [f"{where} ({LAYER_NAMES[LAYERS[src]]} -> {LAYER_NAMES[LAYERS[dst]]})"
              for (src, dst), wheres in sorted(package_edges.items())
              if LAYERS.get(dst, 99) > LAYERS.get(src, -1) for where in wheres]
    assert upward == []


def test_no_import_cycle_between_packages(package_edges):
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in package_edges:
        graph[src].add(dst)
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    detail = {c: package_edges[(c.split(" -> ")[-2], c.split(" -> ")[-1])][:2] for c in cycles}
    assert cycles == [], detail


def _calls(tree: ast.AST, attr: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == attr
               for n in ast.walk(tree))


def test_one_training_engine():
    """An optimizer loop (``loss.backward()`` with ``optimizer.step()``) outside medvl/train/ is a second trainer."""
    loops = set()
    for path in _sources(PACKAGE):
        if _rel(path).startswith("medvl/train/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _calls(tree, "backward") and _calls(tree, "step"):
            loops.add(_rel(path))
    assert sorted(loops - set(TRAINING_LOOPS_ALLOWED)) == [], "train through medvl.train (or allow-list with a reason)"
    assert sorted(set(TRAINING_LOOPS_ALLOWED) - loops) == [], "stale allow-list entry: remove it"


def test_room_sizes():
    long_modules, long_functions = set(), []
    for path in _sources(PACKAGE, ROOT / "apps"):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.add(_rel(path))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{_rel(path)}:{node.lineno} {node.name} ({lines} lines)")
    assert sorted(long_modules - set(LONG_MODULES_ALLOWED)) == [], f"modules over {MAX_MODULE_LINES} lines"
    assert sorted(set(LONG_MODULES_ALLOWED) - long_modules) == [], "stale allow-list entry: remove it"
    assert long_functions == [], f"functions over {MAX_FUNCTION_LINES} lines"


def test_no_guard_hides_a_medvl_module_and_no_private_import():
    guards, private = set(), []
    for path in _sources(PACKAGE, ROOT / "apps"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _calls(tree, "find_spec"):
            guards.add(_rel(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medvl"):
                private += [f"{_rel(path)}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert sorted(guards - set(FIND_SPEC_ALLOWED)) == [], "import medvl's own modules directly; optional " \
                                                          "third-party ones through medvl.errors.require"
    assert private == [], "make the name public in its one home, or restructure"


def test_the_checks_see_real_violations(tmp_path):
    """The walkers are not vacuous: an upward import, a relative one, a training loop and a long function are seen;
    an import for annotations only is not."""
    bad = tmp_path / "medvl" / "tasks" / "bad.py"
    bad.parent.mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    bad.write_text("from typing import TYPE_CHECKING\nfrom medvl.cli.main import app\nfrom ..train import engine\n"
                   "if TYPE_CHECKING:\n    from medvl.apps import ui\n"
                   f"def fit(model, opt):\n    model.loss().backward()\n    opt.step()\n{body}\n", encoding="utf-8")
    imports = _imports(bad, tmp_path)
    assert imports == [("medvl.cli.main", 2), ("medvl.train", 3)]
    assert all(LAYERS[_package(name)] > LAYERS[_package(_module_name(bad, tmp_path))] for name, _ in imports)
    tree = ast.parse(bad.read_text())
    assert _calls(tree, "backward") and _calls(tree, "step")
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
