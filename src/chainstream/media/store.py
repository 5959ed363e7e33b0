"""The content store: a track's original file and its streaming segments, by track id (keccak256 of the original).

`ContentStore` is the small interface the relay uses; `DirectoryContentStore` keeps everything under one
directory. A shared store (several relay instances) implements the same five methods over, say, an object store.

Publishing is atomic: a track is written into a fresh staging directory, every file and the directory are
fsynced, and the directory is renamed into `tracks/` in one step (rename(2) is atomic). A track is either fully
there (manifest, init segment, every segment, the original) or absent; what a crash leaves in `staging/` is never
read and is removed at the next start (`clean_staging`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

ORIGINAL = "original"
MANIFEST = "manifest.json"
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Segment:
    """One streaming segment: [start_ms, start_ms + duration_ms) of the track, in file `name`."""

    index: int
    start_ms: int
    duration_ms: int
    name: str


@dataclass(frozen=True)
class Manifest:
    """What a published track holds; public (served free: it carries no audio)."""

    track_id: bytes
    duration_ms: int
    mime: str  # the MSE type of the segments, e.g. audio/mp4; codecs="mp4a.40.2"
    init: str  # the initialisation segment's file name (codec set-up, no audio)
    segments: tuple[Segment, ...]
    original_bytes: int
    original_format: str  # what ffprobe called the uploaded file (wav, mp3, flac, ...)
    published_at: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["track_id"] = "0x" + self.track_id.hex()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            track_id=bytes.fromhex(data["track_id"][2:]),
            duration_ms=int(data["duration_ms"]),
            mime=str(data["mime"]),
            init=str(data["init"]),
            segments=tuple(Segment(**s) for s in data["segments"]),
            original_bytes=int(data["original_bytes"]),
            original_format=str(data["original_format"]),
            published_at=int(data["published_at"]),
        )


class ContentStore(Protocol):
    """Originals and segments by track id; a track appears all at once (publish) or not at all."""

    def new_staging(self) -> Path:
        """A fresh private directory to write a track into before publishing it."""

    def publish(self, staging: Path, manifest: Manifest) -> bool:
        """Make the staged track visible in one step; False (and the staging removed) if it was already published."""

    def discard(self, staging: Path) -> None:
        """Drop a staging directory (a refused or failed upload)."""

    def manifest(self, track_id: bytes) -> Manifest | None:
        """The published track's manifest, or None."""

    def read(self, track_id: bytes, name: str) -> bytes | None:
        """A published file's bytes (a segment), or None."""

    def stream(self, track_id: bytes, name: str) -> Iterator[bytes] | None:
        """A published file in chunks (the original can be large), or None."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryContentStore:
    """`root/tracks/0x<track id>/{manifest.json, original, init.mp4, seg00000.m4s, ...}`; `root/staging/<instance>/`
    for uploads in progress (per relay instance, so that instances sharing the directory never clean up each
    other's uploads)."""

    def __init__(self, root: Path | str, *, instance: str = "main") -> None:
        self.root = Path(root)
        self.tracks = self.root / "tracks"
        self.staging = self.root / "staging" / instance
        self.tracks.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[bytes, Manifest] = {}  # published tracks never change: cached once read

    def clean_staging(self) -> int:
        """Remove what crashed or interrupted uploads left behind (call before serving); returns how many."""
        count = 0
        for leftover in self.staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
            count += 1
        return count

    def new_staging(self) -> Path:
        path = self.staging / uuid.uuid4().hex
        path.mkdir()
        return path

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def _dir(self, track_id: bytes) -> Path:
        return self.tracks / f"0x{track_id.hex()}"

    def publish(self, staging: Path, manifest: Manifest) -> bool:
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json()))
        for path in staging.iterdir():
            _fsync_file(path)
        _fsync_dir(staging)
        target = self._dir(manifest.track_id)
        try:
            os.rename(staging, target)  # atomic; refuses a non-empty existing target
        except OSError:
            if not (target / MANIFEST).exists():
                raise
            self.discard(staging)
            return False
        _fsync_dir(self.tracks)
        return True

    def manifest(self, track_id: bytes) -> Manifest | None:
        cached = self._manifests.get(track_id)
        if cached is not None:
            return cached
        path = self._dir(track_id) / MANIFEST
        try:
            manifest = Manifest.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        self._manifests[track_id] = manifest
        return manifest

    def _file(self, track_id: bytes, name: str) -> Path | None:
        if "/" in name or name.startswith("."):
            return None
        path = self._dir(track_id) / name
        return path if path.is_file() else None

    def read(self, track_id: bytes, name: str) -> bytes | None:
        path = self._file(track_id, name)
        return None if path is None else path.read_bytes()

    def stream(self, track_id: bytes, name: str) -> Iterator[bytes] | None:
        path = self._file(track_id, name)
        if path is None:
            return None

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return chunks()
