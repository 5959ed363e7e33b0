"""The attacker is a stranger to the channel: no key of its payer, relay or payees, only an account and gas.

Finding 5 of the security review (issue 8): relay ids were a uint16 counter that anyone could advance (a 1-wei
channel naming any address registers it), and open reverted once 65,535 relays were registered, so no new relay
could ever be used. Now the first 65,535 relays get a compact id and later relays are stored with each of their
channels: registrations cannot lock anyone out. Then the stranger's other tries: settle, close, withdraw, claim
or change the keys of someone else's channel.

Real chains (eth-tester and anvil, `chain`); the counter is moved with anvil_setStorageAt (anvil only).
"""

from __future__ import annotations

import pytest
from eth_utils import keccak as eth_keccak

from chainstream.chain.node import is_embedded
from chainstream.chain.transactions import fund
from chainstream.errors import ChainError
from chainstream.protocol import PrivateKey
from tests.integration.conftest import CHALLENGE_PERIOD, Chain
from tests.integration.helpers import (
    ETH,
    FINNEY,
    close_signature,
    cooperative_close,
    events,
    new_address,
    open_channel,
    reverts,
    salt,
    settle,
    sign,
    voucher,
)

#: Storage slot of ChainStreamChannels.relayCount (checked against relayCount() before it is written).
RELAY_COUNT_SLOT = 10
MAX_RELAY_ID = 2**16 - 1
ARTIST = new_address("stranger-artist")


def set_relay_count(chain: Chain, value: int) -> None:
    """Pretend `value` relays were registered (what 65,535 one-wei channels would do), by a storage write."""
    if is_embedded(chain.w3):
        pytest.skip("storage writes need anvil (anvil_setStorageAt)")
    c = chain.channels.contract
    current = int.from_bytes(chain.w3.eth.get_storage_at(c.address, RELAY_COUNT_SLOT), "big")
    assert current == c.functions.relayCount().call(), "relayCount moved: update RELAY_COUNT_SLOT"
    chain.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setStorageAt", [c.address, hex(RELAY_COUNT_SLOT), "0x" + value.to_bytes(32, "big").hex()]
    )
    assert c.functions.relayCount().call() == value


def new_relay(chain: Chain, label: str) -> str:
    key = PrivateKey(eth_keccak(text=f"relay-{label}"))
    chain.keys[label] = key
    fund(chain.w3, key.address, 10**18)
    return label


# ----------------------------------------------------------------------- finding 5: relay-id exhaustion


def test_relayIdsExhausted_newRelayStillOpensSettlesAndCloses(chain: Chain) -> None:
    """After 65,535 registrations (the counter at its maximum) a never-seen relay is still usable, end to end."""
    set_relay_count(chain, MAX_RELAY_ID)
    relay = new_relay(chain, "late-relay")
    cid = open_channel(chain, 10 * FINNEY, label="late", relay=relay)  # reverted (overflow) before the fix
    c = chain.channels
    assert c.get_channel(cid).relay == chain.address(relay)
    assert c.contract.functions.relayCount().call() == MAX_RELAY_ID  # no id taken, none needed
    first = sign(chain, voucher(cid, {ARTIST: 2 * FINNEY}))
    with reverts("SettleNotAllowed", channelId=cid):  # a stranger is still not the relay
        settle(chain, first, by="stranger")
    settle(chain, first, by=relay)
    final = sign(chain, voucher(cid, {ARTIST: 3 * FINNEY}))
    with reverts("CloseInvalidRelaySignature", channelId=cid):  # consent must come from this channel's relay
        cooperative_close(chain, cid, final, [2 * FINNEY], close_signature(chain, cid, final.voucher, "relay"))
    cooperative_close(chain, cid, final, [2 * FINNEY], close_signature(chain, cid, final.voucher, relay))
    assert c.claimable(ARTIST) == 3 * FINNEY


def test_relayIdsExhausted_registeredRelaysKeepTheirIds(chain: Chain) -> None:
    """Registrations past the limit change nothing for relays that have an id: new channels reuse it."""
    open_channel(chain, FINNEY, label="before")  # registers "relay" (if not already)
    set_relay_count(chain, MAX_RELAY_ID)
    receipt_cid = open_channel(chain, FINNEY, label="after")
    assert chain.channels.get_channel(receipt_cid).relay == chain.address("relay")
    relay = new_relay(chain, "spam-relay")
    cid, receipt = chain.channels.open(
        chain.tx("stranger"), relay=chain.address(relay), amount=1, salt=salt("spam"), token=ETH
    )
    assert events(chain.channels.contract, "RelayRegistered", receipt) == []
    assert chain.channels.get_channel(cid).relay == chain.address(relay)


# ---------------------------------------------------------------------- someone else's channel and balance


def test_strangerSettlesOpenChannel_revertsSettleNotAllowed(chain: Chain) -> None:
    """A stranger settles a valid voucher of an open channel (to pick which voucher lands): refused."""
    cid = open_channel(chain, 10 * FINNEY, label="s1")
    signed = sign(chain, voucher(cid, {ARTIST: FINNEY}))
    with reverts("SettleNotAllowed", channelId=cid, caller=chain.address("stranger"), opensAt=0):
        settle(chain, signed, by="stranger")
    assert chain.channels.get_channel(cid).settled == 0


def test_strangerClosesOrChangesKeys_revertsChannelNotPayer(chain: Chain) -> None:
    """A stranger requests a close, closes cooperatively with the relay's consent, or sets a session key."""
    cid = open_channel(chain, 10 * FINNEY, label="s2")
    stranger = chain.tx("stranger")
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("stranger")):
        chain.channels.request_close(stranger, cid)
    with reverts("ChannelNotPayer", channelId=cid):
        cooperative_close(chain, cid, None, by="stranger")
    with reverts("ChannelNotPayer", channelId=cid):
        chain.channels.set_session_key(stranger, cid, chain.address("stranger"), chain.now() + 3_600)
    assert chain.channels.get_channel(cid).status.name == "OPEN"


def test_strangerWithdrawsAfterWindow_refundGoesToPayerOnly(chain: Chain) -> None:
    """A stranger calls withdraw when the window is over: the refund goes to the payer, never to the caller."""
    cid = open_channel(chain, 10 * FINNEY, label="s3")
    settle(chain, sign(chain, voucher(cid, {ARTIST: 4 * FINNEY})))
    chain.channels.request_close(chain.tx("listener"), cid)
    chain.advance(CHALLENGE_PERIOD + 1)
    payer_before, stranger_before = chain.balance("listener"), chain.balance("stranger")
    receipt = chain.channels.withdraw(chain.tx("stranger"), cid)
    gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert chain.balance("listener") == payer_before + 6 * FINNEY
    assert chain.balance("stranger") == stranger_before - gas


def test_strangerClaimsSomeoneElsesBalance_revertsNothingToClaim(chain: Chain) -> None:
    """A stranger claims (to itself) while a payee has a balance: it can only ever claim its own, nothing."""
    cid = open_channel(chain, 10 * FINNEY, label="s4")
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 5 * FINNEY})))
    with reverts("NothingToClaim", payee=chain.address("stranger")):
        chain.channels.claim(chain.tx("stranger"), to=chain.address("stranger"))
    assert chain.channels.claimable(chain.address("artist")) == 5 * FINNEY
    with pytest.raises(ChainError):  # and the token admin's power is the allowlist, not balances
        chain.channels.claim(chain.tx("deployer"), to=chain.address("deployer"))
    assert chain.channels.claimable(chain.address("artist")) == 5 * FINNEY
