#!/usr/bin/env python3
"""Run Slither on contracts/ and fail on any high or medium finding that is not triaged.

The compiler is the repository's own: Hardhat compiles with the local solcjs (hardhat.config.js), and Slither
reads Hardhat's build-info (slither.config.json: `hardhat_ignore_compile`), so neither crytic-compile nor
solc-select ever looks for, or downloads, a solc binary.

Accepted findings live in slither.triage.json, one entry per finding, keyed by detector, file and element
(`function`, `Contract.variable` or `function.localVariable`) rather than by Slither's ids, which hash line
numbers and would break on every unrelated edit. Each entry has a reason; docs/SECURITY.md answers them all.

A second pass runs Slither's reentrancy detectors blind to reentrancy guards. Slither trusts any modifier named
`nonReentrant` by its name alone (it never reads the guard), and it cannot even build its IR for OpenZeppelin's
ReentrancyGuardTransient (the TransientSlot library; it logs "Impossible to generate IR" for the guard's three
functions). Treating every function as re-enterable shows that checks-effects-interactions holds without the
guard: that pass must find no high or medium reentrancy at all, and it has no triage.

Usage: scripts/slither_check.py [--no-compile] [--json OUT]
Exit status: 0 when every high/medium finding is triaged and the guard-blind pass is clean; 1 otherwise (the
findings are listed); 2 when Slither itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRIAGE_FILE = ROOT / "slither.triage.json"
GATED = ("High", "Medium")
REENTRANCY_DETECTORS = (
    "reentrancy-eth,reentrancy-no-eth,reentrancy-balance,reentrancy-benign,reentrancy-events,reentrancy-unlimited-gas"
)
# Slither in-process with Function.is_reentrant forced to True: no function counts as guarded.
GUARD_BLIND = (
    "import sys\n"
    "from slither.core.declarations.function import Function\n"
    "Function.is_reentrant = property(lambda self: True)\n"
    "from slither.__main__ import main\n"
    "sys.argv[0] = 'slither'\n"
    "main()\n"
)


@dataclass(frozen=True)
class Finding:
    """One Slither result, reduced to what identifies it across edits."""

    check: str
    impact: str
    file: str
    element: str
    description: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.check, self.file, self.element)


def _element_name(element: dict[str, Any]) -> str:
    """`name`, qualified by its parent (`Contract.variable`, `function.local`) where it has one."""
    parent = element.get("type_specific_fields", {}).get("parent", {})
    if element["type"] in ("variable", "node") and parent.get("name"):
        return f"{parent['name']}.{element['name']}"
    return str(element["name"])


def findings(report: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for result in report.get("results", {}).get("detectors", []):
        first = result["elements"][0] if result.get("elements") else {"type": "", "name": "", "source_mapping": {}}
        out.append(
            Finding(
                check=result["check"],
                impact=result["impact"],
                file=first.get("source_mapping", {}).get("filename_relative", ""),
                element=_element_name(first),
                description=result["description"].strip().splitlines()[0],
            )
        )
    return out


def load_triage(path: Path = TRIAGE_FILE) -> dict[tuple[str, str, str], str]:
    entries = json.loads(path.read_text())["accepted"]
    triage: dict[tuple[str, str, str], str] = {}
    for entry in entries:
        if not entry.get("reason"):
            raise SystemExit(f"{path.name}: every accepted finding needs a reason: {entry}")
        triage[(entry["check"], entry["file"], entry["element"])] = entry["reason"]
    return triage


def compile_contracts() -> None:
    npx = shutil.which("npx")
    if npx is None:
        raise SystemExit("slither_check: npx not found (run `make setup`)")
    subprocess.run([npx, "hardhat", "compile", "--quiet"], cwd=ROOT, check=True)


def run_slither(*extra: str, guard_blind: bool = False) -> dict[str, Any]:
    """Slither's JSON report on the Hardhat build (compile first)."""
    try:
        import slither  # noqa: F401
    except ImportError:
        raise SystemExit("slither_check: slither is not installed (pip install -e '.[dev]')") from None
    entry = ["-c", GUARD_BLIND] if guard_blind else ["-m", "slither"]
    # Should anything still shell out to `solc`, it finds the local solcjs wrapper first, not solc-select's shim
    # (installed with slither-analyzer), which would try to download a compiler.
    env = {**os.environ, "PATH": f"{ROOT / 'scripts'}{os.pathsep}{os.environ.get('PATH', '')}"}
    # --json - prints the report on stdout; Slither exits non-zero whenever it finds anything, so its exit
    # status is not ours: the report's `success` says whether the analysis itself ran.
    proc = subprocess.run(
        [sys.executable, *entry, ".", "--config-file", "slither.config.json", *extra, "--json", "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(2) from None
    if not report.get("success"):
        sys.stderr.write(f"slither failed: {report.get('error')}\n{proc.stderr[-4000:]}")
        raise SystemExit(2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile", action="store_true", help="use the existing build/hardhat-artifacts")
    parser.add_argument("--json", type=Path, help="also write Slither's full report here")
    args = parser.parse_args(argv)

    if not args.no_compile:
        compile_contracts()
    report = run_slither()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    triage = load_triage()
    all_findings = findings(report)
    gated = [f for f in all_findings if f.impact in GATED]
    untriaged = [f for f in gated if f.key not in triage]
    seen = {f.key for f in gated}
    stale = [key for key in triage if key not in seen]

    print(f"slither: {len(all_findings)} findings, {len(gated)} high/medium, {len(gated) - len(untriaged)} triaged")
    for key in stale:
        # Not an error: the finding went away (fixed, or the code moved). Remove its entry.
        print(f"  stale triage entry (no such finding any more): {' '.join(key)}")
    if untriaged:
        print("untriaged high/medium findings (fix them, or add them with a reason to slither.triage.json and")
        print("answer them in docs/SECURITY.md):")
        for f in untriaged:
            print(f'  {f.impact:6} {f.check}: {{"check": "{f.check}", "file": "{f.file}", "element": "{f.element}"}}')
            print(f"         {f.description}")
        return 1

    blind = [f for f in findings(run_slither("--detect", REENTRANCY_DETECTORS, guard_blind=True)) if f.impact in GATED]
    print(f"slither, reentrancy guards ignored: {len(blind)} high/medium reentrancy findings")
    for f in blind:
        print(f"  {f.impact:6} {f.check}: {f.description}")
    return 1 if blind else 0


if __name__ == "__main__":
    sys.exit(main())
