"""Compile `contracts/` into the committed ABI + bytecode artifacts.

This is a developer tool: running the relay or the demo never compiles. The compiler is the npm package
`solc` (solcjs) behind `scripts/solc`, a solc-compatible executable, driven through py-solc-x's standard-JSON
interface. Everything that determines the output (sources, OpenZeppelin from node_modules, settings, compiler
version) is hashed into `artifacts/manifest.json`, so a test can tell when sources and artifacts disagree.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Any

from chainstream.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
SOLC_WRAPPER = PROJECT_ROOT / "scripts" / "solc"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"

#: Contracts whose artifacts ship with the package (the rest are libraries and interfaces).
DEPLOYABLE = (
    "ChainStreamChannels",
    "ChainStreamGasless",
    "TrackRegistry",
    "MockStablecoin",
    "NoReturnToken",
    "FalseReturnToken",
    "ReentrantToken",
    "ReentrantPayee",
    "WalletPayer",
)

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 20_000},
    "viaIR": True,
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def source_files() -> dict[str, str]:
    """All project sources plus the library files they import, keyed by source unit name."""
    sources: dict[str, str] = {}
    pending = [path.relative_to(PROJECT_ROOT).as_posix() for path in sorted(CONTRACTS_DIR.rglob("*.sol"))]
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        location = PROJECT_ROOT / unit if unit.startswith("contracts/") else PROJECT_ROOT / "node_modules" / unit
        if not location.exists():
            raise ConfigurationError(f"{unit} not found: run `npm ci` first")
        sources[unit] = text = location.read_text()
        pending.extend(_imports_of(unit, text))
    return dict(sorted(sources.items()))


def _imports_of(unit: str, text: str) -> list[str]:
    """Source unit names imported by `unit`, with "./" and "../" resolved against its directory."""
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("import") or '"' not in line:
            continue
        target = line.split('"')[1]
        if target.startswith("."):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
        names.append(target)
    return names


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input for the whole project."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in source_files().items()},
        "settings": SETTINGS,
    }


def input_hash(compiler_version: str) -> str:
    """sha256 over the compiler version and the canonical standard-JSON input."""
    blob = json.dumps({"compiler": compiler_version, "input": standard_input()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def compiler_version() -> str:
    """The solcjs version behind scripts/solc, read from node_modules (no compiler start needed)."""
    package = PROJECT_ROOT / "node_modules" / "solc" / "package.json"
    if not package.exists():
        raise ConfigurationError("node_modules/solc is missing: run `npm ci` first")
    return str(json.loads(package.read_text())["version"])


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile every source and return {contract name: artifact} for the deployable contracts."""
    import solcx  # dev dependency: only needed to compile

    output = solcx.compile_standard(standard_input(), solc_binary=str(SOLC_WRAPPER), allow_empty=False)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ConfigurationError("\n".join(e["formattedMessage"] for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, contracts in output["contracts"].items():
        for name, data in contracts.items():
            if name in DEPLOYABLE:
                artifacts[name] = {
                    "contractName": name,
                    "sourceName": unit,
                    "abi": data["abi"],
                    "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                    "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                }
    return artifacts


def write_artifacts(artifacts: dict[str, dict[str, Any]], version: str) -> None:
    """Write one JSON per contract plus the manifest that pins what they were built from."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, artifact in artifacts.items():
        (ARTIFACTS_DIR / f"{name}.json").write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
    manifest = {
        "compiler": version,
        "settings": SETTINGS,
        "inputHash": input_hash(version),
        "contracts": sorted(artifacts),
    }
    (ARTIFACTS_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
