"""The happy path end to end: open, pay three plays, settle, claim."""

from __future__ import annotations

from chainstream.pricing import Split
from chainstream.protocol import Kind, PlayReceipt, Voucher
from tests.integration.conftest import Chain


def test_open_settle_claim_round_trip(chain: Chain) -> None:
    listener = chain.key("listener")
    cid, _ = chain.channels.open(chain.tx("listener"), relay=chain.address("relay"), amount=10**18, salt=b"\x01" * 32)
    split = Split.solo(chain.address("artist"))
    voucher = Voucher.empty(cid)
    for seq in range(1, 4):
        receipt = PlayReceipt(
            seq=seq, target=b"\x22" * 32, kind=Kind.PLAY, units=1, amount=10**15, split_hash=split.hash
        )
        voucher = voucher.add(split.apply(10**15), receipt)
    chain.channels.settle(chain.tx("relay"), voucher.sign(chain.channels.domain, listener))
    assert chain.channels.get_channel(cid).settled == 3 * 10**15
    assert chain.channels.prev_amounts(cid) == (3 * 10**15,)
    before = chain.balance("artist")
    receipt = chain.channels.claim(chain.tx("artist"))
    assert chain.balance("artist") == before + 3 * 10**15 - receipt["gasUsed"] * receipt["effectiveGasPrice"]
