"""The package stays easy to change: no function over ~50 lines unless a comment above it says why, no module
over 400 lines, no import circle, and the browser app (ui/) installed as stylealign.ui and used only by commands."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "stylealign"
UI = REPO / "ui"  # installed as stylealign.ui (pyproject's package-dir)
MAX_LINES = 60  # "about 50": a docstring or a long signature may push a clear function a little over


def long_functions(root: Path, limit: int) -> list[str]:
    """Return "file:line name (N lines)" for each function longer than `limit` lines (decorators and
    docstring included) whose def is not preceded by a comment line explaining why."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - start + 1
                if n > limit and not (start >= 2 and lines[start - 2].strip().startswith("#")):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_long_function_without_a_reason():
    assert long_functions(PACKAGE, MAX_LINES) == [] and long_functions(UI, MAX_LINES) == []


def test_no_module_over_400_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
             for folder in (PACKAGE, UI, REPO / "benchmarks") for p in folder.rglob("*.py")}
    assert sizes and {p: n for p, n in sizes.items() if n > 400} == {}


def test_pyproject_installs_every_package_and_ui_as_stylealign_ui():
    import tomllib

    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}
    assert set(tool["packages"]) == folders | {"stylealign.ui"} and tool["package-dir"] == {"stylealign.ui": "ui"}
    assert (UI / "__init__.py").is_file() and not (PACKAGE / "ui").exists()


def test_only_commands_import_the_browser_app():
    graph = import_graph(PACKAGE, {"stylealign.ui": UI})
    users = {m for m, deps in graph.items() if any(d.startswith("stylealign.ui") for d in deps)}
    assert {u for u in users if not u.startswith(("stylealign.commands.", "stylealign.ui"))} == set()
    assert "stylealign.commands.studio" in users


def test_the_check_finds_a_long_function_and_accepts_a_reason(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(70))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(f"def long():\n{body}\n\n# long: one table of steps\ndef why():\n{body}")
    assert long_functions(tmp_path / "pkg", MAX_LINES) == ["pkg/a.py:1 long (71 lines)"]


# ---- layers without circles -------------------------------------------------------------------------------------
def import_graph(root: Path, mapped: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Return {module: the package's modules it imports}, function-level imports included: a circle dodged by
    an import inside a function is still a circle. `from pkg import sub` is an edge to pkg.sub, not to pkg.
    `mapped` adds subpackages that live in other folders ({"stylealign.ui": REPO / "ui"})."""
    modules = {}
    for prefix, folder in [(root.name, root), *(mapped or {}).items()]:
        for path in folder.rglob("*.py"):
            name = ".".join((prefix, *path.relative_to(folder).with_suffix("").parts)).removesuffix(".__init__")
            modules[name] = path
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == root.name:
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                graph[name] |= subs | ({node.module} if len(subs) < len(node.names) else set())
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & modules.keys()
        graph[name] &= modules.keys() - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle_and_errors_is_the_bottom_layer():
    graph = import_graph(PACKAGE, {"stylealign.ui": UI})
    assert cycles(graph) == [] and "stylealign.ui.studio" in graph
    assert graph["stylealign.errors"] == set()


def test_the_cycle_check_finds_a_circle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("from pkg import a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]
