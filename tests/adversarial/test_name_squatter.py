"""The name squatter: an attacker who wants a name shown on an address it does not hold, or a name that misleads
(spoofed by control or bidi characters, huge, or dated so far ahead that the artist can never change it), or a
relay that rewrites names in its database (issue 11, artist profiles).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import httpx
import pytest

from chainstream.errors import ProtocolError
from chainstream.protocol import Domain, PrivateKey, Signature
from chainstream.protocol.eip712 import artist_profile_struct_hash
from chainstream.protocol.signing import high_s_twin
from chainstream.sdk import Artist
from tests.integration.relay_fixtures import InProcessRelay, RelayChain, new_wallet, rejected
from tests.integration.test_artist_profiles import fresh_profile
from tests.integration.test_artist_profiles import relay_domain_and_time as domain_and_time
from tests.integration.test_artist_profiles import signed_body as body


def unchecked_body(key: PrivateKey, domain: Domain, name: str, issued_at: int) -> dict[str, Any]:
    """A correctly signed body for a name the protocol's own checks would refuse to build (the attacker's tool)."""
    digest = domain.digest(artist_profile_struct_hash(key.address, name, issued_at))
    return {"name": name, "issuedAt": issued_at, "signature": key.sign(digest).to_hex()}


def test_a_profile_signed_by_another_address_is_refused_403(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """The attacker signs a profile naming the victim's address with its own key (nothing is stored)."""
    victim, attacker = new_wallet(relay_chain, eth=0), new_wallet(relay_chain, eth=0)
    domain, now = domain_and_time(relay)
    http = relay.http()
    url = f"/artists/{victim.address}/profile"
    rejected(
        http.put(url, json=body(attacker, domain, "Victim", now, artist=victim.address)), 403, "unauthorized_signer"
    )
    # nor does its own, valid profile work when sent to the victim's address
    rejected(http.put(url, json=body(attacker, domain, "Victim", now)), 403, "unauthorized_signer")
    rejected(http.get(url), 404, "no_profile")


def test_a_profile_signed_in_another_domain_is_refused_403(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """The attacker replays a profile the victim signed for another chain's deployment."""
    victim = new_wallet(relay_chain, eth=0)
    domain, now = domain_and_time(relay)
    elsewhere = Domain(domain.chain_id + 1, domain.verifying_contract)
    rejected(
        relay.http().put(f"/artists/{victim.address}/profile", json=body(victim, elsewhere, "Elsewhere", now)),
        403,
        "unauthorized_signer",
    )


def test_the_high_s_twin_of_a_stored_profiles_signature_is_refused_422(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """The attacker resends the artist's profile with the malleable twin of its signature."""
    victim, domain, now, url = fresh_profile(relay_chain, relay)
    http = relay.http()
    original = body(victim, domain, "Ada", now)
    assert http.put(url, json=original).status_code == 200
    twin = {**original, "signature": high_s_twin(Signature.from_hex(original["signature"])).to_hex()}
    rejected(http.put(url, json=twin), 422, "bad_signature")


@pytest.mark.parametrize(
    "name",
    [
        "Ada\u202eecalevoL",  # right-to-left override: shows another name than it spells
        "Ada\u200b",  # zero-width space: looks like "Ada"
        "Ada\x00Lovelace",
        "Ada\nLovelace",
        "Ada\u2028Lovelace",  # line separator
        "Ada\u00a0Lovelace",  # no-break space
        " Ada",
        "",
        "Ade\u0301le",  # decomposed: not NFC, so two spellings of one name would verify
        "\ue000",  # private use
    ],
)
def test_a_name_with_control_or_invisible_characters_is_refused_bad_name(
    relay_chain: RelayChain, relay: InProcessRelay, name: str
) -> None:
    """The attacker, holding its own key, signs a name built to mislead or to break a display."""
    key, domain, now, url = fresh_profile(relay_chain, relay)
    rejected(relay.http().put(url, json=unchecked_body(key, domain, name, now)), 422, "bad_name")
    rejected(relay.http().get(url), 404, "no_profile")


def test_a_10_kb_name_is_refused_bad_name_not_stored(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """The attacker signs a 10 kB name to bloat the catalog every listener downloads."""
    key, domain, now, url = fresh_profile(relay_chain, relay)
    reply = rejected(relay.http().put(url, json=unchecked_body(key, domain, "A" * 10_240, now)), 422, "bad_name")
    assert len(reply["error"]["message"]) < 200  # the name is not echoed back
    rejected(relay.http().get(url), 404, "no_profile")


def test_a_profile_dated_in_the_future_is_refused_and_cannot_lock_the_name(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """A profile dated far ahead would be the artist's last; the attacker tricks the artist into signing one."""
    key, domain, now, url = fresh_profile(relay_chain, relay)
    http = relay.http()
    for issued_at in (now + 10 * 365 * 86_400, 2**64 - 1):
        rejected(http.put(url, json=body(key, domain, "Forever", issued_at)), 422, "profile_from_future")
    rejected(http.put(url, json={**body(key, domain, "Forever", now), "issuedAt": 2**64}), 422, "invalid_request")
    assert http.put(url, json=body(key, domain, "Ada", now)).status_code == 200


@pytest.mark.parametrize("address", ["0x1234", "not-an-address", "0x" + "zz" * 20])
def test_a_malformed_address_is_refused_400(relay: InProcessRelay, address: str) -> None:
    """The attacker probes the profile routes with addresses that are not addresses."""
    rejected(relay.http().get(f"/artists/{address}/profile"), 400, "bad_address")


def test_a_relay_that_rewrites_a_stored_name_is_caught_by_the_client(relay_chain: RelayChain, make_relay: Any) -> None:
    """The relay's operator edits the name in its database; the client verifies the signature and refuses it."""
    server = make_relay()
    key = new_wallet(relay_chain, eth=0)
    artist = Artist(key, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=server.client())
    artist.set_name("Ada Lovelace")
    with contextlib.closing(sqlite3.connect(server.database, timeout=30)) as conn:
        conn.execute("UPDATE profiles SET name = 'Mallory' WHERE artist = ?", (key.address,))
        conn.commit()
    assert httpx.get(f"{server.api}/artists/{key.address}/profile", timeout=30).json()["name"] == "Mallory"
    with pytest.raises(ProtocolError) as refused:
        server.client().artist_profile(key.address)
    assert refused.value.code == "untrusted_state"
