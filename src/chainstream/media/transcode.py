"""Uploaded audio to streaming segments with Debian's ffmpeg: AAC-LC in fragmented MP4 (CMAF), ~2 s a segment.

Why AAC in fMP4: it is the one audio format every Media Source Extensions implementation takes (Chromium, Firefox,
Safari, Edge: `audio/mp4; codecs="mp4a.40.2"`), an fMP4 init segment plus media segments append to one
SourceBuffer in order with no demuxing in the page, and ffmpeg's HLS muxer cuts them and reports each one's
duration. Every AAC frame is a key frame, so a segment starts wherever the muxer cuts.

Hostile input: ffprobe must find an audio stream and a duration within the limit before ffmpeg runs; ffmpeg
itself is capped (`-t`) at the limit whatever the file's header claims, runs with a timeout, reads only local
files (`-protocol_whitelist file`), and never sees the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from chainstream.codes import Code
from chainstream.errors import ConfigurationError
from chainstream.media.errors import MediaError
from chainstream.media.store import Segment

MIME = 'audio/mp4; codecs="mp4a.40.2"'
INIT = "init.mp4"
PLAYLIST = "playlist.m3u8"


@dataclass(frozen=True)
class Probe:
    duration: float
    format: str
    codec: str


def tools(ffmpeg: str) -> tuple[str, str]:
    """(ffmpeg, ffprobe) executables; ConfigurationError if missing (scripts/install_ffmpeg.sh installs them)."""
    found = shutil.which(ffmpeg)
    if found is None:
        raise ConfigurationError(f"ffmpeg ({ffmpeg}) is not installed: run scripts/install_ffmpeg.sh")
    probe = shutil.which("ffprobe", path=str(Path(found).parent)) or shutil.which("ffprobe")
    if probe is None:
        raise ConfigurationError("ffprobe is not installed next to ffmpeg: run scripts/install_ffmpeg.sh")
    return found, probe


async def _run(args: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


#: the only demuxers ffprobe and ffmpeg may open an upload with: audio containers. A playlist format (hls,
#: concat, ...) would make them read other files on the relay's disk — another artist's published segments,
#: say — and publish them under the uploader's track (`-protocol_whitelist file` does not prevent that).
DEMUXERS = ("wav", "mp3", "flac", "ogg", "mov", "aac", "matroska")
_DEMUXER_OPTIONS = ["-format_whitelist", ",".join(DEMUXERS)]


async def probe(ffprobe: str, path: Path, *, max_seconds: int, timeout: float) -> Probe:
    """The file's container, audio codec and duration; MediaError if it is no audio ffmpeg can read, or too long."""
    try:
        code, out, err = await _run(
            [
                ffprobe,
                "-v",
                "error",
                "-protocol_whitelist",
                "file",
                *_DEMUXER_OPTIONS,
                "-show_entries",
                "format=duration,format_name:stream=codec_type,codec_name",
                "-of",
                "json",
                str(path),
            ],
            timeout,
        )
    except TimeoutError:
        raise MediaError(Code.UNSUPPORTED_MEDIA, "the file could not be read in time", status=415) from None
    try:
        info = json.loads(out or b"{}")
    except ValueError:
        info = {}
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if code != 0 or not audio:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no audio stream"]
        raise MediaError(
            Code.UNSUPPORTED_MEDIA,
            f"not an audio file ffmpeg can read ({reason[0][:200]}); send WAV, FLAC, MP3, AAC/M4A, Ogg or Opus",
            status=415,
        )
    try:
        duration = float(info.get("format", {}).get("duration", "nan"))
    except ValueError:
        duration = float("nan")
    if not duration > 0:  # also NaN
        raise MediaError(Code.UNSUPPORTED_MEDIA, "the file's duration cannot be read (corrupt or empty?)", status=415)
    if duration > max_seconds:
        raise MediaError(
            Code.AUDIO_TOO_LONG, f"the audio lasts {duration:.0f} s; this relay takes up to {max_seconds} s", status=413
        )
    container = str(info["format"].get("format_name", ""))
    if container.split(",")[0] not in DEMUXERS:  # the whitelist's second line of defence
        raise MediaError(
            Code.UNSUPPORTED_MEDIA, f"{container[:40]} is not an audio container this relay takes", status=415
        )
    return Probe(duration, container, str(audio[0].get("codec_name", "")))


async def transcode(
    ffmpeg: str, source: Path, out_dir: Path, *, segment_seconds: int, max_seconds: int, timeout: float
) -> tuple[Segment, ...]:
    """Write `out_dir`/init.mp4 and seg00000.m4s, ... (AAC-LC 128 kb/s stereo 44.1 kHz); their segments."""
    args = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        *_DEMUXER_OPTIONS,
        "-i",
        str(source),
        "-t",
        str(max_seconds),
        "-map",
        "0:a:0",
        "-vn",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        "44100",
        "-ac",
        "2",
        "-f",
        "hls",
        "-hls_time",
        str(segment_seconds),
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        "vod",
        "-hls_fmp4_init_filename",
        INIT,
        "-hls_segment_filename",
        str(out_dir / "seg%05d.m4s"),
        str(out_dir / PLAYLIST),
    ]
    try:
        code, _, err = await _run(args, timeout)
    except TimeoutError:
        raise MediaError(Code.TRANSCODE_FAILED, f"transcoding took longer than {timeout:.0f} s", status=422) from None
    if code != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["ffmpeg failed"]
        raise MediaError(Code.TRANSCODE_FAILED, f"the audio could not be transcoded: {reason[0][:200]}", status=422)
    return merge_short_tail(out_dir, parse_playlist((out_dir / PLAYLIST).read_text()))


#: a last segment shorter than this is appended to the one before (the AAC encoder's final frames, ~23 ms)
SHORT_TAIL_MS = 500


def merge_short_tail(out_dir: Path, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """Fold a very short last segment into the previous one: fMP4 fragments (moof + mdat) concatenate, and a
    23 ms segment would otherwise cost a per-second listener a request (and a paid second) of its own."""
    if len(segments) < 2 or segments[-1].duration_ms >= SHORT_TAIL_MS:
        return segments
    *head, prev, tail = segments
    with (out_dir / prev.name).open("ab") as f:
        f.write((out_dir / tail.name).read_bytes())
    (out_dir / tail.name).unlink()
    return (*head, Segment(prev.index, prev.start_ms, prev.duration_ms + tail.duration_ms, prev.name))


def parse_playlist(text: str) -> tuple[Segment, ...]:
    """The segments of an HLS media playlist (#EXTINF durations), with their start times."""
    segments: list[Segment] = []
    start_ms = 0
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            ms = round(duration * 1000)
            segments.append(Segment(len(segments), start_ms, ms, Path(line).name))
            start_ms += ms
            duration = None
    if not segments:
        raise MediaError(Code.TRANSCODE_FAILED, "ffmpeg produced no segments", status=422)
    return tuple(segments)
