"""The pure parts of paid streaming: grant tokens, the upload message, the HLS playlist parser."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from chainstream.media import grants as g
from chainstream.media.errors import MediaError
from chainstream.media.transcode import parse_playlist
from chainstream.media.upload import upload_digest, upload_message
from chainstream.protocol import Kind, PrivateKey, recover

KEY = g.grant_key(b"\x01" * 32)
GRANT = g.Grant(b"\x02" * 32, b"\x03" * 32, 7, Kind.SECONDS, 1_000, 12_000)


def _code(token: str, now: float = 0.0) -> str:
    with pytest.raises(MediaError) as refused:
        g.verify(KEY, token, now=now)
    return refused.value.code


def test_a_grant_reads_back_exactly_until_it_expires() -> None:
    token = g.issue(KEY, GRANT)
    assert g.verify(KEY, token, now=999.9) == GRANT
    assert _code(token, now=1_000) == "grant_expired"


def test_a_grant_of_another_key_or_with_any_byte_changed_is_invalid() -> None:
    token = g.issue(KEY, GRANT)
    assert _code(g.issue(g.grant_key(b"\x09" * 32), GRANT)) == "invalid_grant"
    body, mac = token.split(".")
    for i in range(0, len(body), 7):
        flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1 :]
        assert _code(f"{flipped}.{mac}") == "invalid_grant"
    assert _code(f"{body}.{mac[:-2]}") == "invalid_grant"


@pytest.mark.parametrize("token", ["", ".", "a.b.c", "x" * 5_000, "!!!.???", "e30.AAAA"])
def test_malformed_grants_are_invalid_not_errors(token: str) -> None:
    assert _code(token) == "invalid_grant"


def _maced(payload: bytes) -> str:
    """A token of `payload` under the relay's own key (as if the relay had issued it)."""
    tag = hmac.new(KEY, payload, hashlib.sha256).digest()
    return (
        base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(tag).rstrip(b"=").decode()
    )


def test_a_correctly_maced_payload_of_an_unknown_shape_is_invalid() -> None:
    """Even with the key (a future version's token), a payload this version does not know opens nothing."""
    for payload in (b"[]", b'{"v":2,"c":"0x00","t":"0x00","s":1,"k":"play","x":9,"p":0}', b"not json"):
        assert _code(_maced(payload)) == "invalid_grant"


def test_a_grant_names_its_kind_on_the_wire_and_a_tip_or_unknown_kind_grants_nothing() -> None:
    """The payload's "k" is the kind's JSON name; a tip (no audio) is no grant, built or read back."""
    body = g.issue(KEY, GRANT).split(".")[0]
    assert b'"k":"seconds"' in base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    with pytest.raises(ValueError, match="grants no audio"):
        g.Grant(b"\x02" * 32, b"\x03" * 32, 7, Kind.TIP, 1_000)

    def of_kind(kind: str) -> str:
        return _maced(f'{{"v":1,"c":"0x{"02" * 32}","t":"0x{"03" * 32}","s":7,"k":"{kind}","x":1000,"p":0}}'.encode())

    assert g.verify(KEY, of_kind("download"), now=0).kind == Kind.DOWNLOAD
    for kind in ("tip", "SECONDS", "2"):
        assert _code(of_kind(kind)) == "invalid_grant"


def test_the_upload_message_names_track_relay_and_chain_and_recovers_to_its_signer() -> None:
    owner = PrivateKey(b"\x05" * 32)
    relay = PrivateKey(b"\x06" * 32).address
    message = upload_message(31337, relay.lower(), b"\xab" * 32)
    assert message == f"ChainStream: publish audio\ntrack: 0x{'ab' * 32}\nrelay: {relay}\nchain: 31337"
    digest = upload_digest(31337, relay, b"\xab" * 32)
    assert recover(digest, owner.sign(digest)) == owner.address
    assert upload_digest(1, relay, b"\xab" * 32) != digest


def test_the_playlist_gives_each_segment_its_start_and_duration() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.020136,\nseg00000.m4s\n#EXTINF:1.996916,\nseg00001.m4s\n'
    segments = parse_playlist(text)
    assert [(s.index, s.start_ms, s.duration_ms, s.name) for s in segments] == [
        (0, 0, 2020, "seg00000.m4s"),
        (1, 2020, 1997, "seg00001.m4s"),
    ]
    with pytest.raises(MediaError):
        parse_playlist("#EXTM3U\n#EXT-X-ENDLIST\n")
