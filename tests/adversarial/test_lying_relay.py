"""Attacker: the relay itself, lying to the listener's SDK about the channel (review issue 8, finding 3).

The relay answers every read the SDK makes. Here it is a real relay behind a proxy that rewrites its answers
(`LyingRelay`): counters in the channel state (plays, owned), the receipt history, the state's signature,
the catalog. Whatever it says, the SDK must sign only what its own receipts and the TrackRegistry on chain
justify, and refuse (`untrusted_state`, nothing signed) a state it cannot verify.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chainstream.errors import ChainStreamError, PricingError, ProtocolError
from chainstream.pricing import Split, Terms, play_price
from chainstream.protocol import Kind, PlayReceipt, PrivateKey
from chainstream.protocol.types import ZERO_HASH
from chainstream.sdk import Artist, Listener, RelayClient
from tests.integration.relay_fixtures import (
    BLUES,
    ETH,
    GWEI,
    MODEM,
    OWN,
    InProcessRelay,
    RelayChain,
    new_wallet,
    open_listener,
    wait_until,
)

Rewrite = Callable[[httpx.Request, Any], Any]


class LyingRelay(httpx.BaseTransport):
    """Forwards to the real relay and lets a test rewrite each JSON answer (`rewrite(request, body)` -> body);
    `answer(request)` may instead fabricate one (status, body) without forwarding. Records what it was sent."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.rewrite: Rewrite = lambda _request, body: body
        self.answer: Callable[[httpx.Request], tuple[int, Any] | None] = lambda _request: None
        self.sent: list[tuple[str, str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.method, request.url.path, body))
        fabricated = self.answer(request)
        if fabricated is not None:
            return httpx.Response(fabricated[0], json=fabricated[1])
        response = self.real.handle_request(request)
        response.read()
        body = json.loads(response.content)
        if response.status_code != 200:  # the lies are in answers; refusals (e.g. of a read token) pass through
            return httpx.Response(response.status_code, json=body)
        return httpx.Response(response.status_code, json=self.rewrite(request, body))

    def payments_sent(self) -> list[Any]:
        return [body for method, path, body in self.sent if method == "POST" and path.endswith("/payments")]


def lying_client(relay: InProcessRelay, transport: LyingRelay) -> RelayClient:
    return RelayClient(relay.url, client=httpx.Client(base_url=relay.url, transport=transport, timeout=30))


def summary_path(listener: Listener) -> str:
    return f"/api/v1/channels/0x{listener.channel_id.hex()}"  # type: ignore[union-attr]


def refuse_next_payment_with(transport: LyingRelay, state: dict[str, Any]) -> None:
    """The relay answers the next payment with a drift rejection carrying `state` (what the SDK resyncs on)."""

    def answer(request: httpx.Request) -> tuple[int, Any] | None:
        if request.method == "POST" and request.url.path.endswith("/payments"):
            return 409, {"error": {"code": "voucher_mismatch", "message": "resync"}, "state": state}
        return None

    transport.answer = answer


def amount_of(payment: dict[str, Any]) -> int:
    return sum(int(a) for a in payment["voucher"]["amounts"])


def test_inflated_play_count_is_refused_and_the_next_play_keeps_its_true_price(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The relay claims 9 earlier plays of a stream-to-own track so that the SDK signs a 512x play price."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(OWN)
    terms = listener.listing(track).terms
    listener.play(track)
    listener.play(track)
    honest = listener.state
    lie = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    lie["plays"] = {"0x" + track.hex(): 9}

    transport = LyingRelay()
    listener.relay = lying_client(relay, transport)
    refuse_next_payment_with(transport, lie)
    with pytest.raises(ProtocolError) as info:
        listener.play(track)
    assert info.value.code == "untrusted_state"
    assert listener.state == honest  # nothing adopted
    assert [amount_of(p) - honest.spent for p in transport.payments_sent()] == [play_price(terms, 3)]

    with pytest.raises(ProtocolError) as info:
        listener.resync(lie)  # directly, too
    assert info.value.code == "untrusted_state" and listener.state == honest

    listener.relay = relay.client()
    paid = listener.play(track)  # the real relay accepts the third play at the third play's price
    assert paid.amount == play_price(terms, 3) and paid.seq == 3


def test_hidden_download_is_refused_and_the_track_is_not_bought_twice(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The relay drops a bought track from `owned` so that the SDK pays for the download a second time."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(BLUES)
    listener.download(track)
    lie = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    lie["owned"] = []

    transport = LyingRelay()
    transport.rewrite = lambda request, body: lie if request.url.path == summary_path(listener) else body
    device = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    device.relay = lying_client(relay, transport)
    with pytest.raises(ProtocolError) as info:
        device.attach(listener.channel_id)  # type: ignore[arg-type]
    assert info.value.code == "untrusted_state"
    with pytest.raises(ChainStreamError):
        device.download(track)  # no state adopted: nothing to sign on
    assert transport.payments_sent() == []

    honest = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=relay.client())
    honest.attach(listener.channel_id)  # type: ignore[arg-type]
    assert honest.state is not None and track in honest.state.owned  # derived from the receipts
    with pytest.raises(PricingError) as owned:
        honest.download(track)
    assert owned.value.code == "already_owned"


def test_history_rewritten_to_match_a_lie_is_refused(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The relay lies consistently: it reports the plays as seconds in its history and no plays in the state."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(OWN)
    listener.play(track)
    listener.play(track)
    lie = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    lie["plays"] = {}

    def rewrite(request: httpx.Request, body: Any) -> Any:
        if request.url.path == summary_path(listener):
            return lie
        if request.url.path.endswith("/history"):
            return {**body, "items": [{**item, "kind": "seconds"} for item in body["items"]]}
        return body

    transport = LyingRelay()
    transport.rewrite = rewrite
    device = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    device.relay = lying_client(relay, transport)
    with pytest.raises(ProtocolError) as info:
        device.attach(listener.channel_id)  # type: ignore[arg-type]
    assert info.value.code == "untrusted_state" and device.state is None


def test_history_withheld_is_refused(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The relay serves a signed state but no receipts behind it, so its counters cannot be checked."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    listener.play(relay_chain.track(OWN))
    transport = LyingRelay()
    transport.rewrite = lambda request, body: {**body, "items": []} if request.url.path.endswith("/history") else body
    device = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    device.relay = lying_client(relay, transport)
    with pytest.raises(ProtocolError) as info:
        device.attach(listener.channel_id)  # type: ignore[arg-type]
    assert info.value.code == "untrusted_state"


def test_forged_state_signature_is_refused(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The relay re-signs the channel state with a key of its own, paying itself, and offers it on a rejection."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)
    listener.play(track)
    honest = listener.state
    forger = PrivateKey.generate()
    state = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    assert honest is not None
    forged_voucher = honest.voucher.add({forger.address: 10**15}, _receipt_after(honest))
    signature = forger.sign(forged_voucher.digest(listener.channels.domain))
    state["voucher"] = {
        "payees": list(forged_voucher.payees),
        "amounts": [str(a) for a in forged_voucher.amounts],
        "playHash": "0x" + forged_voucher.play_hash.hex(),
        "signature": signature.to_hex(),
    }
    state["seq"] = honest.seq + 1
    transport = LyingRelay()
    listener.relay = lying_client(relay, transport)
    refuse_next_payment_with(transport, state)
    with pytest.raises(ProtocolError) as info:
        listener.play(track)
    assert info.value.code == "untrusted_state" and listener.state == honest
    assert len(transport.payments_sent()) == 1  # the honest play only, nothing signed on the forged state


def _receipt_after(state: Any) -> PlayReceipt:
    return PlayReceipt(state.seq + 1, bytes(12) + bytes(20), Kind.TIP, 0, 10**15, ZERO_HASH)


def test_payees_nobody_published_are_never_paid(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The relay's catalog names the attacker in the track's split; the SDK pays the registry's split only."""
    attacker = new_wallet(relay_chain, eth=0).address
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)

    def rewrite(request: httpx.Request, body: Any) -> Any:
        if "/tracks/" in request.url.path or request.url.path.endswith("/catalog"):
            tracks = body.get("tracks", [body])
            for t in tracks:
                t["split"] = {"recipients": [attacker], "bps": [10_000], "feeRecipient": ETH, "feeBps": 0}
        return body

    transport = LyingRelay()
    transport.rewrite = rewrite
    listener.relay = lying_client(relay, transport)
    listener.play(track)
    published = listener.registry.listing(track, ETH)
    assert published is not None
    assert attacker not in listener.state.voucher.payees  # type: ignore[union-attr]
    assert set(listener.state.voucher.payees) == set(published.split.apply(published.terms.per_play))  # type: ignore[union-attr]


def test_catalog_price_differing_from_the_chain_is_not_signed(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The relay's catalog quotes 100x the registered price; the SDK signs the registered price."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)

    def rewrite(request: httpx.Request, body: Any) -> Any:
        if "/tracks/" in request.url.path or request.url.path.endswith("/catalog"):
            for t in body.get("tracks", [body]):
                for terms in t["terms"].values():
                    terms["perPlay"] = str(int(terms["perPlay"]) * 100)
        return body

    transport = LyingRelay()
    transport.rewrite = rewrite
    listener.relay = lying_client(relay, transport)
    paid = listener.play(track)
    registered = listener.registry.get_terms(track, ETH).per_play
    assert paid.amount == registered and amount_of(transport.payments_sent()[0]) == registered


def test_control_an_honest_history_is_adopted_with_counters_from_its_receipts(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """Not an attack, the control: every kind of charge and a split change replay into the signed voucher."""
    artist = Artist(new_wallet(relay_chain), w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    track = os.urandom(32)
    artist.register_track(
        track, "Versions", Terms(per_play=1_000 * GWEI, per_second=10 * GWEI), Split((artist.address,), (10_000,))
    )
    wait_until(lambda: relay.http().get(f"/tracks/0x{track.hex()}").status_code == 200, what="the catalog")
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    listener.play(track)
    listener.play(relay_chain.track(OWN))
    listener.play(relay_chain.track(OWN))
    listener.listen(track, 3)
    listener.tip(777, artist=new_wallet(relay_chain, eth=0).address, message="thanks")
    listener.download(relay_chain.track(BLUES))
    collaborator = new_wallet(relay_chain, eth=0).address
    artist.set_split(track, Split((artist.address, collaborator), (6_000, 4_000)))
    wait_until(lambda: relay.http().get(f"/tracks/0x{track.hex()}").json()["splitVersion"] == 2, what="split v2")
    listener.attach(listener.channel_id)  # type: ignore[arg-type]  # replays from the opening: split v1 receipts too
    listener.play(track)

    device = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=relay.client())
    device.attach(listener.channel_id)  # type: ignore[arg-type]
    assert device.state == listener.state
    assert device.state is not None and device.state.seq == 7
    assert dict(device.state.plays) == {track: 2, relay_chain.track(OWN): 2}
    assert device.state.owned == frozenset({relay_chain.track(BLUES)})
    assert collaborator in device.state.voucher.payees
