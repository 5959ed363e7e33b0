"""The committed contract artifacts must be exactly what the sources compile to."""

from __future__ import annotations

import json

import pytest

from chainstream.chain import compile as build
from chainstream.errors import ConfigurationError


def _manifest() -> dict[str, object]:
    return json.loads((build.ARTIFACTS_DIR / "manifest.json").read_text())


def test_manifest_inputHash_matchesCurrentSources() -> None:
    try:
        version = build.compiler_version()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    assert _manifest()["inputHash"] == build.input_hash(version), (
        "contracts/ changed without `make contracts`: the committed artifacts are stale"
    )


def test_recompiling_reproducesCommittedArtifacts_byteForByte() -> None:
    try:
        build.compiler_version()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    fresh = build.compile_contracts()
    assert sorted(fresh) == sorted(_manifest()["contracts"])  # type: ignore[arg-type]
    for name, artifact in fresh.items():
        committed = json.loads((build.ARTIFACTS_DIR / f"{name}.json").read_text())
        assert committed == artifact, f"{name}: committed artifact differs from a fresh build"
