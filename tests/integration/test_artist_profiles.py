"""Artist names (issue 11): a profile the artist signs, stored by the relay, shown in the catalog.

A real relay on a real chain: the artist SDK signs ArtistProfile(artist, name, issuedAt) in the deployment's
domain; the relay keeps the newest profile per artist, durably, and hands it out with its signature.
"""

from __future__ import annotations

from typing import Any

import httpx

from chainstream.protocol import Domain, PrivateKey
from chainstream.protocol.profile import ArtistProfile
from chainstream.sdk import Artist
from tests.integration.relay_fixtures import InProcessRelay, RelayChain, new_wallet, rejected, wait_until


def relay_domain_and_time(relay: InProcessRelay) -> tuple[Domain, int]:
    info = httpx.get(f"{relay.api}/info", timeout=30).json()
    return Domain(info["domain"]["chainId"], info["domain"]["verifyingContract"]), int(info["time"])


def fresh_profile(rc: RelayChain, relay: InProcessRelay) -> tuple[PrivateKey, Domain, int, str]:
    """A new artist key, the relay's signing domain and clock, and the key's profile route."""
    key = new_wallet(rc, eth=0)
    domain, now = relay_domain_and_time(relay)
    return key, domain, now, f"/artists/{key.address}/profile"


def signed_body(
    key: PrivateKey, domain: Domain, name: str, issued_at: int, artist: str | None = None
) -> dict[str, Any]:
    profile = ArtistProfile(artist or key.address, name, issued_at)
    return {"name": name, "issuedAt": issued_at, "signature": profile.sign(domain, key).signature.to_hex()}


def artist_of(rc: RelayChain, relay: InProcessRelay, key: PrivateKey | None = None) -> Artist:
    return Artist(key or new_wallet(rc, eth=0), w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())


def test_an_artist_sets_its_name_and_anyone_reads_it_back_with_a_signature_that_verifies(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    artist = artist_of(relay_chain, relay)
    reply = artist.set_name("Ada Lovelace")
    assert reply["artist"] == artist.address and reply["name"] == "Ada Lovelace"

    public = httpx.get(f"{relay.api}/artists/{artist.address}/profile", timeout=30)
    assert public.status_code == 200 and public.json() == reply
    verified = relay.client().artist_profile(artist.address)  # verified by the client, not taken from the relay
    assert verified is not None and verified.profile.name == "Ada Lovelace"
    assert verified.signer(artist.channels.domain) == artist.address


def test_a_newer_profile_replaces_the_older_one(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    artist = artist_of(relay_chain, relay)
    first = artist.set_name("Ada")
    second = artist.set_name("Ada Lovelace")  # within the same second: the SDK dates it after the stored one
    assert second["issuedAt"] > first["issuedAt"]
    assert httpx.get(f"{relay.api}/artists/{artist.address}/profile", timeout=30).json()["name"] == "Ada Lovelace"


def test_an_older_or_equally_old_profile_is_refused_stale_and_the_newer_one_stays(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    key, domain, now, url = fresh_profile(relay_chain, relay)
    http = relay.http()
    assert http.put(url, json=signed_body(key, domain, "Current", now)).status_code == 200

    body = rejected(http.put(url, json=signed_body(key, domain, "Older", now - 60)), 409, "stale_profile")
    assert body["error"]["details"]["issuedAt"] == str(now)
    rejected(http.put(url, json=signed_body(key, domain, "Same age", now)), 409, "stale_profile")
    assert http.get(url).json()["name"] == "Current"


def test_the_catalog_shows_the_name_its_owner_signed_and_keeps_it_across_a_restart(
    relay_chain: RelayChain, make_relay: Any
) -> None:
    server = make_relay()
    catalog = wait_until(lambda: httpx.get(f"{server.api}/catalog", timeout=30).json()["tracks"], what="a catalog")
    ada = relay_chain.chain.key("ada")
    assert all(t["artistName"] is None for t in catalog)  # nobody has signed a name yet

    artist_of(relay_chain, server, ada).set_name("Ada Lovelace")
    tracks = httpx.get(f"{server.api}/catalog", timeout=30).json()["tracks"]
    names = {t["title"]: t["artistName"] for t in tracks}
    assert names["Morning Modem"] == "Ada Lovelace"
    assert {t["artistName"] for t in tracks if t["owner"] != ada.address} == {None}
    modem = next(t for t in tracks if t["title"] == "Morning Modem")
    assert httpx.get(f"{server.api}/tracks/{modem['trackId']}", timeout=30).json()["artistName"] == "Ada Lovelace"

    server.stop()
    restarted = make_relay(actor=server.actor)
    assert httpx.get(f"{restarted.api}/artists/{ada.address}/profile", timeout=30).json()["name"] == "Ada Lovelace"
