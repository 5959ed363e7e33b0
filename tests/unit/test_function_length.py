"""No function in src/chainstream is over 60 lines (issue 12): a longer one is split into named steps."""

from __future__ import annotations

import ast
from pathlib import Path

import chainstream

PACKAGE = Path(chainstream.__file__).resolve().parent
MAX_LINES = 60


def long_functions(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """Every function (nested ones and methods included) whose `def` line to its last line spans more than
    `max_lines` lines, as `path:line name (n lines)`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > max_lines:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_the_package_is_over_60_lines() -> None:
    too_long = long_functions(PACKAGE)
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)


def test_the_length_check_counts_nested_functions_and_methods(tmp_path: Path) -> None:
    """The check itself sees a long method and a long function nested in a short one, and passes one of 60."""
    package = tmp_path / "pkg"
    package.mkdir()
    statements = [f"x{i} = {i}" for i in range(MAX_LINES)]  # 60 statements + the def line = 61 lines
    (package / "long.py").write_text(
        "class C:\n    def method(self) -> None:\n"
        + "".join(f"        {line}\n" for line in statements)
        + "\n\ndef outer() -> None:\n    async def inner() -> None:\n"
        + "".join(f"        {line}\n" for line in statements)
    )
    (package / "short.py").write_text("def fine() -> None:\n" + "".join(f"    {line}\n" for line in statements[1:]))
    assert {entry.split()[1] for entry in long_functions(package)} == {"method", "outer", "inner"}
