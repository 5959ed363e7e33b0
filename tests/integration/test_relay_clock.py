"""Rules that depend on time, across time: a daily cap counts each UTC day (also after a restart), and a session
key stops signing when the chain's clock, not the relay's, says it is about to expire.

The daily-cap test sets the relay's wall clock (`clock=`): midnight cannot be waited for. The session-key test
moves the chain's clock instead (time travel on the embedded chain), which is what the contract judges by.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from chainstream.sdk import RelayError
from tests.integration.relay_fixtures import LAZY, MODEM, PLAY_PRICE, RelayChain, open_listener, wait_until

DAY = 86_400


class SettableClock:
    """The relay's wall clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def utc(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.UTC).timestamp()


def test_the_daily_cap_starts_over_at_utc_midnight_and_counts_the_day_after_a_restart(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    clock = SettableClock(utc(2026, 11, 24, 23, 58))
    # The SDK dates its caps by this machine's clock, days after the relay's: allow that much skew.
    relay = make_relay(clock=clock, caps_clock_skew=10**9, **LAZY)
    listener = open_listener(relay_chain, relay)
    assert listener.relay is not None
    listener.relay.max_clock_offset = 10.0**9  # and its read tokens by the relay's clock, however far off
    track = relay_chain.track(MODEM)
    listener.set_caps(daily=2 * PLAY_PRICE)
    listener.play(track)
    clock.now += 60  # 23:59
    assert listener.play(track).spent_today == 2 * PLAY_PRICE
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.code == "daily_cap_exceeded"

    clock.now = utc(2026, 11, 25, 0, 0, 1)  # a new UTC day: yesterday's spending no longer counts
    assert listener.play(track).spent_today == PLAY_PRICE

    # A restarted relay rebuilds today's spending from its database: one play today, two yesterday.
    relay.stop()
    restarted = make_relay(actor=relay.actor, clock=clock, caps_clock_skew=10**9, **LAZY)
    listener.relay = restarted.client()
    assert restarted.channel(listener.channel_id)["spentToday"] == str(PLAY_PRICE)
    assert listener.play(track).spent_today == 2 * PLAY_PRICE
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.code == "daily_cap_exceeded"
    assert listener.state is not None and listener.state.seq == 4


def test_a_session_key_is_settled_before_and_refused_near_its_expiry_on_the_chains_clock(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """The key expires two hours of chain time after the channel opened. The chain jumps ahead of the wall
    clock (time travel): inside the session margin (10 min) the relay refuses the key's vouchers — the payer's
    wallet still pays — and, since that voucher can no longer grow, settles it on its own (once per key: earlier,
    each play could force a settlement). Judged on the relay's wall clock, the key would have hours left and both
    would be missed."""
    relay = make_relay(session_margin=600, **LAZY)
    listener = open_listener(relay_chain, relay, session_ttl=7_200)
    expiry = relay_chain.chain.now() + 7_200 - 1  # open_channel read the latest block before mining its own
    track = relay_chain.track(MODEM)
    assert listener.play(track).seq == 1
    channels = relay.relay.service.channels

    relay_chain.chain.advance(7_200 - 900)  # 15 minutes before expiry, on the chain's clock
    wait_until(lambda: relay.service.chain_now() >= expiry - 900, what="the relay to see the chain's time")
    assert listener.play(track).seq == 2  # still outside the session margin

    relay_chain.chain.advance(400)  # 8 minutes before expiry: inside the margin
    wait_until(lambda: relay.service.chain_now() >= expiry - 500, what="the relay to see the chain's time")
    settled = wait_until(lambda: channels.settled_state(listener.channel_id), what="the deadline settlement")
    assert settled.credited and sum(settled.credited) == 2 * PLAY_PRICE
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.code == "session_key_expired" and info.value.status == 403
    listener.session_key = listener.wallet  # the payer's own wallet signs from now on
    assert listener.play(track).seq == 3
