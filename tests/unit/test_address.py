"""to_address: our cached EIP-55 checksum must agree with eth_utils on every input, valid or not."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from chainstream.errors import ProtocolError
from chainstream.protocol.types import to_address


@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw: bytes) -> None:
    expected = to_checksum_address(raw)
    assert to_address(raw) == expected
    assert to_address("0x" + raw.hex()) == expected
    assert to_address("0x" + raw.hex().upper()) == expected
    assert to_address(expected) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + "g" * 40,
        "0x" + "1" * 39,
        "0x" + "1" * 41,
        "1x" + "1" * 40,
        "0X" + "1" * 40,
        "0x" + "1_" * 20,
        "0x" + " 1" * 20,
        "0x-" + "1" * 39,
        b"\x00" * 19,
        b"\x00" * 21,
        5,
        None,
    ],
)
def test_rejects_what_is_not_an_address(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        to_address(bad)  # type: ignore[arg-type]
    assert info.value.code == "bad_address"
