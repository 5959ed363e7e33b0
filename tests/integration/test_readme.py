"""The README's SDK snippet runs as written against the stack `make dev` starts (same ports, same deployment file)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from chainstream.chain.node import anvil_binary
from chainstream.devstack import start_stack
from chainstream.errors import ConfigurationError

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.anvil


def readme_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Build on it") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's 'Build on it' section has a python snippet"
    return found.group(1)


def test_readme_sdk_snippet_runs_as_written_against_make_dev(tmp_path: Path) -> None:
    try:
        anvil_binary()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    stack = start_stack(port=8700, rpc_port=8545, deployment_out=tmp_path / "deployments" / "local.json")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)  # `deployments/local.json` is relative, as when run from the repository
        out = io.StringIO()
        scope: dict[str, object] = {}
        with contextlib.redirect_stdout(out):
            exec(compile(readme_snippet(), "README.md", "exec"), scope)  # noqa: S102 - the snippet under test
    finally:
        os.chdir(cwd)
        stack.stop()
    listener = scope["listener"]
    assert listener.channel_id is not None  # type: ignore[attr-defined]
    assert "remaining" in out.getvalue(), "the snippet prints the listener's spending"
