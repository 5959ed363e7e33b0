"""The artist-name rule and the ArtistProfile message (protocol/profile.py), with no chain and no server."""

from __future__ import annotations

import pytest

from chainstream.errors import ProtocolError
from chainstream.protocol import Domain, PrivateKey
from chainstream.protocol.profile import MAX_NAME_CHARS, ArtistProfile, name_problem

DOMAIN = Domain(31337, "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC")
KEY = PrivateKey(b"\x04" * 32)
OTHER = PrivateKey(b"\x05" * 32)


@pytest.mark.parametrize(
    "name", ["Ada Lovelace", "A", "Zoë", "Björk & the Σ", "坂本龍一", "🎵 x 🎵", "a" * MAX_NAME_CHARS]
)
def test_printable_nfc_names_of_1_to_64_characters_are_accepted(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * (MAX_NAME_CHARS + 1),
        "Ada\tLovelace",
        "Ada\x7f",
        "\u202eAda",
        "Ad\u200da",
        "Ada\u2029",
        "Ada\u3000Lovelace",
        "Ada ",
        "Zoe\u0308",
        "\ud800",
        "\U000e0041",
    ],
)
def test_empty_long_control_invisible_padded_or_decomposed_names_are_refused(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(ProtocolError) as refused:
        ArtistProfile(KEY.address, name, 1)
    assert refused.value.code == "bad_name"


def test_only_the_artist_itself_signs_its_profile() -> None:
    profile = ArtistProfile(KEY.address, "Ada", 1_700_000_000)
    profile.sign(DOMAIN, KEY).verify(DOMAIN)
    with pytest.raises(ProtocolError) as forged:
        profile.sign(DOMAIN, OTHER).verify(DOMAIN)
    assert forged.value.code == "unauthorized_signer"
    with pytest.raises(ProtocolError):  # another deployment's domain recovers someone else
        profile.sign(DOMAIN, KEY).verify(Domain(1, DOMAIN.verifying_contract))


def test_the_digest_binds_the_name_the_date_and_the_address() -> None:
    base = ArtistProfile(KEY.address, "Ada", 1).digest(DOMAIN)
    assert base != ArtistProfile(KEY.address, "Adb", 1).digest(DOMAIN)
    assert base != ArtistProfile(KEY.address, "Ada", 2).digest(DOMAIN)
    assert base != ArtistProfile(OTHER.address, "Ada", 1).digest(DOMAIN)
