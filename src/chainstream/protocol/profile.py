"""An artist's profile: the name an address goes by, signed by that address (pure, no I/O).

The message is the EIP-712 ``ArtistProfile(address artist, string name, uint64 issuedAt)`` under the relay's
domain. A relay stores the newest one per artist and hands it out with its signature, so a client checks the
signature itself and never has to trust the relay for the name: a relay can withhold a profile or serve an older
one the artist signed, never invent one.

A name is 1..64 characters of printable text in Unicode NFC: no control, format (zero-width, bidi override),
private-use, unassigned or surrogate code points, no line or paragraph separators, no whitespace other than the
ASCII space, and no leading or trailing space. The name is signed exactly as given: it is checked, never
rewritten, so the bytes the artist signed are the bytes everyone verifies.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.eip712 import Domain, artist_profile_struct_hash, typed_data
from chainstream.protocol.signing import PrivateKey, Signature, recover
from chainstream.protocol.types import Address, to_address

MAX_NAME_CHARS = 64
MAX_ISSUED_AT = 2**64 - 1  # uint64


def name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable artist name, or None if it is."""
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        return f"a name is 1 to {MAX_NAME_CHARS} characters, this one has {len(name)}"
    # str.isprintable is False for categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs other than the ASCII space
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"a name holds printable text only (U+{ord(bad):04X} is not)"
    if name != name.strip(" "):
        return "a name does not start or end with a space"
    if not unicodedata.is_normalized("NFC", name):
        return "a name is in Unicode NFC (normalise it before signing)"
    return None


def check_name(name: str) -> str:
    """`name` itself, or ProtocolError(bad_name) saying what is wrong with it."""
    problem = name_problem(name)
    if problem is not None:
        raise ProtocolError(problem, code=Code.BAD_NAME)
    return name


@dataclass(frozen=True)
class ArtistProfile:
    """The unsigned message: `artist` goes by `name`, as of `issued_at` (unix seconds; a newer one replaces it)."""

    artist: Address
    name: str
    issued_at: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "artist", to_address(self.artist))
        check_name(self.name)
        if not 0 <= self.issued_at <= MAX_ISSUED_AT:
            raise ProtocolError("issuedAt is a uint64", code=Code.BAD_NAME)

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(artist_profile_struct_hash(self.artist, self.name, self.issued_at))

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The document a wallet signs (eth_signTypedData_v4)."""
        return typed_data(
            domain, "ArtistProfile", {"artist": self.artist, "name": self.name, "issuedAt": self.issued_at}
        )

    def sign(self, domain: Domain, key: PrivateKey) -> SignedArtistProfile:
        return SignedArtistProfile(self, key.sign(self.digest(domain)))


@dataclass(frozen=True)
class SignedArtistProfile:
    profile: ArtistProfile
    signature: Signature

    def signer(self, domain: Domain) -> Address:
        """Who signed it (ProtocolError bad_signature for a malformed or high-s signature)."""
        return recover(self.profile.digest(domain), self.signature)

    def verify(self, domain: Domain) -> None:
        """ProtocolError(unauthorized_signer) unless the artist itself signed it."""
        signer = self.signer(domain)
        if signer != self.profile.artist:
            raise ProtocolError(
                f"the profile of {self.profile.artist} is signed by {signer}, not by the artist",
                code=Code.UNAUTHORIZED_SIGNER,
            )
