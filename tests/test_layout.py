"""The house rules of the source tree, read from the code itself (no Qt, no imports of the package).

- No module over 600 lines, no function over 120 lines.
- ``thread_worker`` (and napari's other worker factories) only in the job runner.
- A widget module (a widget in ``napari.yaml``) imports no other widget module.
- The core and the controllers import no napari, Qt or magicgui.
- Test files have names of their own across the test folders (pytest imports them by name).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_posekit"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120
JOB_RUNNER = "napari_posekit._napari.jobs"
WORKER_NAMES = {"thread_worker", "create_worker", "FunctionWorker", "GeneratorWorker"}
GUI_PACKAGES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports (absolute names; ``from x import y`` gives ``x`` and ``x.y``)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _widget_modules() -> set[str]:
    manifest = yaml.safe_load((PACKAGE / "napari.yaml").read_text(encoding="utf-8"))
    contributions = manifest["contributions"]
    widget_commands = {w["command"] for w in contributions.get("widgets", [])}
    return {c["python_name"].split(":")[0] for c in contributions["commands"] if c["id"] in widget_commands}


def test_the_rules_see_the_package():
    assert "napari_posekit.core.video" in MODULES and JOB_RUNNER in MODULES
    assert len(_widget_modules()) >= 6 and _widget_modules() <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_MODULE_LINES}): split it"


def test_function_size():
    long = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_thread_workers_only_in_the_job_runner():
    users = []
    for name, tree in TREES.items():
        if name == JOB_RUNNER:
            continue
        for node in ast.walk(tree):
            used = (
                (isinstance(node, ast.Name) and node.id in WORKER_NAMES)
                or (isinstance(node, ast.Attribute) and node.attr in WORKER_NAMES)
                or (isinstance(node, ast.alias) and node.name.rpartition(".")[2] in WORKER_NAMES)
            )
            if used:
                users.append(f"{name} line {getattr(node, 'lineno', '?')}")
    assert not users, f"only {JOB_RUNNER} may start workers; found: {users}"


def test_widget_modules_do_not_import_each_other():
    widgets = _widget_modules()
    crossings = [
        f"{name} imports {other}"
        for name in sorted(widgets)
        for other in sorted(widgets - {name})
        if any(i == other or i.startswith(other + ".") for i in _imports(name))
    ]
    assert not crossings, crossings


@pytest.mark.parametrize("package", ["napari_posekit.core", "napari_posekit.controllers"])
def test_core_and_controllers_import_no_gui(package):
    names = [n for n in MODULES if n == package or n.startswith(package + ".")]
    if package == "napari_posekit.core":
        assert names
    bad = sorted(
        f"{name} imports {imported}"
        for name in names
        for imported in _imports(name)
        if imported.split(".")[0] in GUI_PACKAGES or imported.startswith("napari_posekit._napari")
    )
    assert not bad, bad


def test_test_file_names_are_unique():
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"test files sharing a name: {clashes}"
