"""The package stays easy to change: no function over ~50 lines unless a comment above it says why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stylealign"
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
    assert long_functions(PACKAGE, MAX_LINES) == []


def test_the_check_finds_a_long_function_and_accepts_a_reason(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(70))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(f"def long():\n{body}\n\n# long: one table of steps\ndef why():\n{body}")
    assert long_functions(tmp_path / "pkg", MAX_LINES) == ["pkg/a.py:1 long (71 lines)"]
