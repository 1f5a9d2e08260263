"""The layout is the architecture: the method's modules copy out alone, and imports run one way.

The root holds train.py and the three modules users copy (sampler.py, routing.py, mixture.py); every other module
sits in a folder named for its concern (README: Layout). These tests read the imports from the source (every
`import`, at module level or inside a function), so an optional extra imported lazily counts too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHOD = ("sampler", "routing", "mixture")
LIBRARY = ("reading", "lifecycle", "outputs", "extras", "models", "eval")
"""Folders of modules that others import; the entry points (benchmarks, experiments, scripts) only import."""
FOLDERS = (*LIBRARY, "experiments", "benchmarks", "scripts")


def imported_names(path: Path) -> set[str]:
    """Every module name `path` imports, absolute, as written (`from a.b import c` gives `a.b` and `a.b.c`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def project_modules() -> dict[str, Path]:
    """The project's modules by dotted name (tests aside)."""
    modules = {}
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in ("tests", ".git") or any(part.startswith(".") for part in relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {imported for imported in imported_names(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def test_the_method_modules_import_alone_with_only_the_standard_library_and_torch(tmp_path):
    for name in METHOD:
        outside = {imported.split(".")[0] for imported in imported_names(REPO / f"{name}.py")}
        outside -= set(sys.stdlib_module_names) | {"torch", *METHOD}
        assert not outside, f"{name}.py imports {sorted(outside)}: it must copy out with the standard library and torch"
        shutil.copy(REPO / f"{name}.py", tmp_path)
    # -E -s: no PYTHONPATH, no user site: only the three copied files (the working folder) and installed packages
    done = subprocess.run([sys.executable, "-E", "-s", "-c", "import sampler, routing, mixture; print(mixture.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()).parent == tmp_path


def test_imports_run_one_way_without_cycles():
    graph = import_graph()
    assert set(METHOD) | {"train"} <= set(graph)
    # the method imports nothing of the project but the method; no library folder imports train.py, and the
    # entry points that do (benchmarks timing train.py's own functions) are imported by nothing
    for name in METHOD:
        assert graph[name] <= set(METHOD), f"{name}.py imports {sorted(graph[name] - set(METHOD))}"
    importers_of_train = sorted(name for name, imported in graph.items() if "train" in imported)
    assert [name for name in importers_of_train if name.split(".")[0] in LIBRARY] == []
    entry_points = {name for name in graph if name.split(".")[0] in ("benchmarks", "experiments", "scripts")}
    assert sorted(name for name, imported in graph.items() if imported & entry_points and name not in entry_points) == []
    # no cycle, through any number of modules (a package's __init__ counts as the package)
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycle = path[path.index(imported):] + [imported]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if imported not in state:
                visit(imported, path + [imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_root_holds_the_method_and_folders_say_what_they_hold():
    root_modules = sorted(path.stem for path in REPO.glob("*.py"))
    assert root_modules == sorted(["train", *METHOD])
    for folder in FOLDERS:
        assert (REPO / folder / "__init__.py").is_file(), folder


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """Negative control: a graph with a cycle through three modules is reported, naming it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "train": set(), **{name: set() for name in METHOD}}
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
    try:
        test_imports_run_one_way_without_cycles()
    except AssertionError as error:
        assert "a -> b -> c -> a" in str(error)
    else:
        raise AssertionError("the cycle was not found")
