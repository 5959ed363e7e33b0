"""docs/API.md's error table lists exactly the error codes the relay's source can produce.

The codes are collected from src/chainstream with `ast` (no server), as every `Code` member (``Code.X``) or string
literal that reaches a parameter or attribute named ``code``:

- passed to a parameter named ``code`` of a function or class defined in the package, by keyword
  (``ProtocolError(..., code=Code.BAD_VOUCHER)``) or by position, resolved through the definition
  (``Rejection(Code.UNKNOWN_TRACK, ...)``, ``error_response(404, Code.NO_ABI, ...)``,
  ``_amount(..., Code.PRICE_OVERFLOW)``);
- assigned to a name or class attribute ``code`` (``code = Code.CONFIGURATION`` defaults, and
  ``code = Code.STALE_VOUCHER if ... else Code.SEQ_GAP``);
- under a ``"code"`` key of a dict display (``{"code": Code.INVALID_REQUEST}``).

Since issue 12 every code is a `chainstream.codes.Code` member: a bare string literal is refused
(`test_every_code_is_written_as_a_code_member`), and the enum must equal the table.

Modules the relay does not serve are left out: the CLI (``cli*.py``), the demo (``demo.py``) and the client
SDK (``sdk/``), whose codes (``no_relay``, ``no_channel``, ``http_error``) are raised on the caller's side and
never answered by a relay. Both directions are checked, so a new code without a row fails, and so does a row
for a code the source no longer produces.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from chainstream.codes import Code
from chainstream.relay.api.errors import REJECTION_STATUS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "chainstream"
API_DOC = ROOT / "docs" / "API.md"
#: the heading of the table the test reads; rows look like "| `code` | status | meaning | what to do |"
TABLE_HEADING = "## Error codes"
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|")


def relay_modules() -> list[Path]:
    """Every module of the package except those the relay does not serve (CLI, demo, client SDK)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "sdk" or (len(rel.parts) == 1 and (rel.name.startswith("cli") or rel.name == "demo.py")):
            continue
        out.append(path)
    return out


def _strings(node: ast.AST) -> Iterator[str]:
    """Codes a value expression can evaluate to: a `Code.NAME` member, a string literal, or either branch of a
    conditional."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Code":
        yield Code[node.attr].value
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)


def _callee_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _code_positions(trees: list[ast.Module]) -> dict[str, int]:
    """Callable name -> the positional index of its ``code`` parameter (self/cls not counted), for every
    function and every class (through its ``__init__``) defined in the package that has one."""
    positions: dict[str, int] = {}

    def index_of(func: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> int | None:
        params = [a.arg for a in [*func.args.posonlyargs, *func.args.args]]
        if is_method and params:
            params = params[1:]
        return params.index("code") if "code" in params else None

    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        i = index_of(item, is_method=True)
                        if i is not None:
                            positions[node.name] = i
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "__init__":
                i = index_of(node, is_method=False)
                if i is not None:
                    positions.setdefault(node.name, i)
    return positions


def codes_in_source() -> dict[str, set[str]]:
    """Every error code the relay's modules can produce -> the modules producing it."""
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in relay_modules()}
    positions = _code_positions(list(trees.values()))
    found: dict[str, set[str]] = {}

    def add(values: Iterator[str], path: Path) -> None:
        for value in values:
            found.setdefault(value, set()).add(str(path.relative_to(PACKAGE)))

    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "code":
                        add(_strings(keyword.value), path)
                index = positions.get(_callee_name(node) or "")
                if index is not None and index < len(node.args):
                    add(_strings(node.args[index]), path)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if node.value is not None and any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                    add(_strings(node.value), path)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        add(_strings(value), path)
    return found


def codes_in_doc() -> list[str]:
    """The codes of docs/API.md's error table, in order (the first cell of each row, in backticks)."""
    lines = API_DOC.read_text().splitlines()
    start = lines.index(TABLE_HEADING)
    codes = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        match = ROW.match(line)
        if match:
            codes.append(match.group(1))
    return codes


def test_the_collector_sees_the_kinds_of_codes_it_is_meant_to() -> None:
    """Guards the collector itself: one code per way a code is written, and nothing from excluded modules."""
    found = codes_in_source()
    assert "unknown_channel" in found  # Rejection("...", status=404): first positional argument
    assert "bad_voucher" in found  # ProtocolError(..., code="...")
    assert {"stale_voucher", "seq_gap"} <= found.keys()  # code = "..." if ... else "..."
    assert "configuration" in found  # class attribute default
    assert "chainstream_error" in found  # annotated class attribute default on the root
    assert "price_overflow" in found  # _amount(value, what, code) positionally
    assert {"invalid_request", "no_abi"} <= found.keys()  # app.py: _error(status, code, ...) and a dict literal
    assert not {"no_relay", "no_channel", "http_error"} & found.keys()  # SDK only


def test_every_code_the_relay_can_produce_has_a_row() -> None:
    documented = set(codes_in_doc())
    missing = {code: sorted(where) for code, where in codes_in_source().items() if code not in documented}
    assert not missing, f"error codes missing from the table under {TABLE_HEADING!r} in docs/API.md: {missing}"


def test_every_row_names_a_code_the_relay_can_produce() -> None:
    stale = sorted(set(codes_in_doc()) - codes_in_source().keys())
    assert not stale, f"docs/API.md documents error codes the source no longer produces: {stale}"


def test_each_code_has_one_row() -> None:
    codes = codes_in_doc()
    assert len(codes) == len(set(codes)), sorted({c for c in codes if codes.count(c) > 1})


def _literal_codes() -> dict[str, list[str]]:
    """Codes written as string literals (not `Code` members) where a code is expected, per module."""
    out: dict[str, list[str]] = {}
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in relay_modules()}
    positions = _code_positions(list(trees.values()))
    for path, tree in trees.items():
        for node in ast.walk(tree):
            values: list[ast.expr] = []
            if isinstance(node, ast.Call):
                values += [k.value for k in node.keywords if k.arg == "code"]
                index = positions.get(_callee_name(node) or "")
                if index is not None and index < len(node.args):
                    values.append(node.args[index])
            elif isinstance(node, ast.Dict):
                values += [
                    v
                    for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and k.value == "code"
                ]
            for value in values:
                for leaf in (value.body, value.orelse) if isinstance(value, ast.IfExp) else (value,):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                        out.setdefault(str(path.relative_to(PACKAGE)), []).append(leaf.value)
    return out


def test_every_code_is_written_as_a_code_member() -> None:
    """One vocabulary: the relay's modules name codes through `chainstream.codes.Code`, never as bare strings."""
    assert _literal_codes() == {}


def test_the_code_enum_is_the_table() -> None:
    """`Code` has exactly the table's codes: no member without a row, no row without a member."""
    assert sorted(Code) == sorted(codes_in_doc())


def _doc_statuses() -> dict[str, str]:
    lines = API_DOC.read_text().splitlines()
    cells = (line.split("|") for line in lines[lines.index(TABLE_HEADING) + 1 :] if ROW.match(line))
    return {c[1].strip().strip("`"): c[2].strip() for c in cells}


def test_the_table_states_each_refusals_http_status() -> None:
    """The HTTP column agrees with the status table at the edge (relay/api/errors.py) for every refusal there."""
    statuses = _doc_statuses()
    wrong = {
        code: (statuses[code], status) for code, status in REJECTION_STATUS.items() if str(status) not in statuses[code]
    }
    assert not wrong, wrong
