"""Streaming grants: what the relay hands a listener with a payment's acknowledgement, to fetch audio with.

A grant is a bearer token `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`; the payload (compact
JSON) binds it to one channel, one track, the receipt (payment seq) that paid for it, its kind, its expiry and
what it may open:

    {"v":1,"c":"0x<channel>","t":"0x<track>","s":<seq>,"k":"play|seconds|download","x":<expiry unix s>,
     "p":<milliseconds paid>}

- `play`: every segment of the track until the expiry (the play's receipt paid for one listening).
- `seconds`: segments while the audio delivered on this channel for this track stays below `p`, the seconds the
  channel had paid for the track when the grant was issued (the relay meters what it serves: at most one
  segment beyond what was paid).
- `download`: the original file and every segment (the listener bought the track).

The key is derived from the relay's own key, so every instance of one relay (sharing its key and database)
honours the others' grants, and no other relay's grant is valid here. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass

from chainstream.codes import Code
from chainstream.media.errors import MediaError
from chainstream.protocol.hashing import keccak
from chainstream.protocol.receipts import Kind

VERSION = 1
#: longest grant token accepted (a real one is ~250 characters): longer input is refused before any parsing
MAX_TOKEN = 1_024


#: the kinds of charge that grant access to a track's audio (a tip buys none)
GRANT_KINDS = frozenset({Kind.PLAY, Kind.SECONDS, Kind.DOWNLOAD})


@dataclass(frozen=True)
class Grant:
    channel_id: bytes
    track_id: bytes
    seq: int
    kind: Kind
    expires_at: int
    paid_ms: int = 0  # seconds grants: the audio paid for on the channel for this track, in milliseconds

    def __post_init__(self) -> None:
        if self.kind not in GRANT_KINDS:
            raise ValueError(f"a {self.kind.wire} charge grants no audio")

    @property
    def original(self) -> bool:
        """Whether the grant opens the original file (a download purchase)."""
        return self.kind == Kind.DOWNLOAD


def grant_key(relay_secret: bytes) -> bytes:
    """The HMAC key of a relay's grants, derived from its private key (never the key itself)."""
    return keccak(b"chainstream/grant/v1" + relay_secret)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, grant: Grant) -> str:
    """The grant's token. Issued with every payment for a track, so built by hand (no json.dumps, one-shot HMAC):
    the payload is the compact JSON of the module docstring."""
    payload = (
        f'{{"v":{VERSION},"c":"0x{grant.channel_id.hex()}","t":"0x{grant.track_id.hex()}","s":{int(grant.seq)},'
        f'"k":"{grant.kind.wire}","x":{int(grant.expires_at)},"p":{int(grant.paid_ms)}}}'
    ).encode()
    return _b64(payload) + "." + _b64(hmac.digest(key, payload, "sha256"))


def _invalid(why: str) -> MediaError:
    return MediaError(Code.INVALID_GRANT, f"the grant is not one this relay issued ({why})", status=403)


def verify(key: bytes, token: str, *, now: float) -> Grant:
    """The grant `token` proves; MediaError invalid_grant (403) if forged or malformed, grant_expired (402)."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise _invalid("malformed")
    body, mac = token.split(".")
    try:
        payload, tag = _unb64(body), _unb64(mac)
    except ValueError:
        raise _invalid("not base64url") from None
    if not hmac.compare_digest(tag, hmac.digest(key, payload, "sha256")):
        raise _invalid("bad signature")
    try:  # issued by us, so well-formed unless the format changed
        data = json.loads(payload)
        grant = Grant(
            bytes.fromhex(data["c"][2:]),
            bytes.fromhex(data["t"][2:]),
            int(data["s"]),
            Kind.parse(data["k"]),
            int(data["x"]),
            int(data["p"]),
        )
    except (ValueError, KeyError, TypeError):
        raise _invalid("unknown format") from None
    if data.get("v") != VERSION:
        raise _invalid("unknown version")
    if now >= grant.expires_at:
        raise MediaError(
            Code.GRANT_EXPIRED, "the grant has expired: pay again (or replay a free play) for a new one", status=402
        )
    return grant
