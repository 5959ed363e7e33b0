"""The cooperative close: the relay's consent to close a channel at its latest accepted voucher (no payment is
accepted from then on), and what a gas-free close submits with it (the voucher, the settled split, the relay's
signature).

While the relay co-signs, the channel's record carries the consent CLOSE_PENDING (store/records.py `CoopClose`),
then the co-signed voucher's digest: the payment pipeline (relay/service.py) refuses the channel's payments once
either is set, and with a shared database so do the other instances (they read it under the channel's row
lock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from chainstream.codes import Code
from chainstream.protocol import Domain, PrivateKey, Signature, SignedVoucher, Voucher
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.protocol.types import ZERO_HASH
from chainstream.relay.channel_cache import ChannelCache, ChannelRuntime, authorised_signer
from chainstream.store import CLOSE_PENDING, CoopClose, PaymentRecord, Store
from chainstream.verify import Rejection


@dataclass(frozen=True)
class CoSignedClose:
    """The relay's consent: the voucher the channel closes at (None if it has none), the relay's signature over
    the close, and what settlements already credited each payee (the contract's prevAmounts)."""

    latest: PaymentRecord | None
    relay_signature: Signature
    prev_amounts: tuple[int, ...]


@dataclass(frozen=True)
class GasFreeClose:
    """What a gas-free cooperative close submits besides the payer's signature."""

    final: SignedVoucher | None
    prev_amounts: tuple[int, ...]
    relay_signature: Signature


class CooperativeClose:
    """Co-signs cooperative closes of this relay's channels."""

    def __init__(
        self, *, cache: ChannelCache, store: Store, relay_key: PrivateKey, chain_now: Callable[[], float]
    ) -> None:
        self.cache = cache
        self.store = store
        self.relay_key = relay_key
        self.domain: Domain = cache.domain
        self.chain_now = chain_now

    async def cosign(self, channel_id: bytes, voucher_digest_seen: bytes, signature: Signature) -> CoSignedClose:
        """Consent to a cooperative close at the latest accepted voucher; no payment is accepted after it.

        The request is the listener's own Close(channelId, voucherDigest) signed by the payer or its session key
        (anyone could otherwise stop a channel's payments), over the latest voucher the listener knows: it must
        be the relay's latest, or the answer is 409 close_state_mismatch with the relay's state."""
        rt = await self.cache.current(channel_id)
        if rt.record.status == "closed":
            raise Rejection(Code.CHANNEL_NOT_OPEN, "the channel is already closed")
        digest = self.domain.digest(close_struct_hash(channel_id, voucher_digest_seen))
        authorised_signer(rt.record, digest, signature, "a close request", self.chain_now())
        previous = rt.record.coop_close
        rt.record = replace(rt.record, coop_close=CLOSE_PENDING)  # refuse new payments
        await rt.durable()
        # With a shared store, other instances' groups store no payment for the channel from now on (they check
        # the column under the channel's row lock), so the latest payment read next is the last one.
        self._mark(rt, CLOSE_PENDING, shared_only=True)
        latest = self.store.latest_payment(channel_id)
        voucher_digest = latest.digest if latest else ZERO_HASH
        if voucher_digest != voucher_digest_seen:
            self._mark(rt, previous, shared_only=True)
            raise Rejection(
                Code.CLOSE_STATE_MISMATCH,
                "the relay's latest voucher is not the one the close request "
                "names: sync with the channel's state, then ask again",
            )
        self._mark(rt, CoopClose(voucher_digest), shared_only=False)
        close_digest = (latest.voucher if latest else Voucher.empty(channel_id)).close_digest(self.domain)
        settled = self.store.get_settled(channel_id)
        return CoSignedClose(latest, self.relay_key.sign(close_digest), settled.credited if settled else ())

    def _mark(self, rt: ChannelRuntime, consent: CoopClose | None, *, shared_only: bool) -> None:
        """Set the channel's consent to a close (pending, co-signed, or None) in the database, unless `shared_only`
        and no other instance reads it (then memory alone refuses the channel's payments), then in memory."""
        if self.store.shared or not shared_only:
            self.store.set_coop_close(rt.record.channel_id, consent)
        rt.record = replace(rt.record, coop_close=consent)

    def gas_free(self, channel_id: bytes, voucher_digest: bytes) -> GasFreeClose:
        """What a gas-free cooperative close at `voucher_digest` submits: the relay's latest voucher (the one it
        co-signed the close at, else Rejection), the amounts already settled, and the relay's signature."""
        record = self.store.get_channel(channel_id)
        if record is None:
            raise Rejection(Code.UNKNOWN_CHANNEL, "the relay has no such channel")
        if record.coop_close != CoopClose(voucher_digest):
            raise Rejection(
                Code.CLOSE_STATE_MISMATCH,
                "ask for the relay's close (POST /channels/{id}/close) at this voucher first",
            )
        latest = self.store.latest_payment(channel_id)
        final = SignedVoucher(latest.voucher, Signature.from_bytes(latest.signature)) if latest else None
        if (final.voucher.digest(self.domain) if final and final.voucher.payees else ZERO_HASH) != voucher_digest:
            raise Rejection(Code.CLOSE_STATE_MISMATCH, "the co-signed voucher is not the relay's latest")
        settled = self.store.get_settled(channel_id)
        relay_signature = self.relay_key.sign(self.domain.digest(close_struct_hash(channel_id, voucher_digest)))
        return GasFreeClose(final, settled.credited if settled else (), relay_signature)
