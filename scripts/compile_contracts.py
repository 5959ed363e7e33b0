#!/usr/bin/env python3
"""Compile contracts/ with the local solcjs into src/chainstream/chain/artifacts/ (or --check they match)."""

from __future__ import annotations

import argparse
import json
import sys

from chainstream.chain import compile as build


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed artifacts differ from a fresh build"
    )
    args = parser.parse_args()
    version = build.compiler_version()
    artifacts = build.compile_contracts()
    if not args.check:
        build.write_artifacts(artifacts, version)
        print(f"compiled {len(artifacts)} contracts with solc {version} into {build.ARTIFACTS_DIR}")
        return 0
    stale = []
    for name, artifact in artifacts.items():
        path = build.ARTIFACTS_DIR / f"{name}.json"
        if not path.exists() or json.loads(path.read_text()) != artifact:
            stale.append(name)
    manifest = json.loads((build.ARTIFACTS_DIR / "manifest.json").read_text())
    if manifest.get("inputHash") != build.input_hash(version):
        stale.append("manifest.json")
    if stale:
        print(f"artifacts out of date: {', '.join(stale)} — run `make contracts` and commit", file=sys.stderr)
        return 1
    print("artifacts match the sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
