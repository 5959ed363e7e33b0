"""Artists' signed profiles at the relay: the rules a profile must pass before it is stored, and its JSON.

A profile (protocol/profile.py) is accepted when its name is acceptable, the artist itself signed it, its issuedAt
is at most `caps_clock_skew` ahead of the relay's clock (a profile dated far ahead would be the last one the
artist could ever set) and newer than the stored one. The relay hands a profile out with its signature: clients
verify it themselves, so the relay is trusted with keeping the newest profile, never with the name.
"""

from __future__ import annotations

from typing import Any

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol import Domain, Signature
from chainstream.protocol.profile import ArtistProfile, SignedArtistProfile, name_problem
from chainstream.protocol.types import Address
from chainstream.store import Store
from chainstream.store.records import ProfileRecord
from chainstream.verify import Rejection

__all__ = ["accept_profile", "profile_json", "stored_profile"]


def accept_profile(
    store: Store,
    domain: Domain,
    *,
    now: int,
    clock_skew: int,
    artist: Address,
    name: str,
    issued_at: int,
    signature: Signature,
) -> ProfileRecord:
    """Check and store the profile; Rejection (bad_name, profile_from_future, bad_signature, unauthorized_signer,
    stale_profile) if it is refused. Cheap checks first: no signature is recovered for a name that is refused."""
    problem = name_problem(name)
    if problem is not None:
        raise Rejection(Code.BAD_NAME, problem)
    ahead = issued_at - now
    if ahead > clock_skew:
        raise Rejection(
            Code.PROFILE_FROM_FUTURE,
            f"issuedAt is {ahead}s ahead of the relay's clock (at most {clock_skew}s)",
            details={"issuedAt": str(issued_at), "now": str(now)},
        )
    signed = SignedArtistProfile(ArtistProfile(artist, name, issued_at), signature)
    try:
        signed.verify(domain)
    except ProtocolError as exc:
        raise Rejection(Code(exc.code), str(exc)) from exc
    record = ProfileRecord(artist, name, issued_at, signature.to_bytes())
    # Conditional in the database itself: another instance may have stored a newer profile meanwhile.
    if not store.set_profile(record):
        current = store.profile(artist)
        raise Rejection(
            Code.STALE_PROFILE,
            "this profile is not newer than the one stored",
            details={"issuedAt": str(current.issued_at if current else 0)},
        )
    return record


def stored_profile(store: Store, artist: Address) -> ProfileRecord:
    """The artist's stored profile; Rejection(no_profile) if it never signed one."""
    record = store.profile(artist)
    if record is None:
        raise Rejection(Code.NO_PROFILE, f"{artist} has signed no profile")
    return record


def profile_json(record: ProfileRecord) -> dict[str, Any]:
    return {
        "artist": record.artist,
        "name": record.name,
        "issuedAt": record.issued_at,
        "signature": Signature.from_bytes(record.signature).to_hex(),
    }
