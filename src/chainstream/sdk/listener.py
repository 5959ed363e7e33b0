"""The listener's SDK: open a channel once, then pay every play, second or tip with a signed voucher.

The session key (a fresh key authorised in the channel at open, with an expiry) signs every voucher, so
nothing per play needs the wallet. The SDK keeps the channel's ledger locally and derives each voucher with
the same code the relay verifies with; should the two ever drift, it resynchronises from the relay's state.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from chainstream.chain.contracts import ChannelsClient, ChannelState, RegistryClient, SettledState
from chainstream.chain.deploy import Deployment
from chainstream.chain.transactions import TxSender
from chainstream.errors import ChainStreamError, ProtocolError
from chainstream.ledger import (
    AcceptedPayment,
    Charge,
    LedgerState,
    Listing,
    apply,
    charge_download,
    charge_play,
    charge_seconds,
    charge_tip,
    replay,
)
from chainstream.pricing import Split
from chainstream.protocol import Kind, PrivateKey, Signature, SignedVoucher, Voucher, recover
from chainstream.protocol.eip712 import caps_struct_hash, close_struct_hash
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address, to_address
from chainstream.relay.api.models import ChannelSummary, CloseReply, HistoryItem, PaymentReply
from chainstream.sdk import gasless as _gasless
from chainstream.sdk.client import ReadIdentity, RelayClient, RelayError

DEFAULT_SESSION_TTL = 7 * 86_400
HISTORY_PAGE = 500  # the relay's largest history page
#: the most receipts a resync replays: a relay claiming a longer history (a lying one can claim any seq and serve
#: made-up pages for ever) is refused before any page is read. A channel past it cannot be attached to by a new
#: device; open a new one.
MAX_REPLAY = 100_000


@dataclass(frozen=True)
class Paid:
    """The relay's acknowledgement of a payment."""

    seq: int
    amount: int
    total: int
    remaining: int
    spent_today: int
    status: str
    grant: dict[str, Any] | None = None  # a payment for a track: the grant that opens its audio


@dataclass(frozen=True)
class Streamed:
    """A track fetched segment by segment: the fMP4 audio (init segment + media segments), and what it cost."""

    audio: bytes
    segments: int
    payments: int
    seconds_paid: int


class Listener:
    def __init__(
        self,
        wallet: PrivateKey,
        *,
        w3: Web3,
        deployment: Deployment,
        relay: RelayClient | None = None,
        session_key: PrivateKey | None = None,
    ) -> None:
        self.wallet = wallet
        self.address: Address = wallet.address
        self.w3 = w3
        self.deployment = deployment
        self._relay: RelayClient | None = None
        self.channels = ChannelsClient(w3, deployment.channels)
        self.registry = RegistryClient(w3, deployment.registry)
        self.tx = TxSender(w3, wallet)
        self.session_key = session_key or PrivateKey.generate()
        self.channel_id: bytes | None = None
        self.token: Address = ZERO_ADDRESS
        self.state: LedgerState | None = None
        self.signatures: dict[int, Signature] = {}
        self._listings: dict[bytes, Listing] = {}
        self.relay = relay

    @property
    def relay(self) -> RelayClient | None:
        return self._relay

    @relay.setter
    def relay(self, client: RelayClient | None) -> None:
        """The relay client; it signs this listener's private reads with its keys (RelayClient.add_reader)."""
        self._relay = client
        if client is not None:
            client.add_reader(self._read_identities)
            client.pin_domain(self.channels.domain)

    def _read_identities(self) -> list[ReadIdentity]:
        """Who reads this listener's data at the relay: the session key its channel, the wallet everything."""
        own = [ReadIdentity(self.session_key, self.address, self.channel_id)] if self.channel_id else []
        return [*own, ReadIdentity(self.wallet, self.address)]

    # ------------------------------------------------------------- channel
    def open_channel(
        self,
        deposit: int,
        *,
        token: str = ZERO_ADDRESS,
        relay_address: str | None = None,
        permit: bool = False,
        session_ttl: int = DEFAULT_SESSION_TTL,
        salt: bytes | None = None,
    ) -> bytes:
        """Escrow `deposit` once and authorise this SDK's session key; returns the channel id."""
        relay_address = relay_address or (self.relay.info()["relay"] if self.relay else None)
        if relay_address is None:
            raise ProtocolError("which relay serves the channel? pass relay_address", code="no_relay")
        expiry = int(self.w3.eth.get_block("latest")["timestamp"]) + session_ttl
        salt = salt or os.urandom(32)
        token = to_address(token)
        if permit:
            cid, _ = self.channels.open_with_permit(
                self.tx,
                relay=relay_address,
                token=token,
                amount=deposit,
                salt=salt,
                session_key=self.session_key.address,
                session_expiry=expiry,
            )
        else:
            cid, _ = self.channels.open(
                self.tx,
                relay=relay_address,
                token=token,
                amount=deposit,
                salt=salt,
                session_key=self.session_key.address,
                session_expiry=expiry,
            )
        self.channel_id, self.token, self.state = cid, token, LedgerState.opened(cid)
        self._listings = {}  # priced per token
        self.signatures.clear()
        return cid

    def top_up(self, amount: int) -> None:
        self.channels.top_up(self.tx, self._cid(), amount, self.token)

    # ------------------------------------------------------ gas-free (issue 13)
    def open_gasless(
        self,
        amount: int,
        *,
        token: str,
        max_fee: int | None = None,
        session_ttl: int = DEFAULT_SESSION_TTL,
        salt: bytes | None = None,
    ) -> bytes:
        """Open a token channel without ETH: the wallet signs a permit and the channel's terms, the relay submits
        and keeps its quoted fee (refused, fee_above_max, above `max_fee`); the deposit is `amount - fee`."""
        cid = _gasless.open_gasless(self, amount, token, max_fee=max_fee, session_ttl=session_ttl, salt=salt)
        self.channel_id, self.token, self.state = cid, to_address(token), LedgerState.opened(cid)
        self._listings = {}
        self.signatures.clear()
        return cid

    def top_up_gasless(self, amount: int, *, max_fee: int | None = None) -> int:
        """Top up without ETH (permit + signed TopUpChannel through the relay); returns what the deposit gained."""
        return _gasless.top_up_gasless(self, amount, max_fee=max_fee)

    def close_gasless(self, *, max_fee: int | None = None) -> int:
        """Close cooperatively without ETH (the relay submits; its fee comes out of the refund); returns the refund."""
        return _gasless.close_gasless(self, max_fee=max_fee)

    def authorise_session_key(
        self, *, session_ttl: int = DEFAULT_SESSION_TTL, key: PrivateKey | None = None
    ) -> Address:
        """Authorise a new session key on chain (one wallet transaction); later payments are signed by it.
        The contract keeps the previous key valid for its rotation grace, so what it signed can still settle."""
        key = key or PrivateKey.generate()
        expiry = int(self.w3.eth.get_block("latest")["timestamp"]) + session_ttl
        self.channels.set_session_key(self.tx, self._cid(), key.address, expiry)
        self.session_key = key
        return key.address

    def chain_state(self) -> ChannelState:
        return self.channels.get_channel(self._cid())

    # ------------------------------------------------------------- paying
    def listing(self, track_id: bytes) -> Listing:
        """The track's terms and split in the channel's token, read from the TrackRegistry on chain (not from the
        relay's catalog: vouchers are priced and split only on what the artists published)."""
        listing = self._listings.get(track_id)
        if listing is None:
            listing = self.registry.listing(track_id, self.token)
            if listing is None:
                raise ProtocolError(f"track 0x{track_id.hex()} is not registered", code="unknown_track")
            self._listings[track_id] = listing
        return listing

    def play(self, track_id: bytes) -> Paid:
        return self._pay(
            charge_play(self._state(), self.listing(track_id)), {"kind": Kind.PLAY.wire, "trackId": _hex(track_id)}
        )

    def listen(self, track_id: bytes, seconds: int) -> Paid:
        return self._pay(
            charge_seconds(self.listing(track_id), seconds),
            {"kind": Kind.SECONDS.wire, "trackId": _hex(track_id), "seconds": seconds},
        )

    def download(self, track_id: bytes) -> Paid:
        return self._pay(
            charge_download(self._state(), self.listing(track_id)),
            {"kind": Kind.DOWNLOAD.wire, "trackId": _hex(track_id)},
        )

    def tip(self, amount: int, *, track_id: bytes | None = None, artist: str | None = None, message: str = "") -> Paid:
        listing = self.listing(track_id) if track_id is not None else None
        spec: dict[str, Any] = {"kind": Kind.TIP.wire, "amount": str(amount), "memo": message}
        if track_id is not None:
            spec["trackId"] = _hex(track_id)
        else:
            spec["artist"] = to_address(artist or "")
        return self._pay(charge_tip(amount, listing=listing, artist=artist, memo=message), spec)

    def sign_next(self, charge: Charge) -> tuple[LedgerState, Signature]:
        """The next ledger state for `charge` and the session key's signature over its voucher (no I/O)."""
        state, _ = apply(self._state(), charge)
        return state, self.session_key.sign(state.voucher.digest(self.channels.domain))

    def _pay(self, charge: Charge, spec: dict[str, Any]) -> Paid:
        if self.relay is None:
            raise ProtocolError("no relay to pay through", code="no_relay")
        state, signature = self.sign_next(charge)
        body = payment_body(state, spec, signature)
        try:
            reply = self.relay.post(f"/channels/{_hex(self._cid())}/payments", body)
        except RelayError as exc:
            if exc.state is not None:
                self.resync(exc.state)
            if exc.code in ("voucher_mismatch", "unknown_track", "not_offered"):
                self._listings = {}  # priced from a stale catalog (terms or split changed): re-read it next time
            raise
        self.state = state
        self.signatures[state.seq] = signature
        ack = PaymentReply.model_validate(reply)
        return Paid(
            ack.seq, int(ack.amount), int(ack.total), int(ack.remaining), int(ack.spentToday), ack.status, ack.grant
        )

    # ------------------------------------------------------------- audio
    def stream(self, track_id: bytes, *, max_segments: int | None = None) -> Streamed:
        """Fetch a track's audio as a player would, paying as it goes: a per-play track is paid once (its play's
        grant opens every segment); a per-second track is paid one segment ahead (the seconds of the next segment
        whenever the relay answers 402 for it). `max_segments` stops early (a listener who stops listening)."""
        relay = self._client()
        manifest = relay.get(f"/tracks/{_hex(track_id)}/media")
        listing = self.listing(track_id)
        per_second = listing.terms.per_second > 0
        grant: str | None = None
        payments = seconds = 0
        if not per_second:
            grant = self._grant_token(self.play(track_id))
            payments = 1
        parts = [relay.fetch(f"/tracks/{_hex(track_id)}/init")]
        segments = manifest["segments"][:max_segments] if max_segments is not None else manifest["segments"]
        for seg in segments:
            for _attempt in range(3):
                try:
                    headers = {manifest["grantHeader"]: grant} if grant else {}
                    parts.append(relay.fetch(f"/tracks/{_hex(track_id)}/segments/{seg['index']}", headers))
                    break
                except RelayError as exc:
                    if exc.status != 402 or not per_second:
                        raise
                    pay = max(1, math.ceil(float(seg["duration"])))
                    grant = self._grant_token(self.listen(track_id, pay))
                    payments += 1
                    seconds += pay
            else:
                raise ProtocolError(f"the relay kept refusing segment {seg['index']}", code="not_served")
        return Streamed(b"".join(parts), len(segments), payments, seconds)

    def download_original(self, track_id: bytes) -> bytes:
        """Buy the track (a download) and fetch its original file; a track this channel bought already is
        fetched again with the grant of a free play (its receipts prove the purchase)."""
        owned = track_id in self._state().owned
        grant = self._grant_token(self.play(track_id) if owned else self.download(track_id))
        return self._client().fetch(f"/tracks/{_hex(track_id)}/original", {"X-ChainStream-Grant": grant})

    @staticmethod
    def _grant_token(paid: Paid) -> str:
        if paid.grant is None:
            raise ProtocolError("the relay acknowledged the payment without a grant", code="no_grant")
        return str(paid.grant["token"])

    def _client(self) -> RelayClient:
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        return self.relay

    def resync(self, summary: dict[str, Any]) -> None:
        """Adopt the relay's view of the channel (after a rejection that says our state drifted), once it is shown
        to be what this listener signed: its latest voucher must be signed by this channel's payer or one of its
        session keys, and the relay's history must replay (receipt by receipt, priced by the registry's splits)
        into exactly that voucher. The pricing counters (plays per track, tracks owned) are derived from those
        receipts; a relay claiming others, or unable to show a consistent history, is refused (untrusted_state)
        and nothing is adopted or signed."""
        try:
            parsed = ChannelSummary.model_validate(summary, strict=True)
            v, seq = parsed.voucher, parsed.seq
            if seq < 0:
                raise ValueError(f"seq {seq!r}")
            voucher = Voucher(
                self._cid(),
                tuple(to_address(p) for p in v.payees),
                tuple(int(a) for a in v.amounts),
                bytes.fromhex(v.playHash[2:]),
            )
            claimed_plays = {bytes.fromhex(t[2:]): n for t, n in parsed.plays.items()}
            claimed_owned = frozenset(bytes.fromhex(t[2:]) for t in parsed.owned)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(
                f"the relay's channel state is malformed ({exc}): not adopted", code="untrusted_state"
            ) from exc
        if seq > 0:
            self._check_signed(voucher, v.signature)
        state = self._verified_state(seq, voucher)
        if dict(state.plays) != claimed_plays or state.owned != claimed_owned:
            raise ProtocolError(
                "the relay's play counts or owned tracks differ from the receipts this channel signed: not adopted",
                code="untrusted_state",
            )
        self.state = state

    def _verified_state(self, seq: int, voucher: Voucher) -> LedgerState:
        """The ledger state at `seq` recomputed from receipts (ours up to our own state, the relay's history after
        it), checked to end at `voucher`. Falls back to a replay from the channel's opening when our own state is
        not on the relay's path (another device signed from the same seq)."""
        genesis = LedgerState.opened(self._cid())
        starts = [genesis] if seq <= MAX_REPLAY else []
        if self.state is not None and 0 < self.state.seq <= seq and seq - self.state.seq <= MAX_REPLAY:
            starts.insert(0, self.state)
        if not starts:
            raise ProtocolError(
                f"the relay claims {seq} payments on this channel, more than this client replays ({MAX_REPLAY}):"
                " the relay's channel state is not adopted",
                code="untrusted_state",
            )
        splits: dict[bytes, list[Split]] = {}

        def splits_of(track_id: bytes) -> list[Split]:
            if track_id not in splits:
                splits[track_id] = self._split_versions(track_id)
            return splits[track_id]

        problem = "no history"
        for start in starts:
            try:
                state = replay(start, self._history_between(start.seq, seq), splits_of, self.channels.domain)
            except ProtocolError as exc:
                problem = str(exc)
                continue
            if state.seq == seq and state.voucher == voucher:
                return state
            problem = "the relay's history does not lead to its signed voucher"
        raise ProtocolError(f"{problem}: the relay's channel state is not adopted", code="untrusted_state")

    def _history_between(self, after: int, upto: int) -> list[AcceptedPayment]:
        """The relay's accepted payments with after < seq <= upto, oldest first (paged back from `upto`)."""
        if upto <= after:
            return []
        if self.relay is None:
            raise ProtocolError("no relay to read the channel's history from", code="no_relay")
        out: dict[int, AcceptedPayment] = {}
        before = upto + 1
        while before > after + 1:
            body = self.relay.get(f"/channels/{_hex(self._cid())}/history", limit=HISTORY_PAGE, before=before)
            raw = body.get("items") if isinstance(body, dict) else None
            if not isinstance(raw, list):
                raise ProtocolError("the relay's history is malformed (no items list)", code="untrusted_state")
            page = [_accepted_payment(item) for item in raw]
            page = [p for p in page if after < p.seq < before]
            if not page:
                break
            for p in page:
                out.setdefault(p.seq, p)
            before = min(p.seq for p in page)
        return [out[s] for s in sorted(out)]

    def _split_versions(self, track_id: bytes) -> list[Split]:
        """Every split the track has had (TrackRegistry versions 1..current); none for an id that is not a track
        (a direct tip's address word). Version 1 is read first: getTrack reverts for an unknown id."""
        _, first_hash = self.registry.contract.functions.getSplit(track_id, 1).call()
        if bytes(first_hash) == ZERO_HASH:
            return []
        current = self.registry.get_track(track_id).split_version
        return [self.registry.get_split(track_id, v)[0] for v in range(1, current + 1)]

    def _check_signed(self, voucher: Voucher, signature: str | None) -> None:
        if signature is None:
            raise ProtocolError("the relay's channel state carries no signature", code="untrusted_state")
        signer = recover(voucher.digest(self.channels.domain), Signature.from_hex(signature))
        if signer in (self.address, self.session_key.address):
            return
        cid = self._cid()  # another device's key: the chain says which keys the channel has
        keys = {
            self.channels.get_channel(cid).session_key,
            to_address(self.channels.contract.functions.retiredSessionKey(cid).call()[0]),
        }
        if signer not in keys - {ZERO_ADDRESS}:
            raise ProtocolError(
                f"the relay's channel state is signed by {signer}, not by this channel's payer or a "
                "session key of it: not adopted",
                code="untrusted_state",
            )

    # ------------------------------------------------------------ visibility
    def spending(self) -> dict[str, Any]:
        """Deposit, spent, settled, remaining, today's spend and caps, as the relay sees them."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        summary: dict[str, Any] = self.relay.get(f"/channels/{_hex(self._cid())}")
        return summary

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        items: list[dict[str, Any]] = self.relay.get(f"/channels/{_hex(self._cid())}/history", limit=limit)["items"]
        return items

    def set_caps(self, *, daily: int = 0, session: int = 0) -> dict[str, Any]:
        """Ask the relay to refuse payments past `daily` per UTC day and past `session` in total (0 = no cap).

        Lowering or setting caps is signed by the session key; raising or lifting one by the wallet (the relay
        does not let a session key loosen the limits meant for it)."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        current = self.spending()
        # Unix seconds, like the web player; strictly after the caps in force so that a newer message wins.
        issued_at = max(int(time.time()), int(current.get("capsIssuedAt", 0)) + 1)
        digest = self.channels.domain.digest(caps_struct_hash(self._cid(), daily, session, issued_at))
        loosens = any(
            cap is not None and (new == 0 or new > int(cap))
            for cap, new in ((current.get("dailyCap"), daily), (current.get("sessionCap"), session))
        )
        signature = (self.wallet if loosens else self.session_key).sign(digest)
        reply: dict[str, Any] = self.relay.put(
            f"/channels/{_hex(self._cid())}/caps",
            {
                "dailyCap": str(daily),
                "sessionCap": str(session),
                "issuedAt": issued_at,
                "signature": signature.to_hex(),
            },
        )
        return reply

    # --------------------------------------------------------------- closing
    def close_cooperatively(self) -> int:
        """Ask the relay to co-sign the final state, then close and get the unspent deposit back at once."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        cid = self._cid()
        # The request names the latest voucher this listener knows, signed like a payment (session key).
        voucher = self.state.voucher if self.state is not None else Voucher.empty(cid)
        voucher_digest = voucher.digest(self.channels.domain) if voucher.payees else ZERO_HASH
        request_sig = self.session_key.sign(self.channels.domain.digest(close_struct_hash(cid, voucher_digest)))
        reply = CloseReply.model_validate(
            self.relay.post(
                f"/channels/{_hex(cid)}/close",
                {"voucherDigest": _hex(voucher_digest), "signature": request_sig.to_hex()},
            ),
            strict=True,
        )
        relay_sig = Signature.from_hex(reply.relaySignature)
        final = None
        if reply.voucher is not None:
            v = reply.voucher
            voucher = Voucher(
                cid,
                tuple(to_address(p) for p in v.payees),
                tuple(int(a) for a in v.amounts),
                bytes.fromhex(v.playHash[2:]),
            )
            final = SignedVoucher(voucher, Signature.from_hex(v.signature or ""))
        before = self.channels.get_channel(cid)
        self.channels.cooperative_close(self.tx, final, self.channels.prev_amounts(cid), relay_sig, channel_id=cid)
        after = self.channels.get_channel(cid)
        return before.deposit - after.settled

    def request_close(self) -> int:
        """Start the unilateral close; returns when the challenge window ends (unix time)."""
        self.channels.request_close(self.tx, self._cid())
        return self.channels.get_channel(self._cid()).closes_at

    def withdraw(self) -> int:
        """After the window: take back the unspent deposit; returns the refund."""
        state = self.channels.get_channel(self._cid())
        self.channels.withdraw(self.tx, self._cid())
        return state.deposit - state.settled

    def settle_self(self, voucher: SignedVoucher | None = None) -> int:
        """Settle on-chain without the relay (e.g. the relay is gone): our latest signed voucher by default.

        The contract lets only the relay settle while the channel is open and in the first half of a close
        window; from the second half anyone may (request_close first). Before that, ChainError SettleNotAllowed."""
        if voucher is None:
            state = self._state()
            if state.seq == 0:
                return 0
            voucher = SignedVoucher(state.voucher, self.signatures[state.seq])
        cid = self._cid()
        before = self.channels.get_channel(cid).settled
        self.channels.settle(self.tx, voucher, self.channels.prev_amounts(cid))
        return self.channels.get_channel(cid).settled - before

    def settled_state(self) -> SettledState | None:
        return self.channels.settled_state(self._cid())

    # ---------------------------------------------------------------- helpers
    def _cid(self) -> bytes:
        if self.channel_id is None:
            raise ProtocolError("open or attach a channel first", code="no_channel")
        return self.channel_id

    def _state(self) -> LedgerState:
        if self.state is None:
            raise ProtocolError("open or attach a channel first", code="no_channel")
        return self.state

    def attach(self, channel_id: bytes) -> None:
        """Use an existing channel (this SDK's session key must be the channel's): state from the relay."""
        self.channel_id = channel_id
        chain = self.channels.get_channel(channel_id)
        if chain.payer != self.address:
            raise ChainStreamError(f"channel 0x{channel_id.hex()} belongs to {chain.payer}")
        self.token = chain.token
        self._listings = {}  # priced per token
        self.state = None  # until the relay's state is verified (resync), nothing can be signed on this channel
        self.signatures.clear()
        if self.relay is not None:
            self.resync(self.spending())
        else:
            self.state = LedgerState.opened(channel_id)


def payment_body(state: LedgerState, charge: dict[str, Any], signature: Signature) -> dict[str, Any]:
    """The JSON a relay takes for one payment (POST /channels/{id}/payments)."""
    v = state.voucher
    return {
        "seq": state.seq,
        "charge": charge,
        "voucher": {"payees": list(v.payees), "amounts": [str(a) for a in v.amounts], "playHash": _hex(v.play_hash)},
        "signature": signature.to_hex(),
    }


def _accepted_payment(item: dict[str, Any]) -> AcceptedPayment:
    """One item of GET /channels/{id}/history, parsed strictly (a malformed item is an untrusted state)."""
    try:
        parsed = HistoryItem.model_validate(item, strict=True)
        target, digest = bytes.fromhex(parsed.target[2:]), bytes.fromhex(parsed.digest[2:])
        if len(target) != 32 or len(digest) != 32:
            raise ValueError("target and digest must be 32 bytes")
        return AcceptedPayment(
            parsed.seq, Kind.parse(parsed.kind), target, parsed.units, int(parsed.amount), parsed.memo, digest
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"the relay's history item is malformed ({exc})", code="untrusted_state") from exc


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()
