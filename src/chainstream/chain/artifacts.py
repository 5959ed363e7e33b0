"""Compiled contract artifacts shipped with the package (built by `make contracts`, checked by tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chainstream.errors import ConfigurationError

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


@cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise ConfigurationError(f"no artifact for {name}: run `make contracts`")
    data = json.loads(path.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"])


@cache
def error_abis() -> dict[bytes, dict[str, Any]]:
    """Every custom error of every shipped contract, keyed by its 4-byte selector."""
    from eth_utils.abi import function_abi_to_4byte_selector

    selectors: dict[bytes, dict[str, Any]] = {}
    for path in sorted(ARTIFACTS_DIR.glob("*.json")):
        if path.name == "manifest.json":
            continue
        for item in json.loads(path.read_text())["abi"]:
            if item["type"] == "error":
                selectors[function_abi_to_4byte_selector(item)] = item
    return selectors
