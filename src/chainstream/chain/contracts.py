"""Typed clients for the deployed contracts: ChainStreamChannels, TrackRegistry and ERC-20 tokens."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account import Account
from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import BlockIdentifier, TxReceipt

from chainstream.chain.artifacts import error_abis, load_artifact
from chainstream.chain.transactions import TxSender, revert_errors
from chainstream.errors import ChainError
from chainstream.ledger import Listing
from chainstream.pricing import Split, Terms
from chainstream.protocol import Domain, SignedVoucher, Voucher
from chainstream.protocol.eip712 import EIP712_TYPES
from chainstream.protocol.signing import Signature
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address, to_address

#: at most this many blocks per log query (eth_getLogs): providers refuse longer ranges, so long scans go in steps
LOG_RANGE = 2_000

MAX_UINT256 = 2**256 - 1


class ChannelStatus(IntEnum):
    NONE = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(frozen=True)
class ChannelState:
    """A channel as the contract stores it."""

    channel_id: bytes
    payer: Address
    token: Address
    relay: Address
    deposit: int
    settled: int
    session_key: Address
    session_expiry: int
    closes_at: int
    settled_root: bytes
    status: ChannelStatus
    #: the last second (inclusive) at which vouchers signed by `session_key` settle: its expiry, or later when the
    #: key is also the retired key within its rotation grace (re-added after a revocation); 0 without a key.
    #: The contract's sessionKeyValidUntil: what the relay must use to accept and to schedule settlement.
    session_valid_until: int = 0

    @property
    def remaining(self) -> int:
        return self.deposit - self.settled


@dataclass(frozen=True)
class SettledState:
    """What a settlement credited: the payees and cumulative amounts (the next entry's prevAmounts)."""

    channel_id: bytes
    payees: tuple[Address, ...]
    credited: tuple[int, ...]
    play_hash: bytes
    block_number: int
    log_index: int

    @property
    def total(self) -> int:
        return sum(self.credited)


def _event_topic(contract: Contract, name: str) -> bytes:
    abi = next(item for item in contract.abi if item["type"] == "event" and item["name"] == name)
    return bytes(event_abi_to_log_topic(abi))


def settle_entry(signed: SignedVoucher, prev_amounts: tuple[int, ...] | list[int]) -> tuple[Any, ...]:
    """The ABI tuple of IChainStreamChannels.SettleEntry."""
    v = signed.voucher
    sig = signed.signature
    return (v.channel_id, list(v.payees), list(v.amounts), v.play_hash, list(prev_amounts), sig.r_bytes, sig.vs_bytes)


def empty_entry(channel_id: bytes) -> tuple[Any, ...]:
    """A SettleEntry with no voucher (cooperative close at the already settled state)."""
    return (channel_id, [], [], ZERO_HASH, [], ZERO_HASH, ZERO_HASH)


class _Client:
    artifact_name: str

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_address(address)
        self.contract: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(self.address), abi=load_artifact(self.artifact_name).abi
        )


class ChannelsClient(_Client):
    artifact_name = "ChainStreamChannels"

    def __init__(self, w3: Web3, address: str) -> None:
        super().__init__(w3, address)
        self.domain = Domain(chain_id=w3.eth.chain_id, verifying_contract=self.address)
        self._gasless: Address | None = None

    # ------------------------------------------------------------- views
    def channel_id_for(self, payer: str, token: str, relay: str, salt: bytes) -> bytes:
        return bytes(self.contract.functions.channelIdFor(payer, token, relay, salt).call())

    def get_channel(self, channel_id: bytes, block: BlockIdentifier = "latest") -> ChannelState:
        """The channel as of `block`, with its session key's validity as the contract judges it (one more call
        with a key)."""
        raw = self.contract.functions.getChannel(channel_id).call(block_identifier=block)
        session_key = to_address(raw[5])
        valid_until = 0
        if session_key != ZERO_ADDRESS:
            call = self.contract.functions.sessionKeyValidUntil(channel_id, session_key)
            valid_until = int(call.call(block_identifier=block))
        return ChannelState(
            channel_id=channel_id,
            payer=to_address(raw[0]),
            token=to_address(raw[1]),
            relay=to_address(raw[2]),
            deposit=raw[3],
            settled=raw[4],
            session_key=to_address(raw[5]),
            session_expiry=raw[6],
            closes_at=raw[7],
            settled_root=bytes(raw[8]),
            status=ChannelStatus(raw[9]),
            session_valid_until=valid_until,
        )

    def claimable(self, payee: str, token: str = ZERO_ADDRESS) -> int:
        return int(self.contract.functions.claimable(payee, token).call())

    def challenge_period(self) -> int:
        return int(self.contract.functions.challengePeriod().call())

    def settled_state(self, channel_id: bytes, from_block: int = 0) -> SettledState | None:
        """What the channel's last settlement credited (None if never settled).

        ChannelSettled carries only the total; the payees and amounts are the settled voucher's, read back
        from the transaction's calldata — or, when the deposit capped the settlement, from SettlementCapped.
        """
        logs = self.contract.events.ChannelSettled().get_logs(
            from_block=from_block, argument_filters={"channelId": channel_id}
        )
        if not logs:
            return None
        last = logs[-1]
        tx = self.w3.eth.get_transaction(last["transactionHash"])
        receipt = self.w3.eth.get_transaction_receipt(last["transactionHash"])
        return next(s for s in self.settlements_in(tx, receipt) if s.log_index == last["logIndex"])

    def settlements_in(self, tx: Any, receipt: Any) -> list[SettledState]:
        """Every settlement a transaction made (settle, settleBatch or cooperativeClose), in log order.

        Only a transaction sent to this contract can be read back: one that reached it through another contract
        (a forwarder, a wallet contract) carries calldata that is not the settlement's, so it raises ChainError
        rather than take some other contract's arguments for the settled voucher."""
        target = None if tx.get("to") is None else to_address(tx["to"])
        # The gasless contract (created by this one, and the only contract it lets close for a payer) passes the
        # payer's final voucher through unchanged, so its cooperativeCloseFor calldata names the settled voucher.
        via_gasless = target is not None and target != self.address and target == self.gasless_address()
        if target != self.address and not via_gasless:
            raise ChainError(
                f"transaction 0x{bytes(tx['hash']).hex()} settled through another contract: its settled "
                "payees cannot be read from its calldata"
            )
        try:
            decoder = self._gasless_contract() if via_gasless else self.contract
            func, params = decoder.decode_function_input(tx["input"])
        except ValueError as exc:
            raise ChainError(f"transaction 0x{bytes(tx['hash']).hex()}: undecodable settlement call ({exc})") from exc
        if func.fn_name == "settleBatch" and not via_gasless:
            entries = params["entries"]
        elif func.fn_name in ("settle", "cooperativeClose") and not via_gasless:
            entries = [params.get("entry", params.get("finalVoucher"))]
        elif func.fn_name == "cooperativeCloseFor" and via_gasless:
            entries = [params["finalVoucher"]]
        else:
            return []
        settled_topic = _event_topic(self.contract, "ChannelSettled")
        skipped_topic = _event_topic(self.contract, "SettlementSkipped")
        capped = {
            c["logIndex"]: tuple(c["args"]["credited"])
            for c in self.contract.events.SettlementCapped().process_receipt(receipt, errors=DISCARD)
        }
        results: list[SettledState] = []
        position = 0  # every batch entry emits exactly one ChannelSettled or SettlementSkipped, in entry order
        for log in receipt["logs"]:
            if to_address(log["address"]) != self.address or bytes(log["topics"][0]) not in (
                settled_topic,
                skipped_topic,
            ):
                continue
            entry = entries[min(position, len(entries) - 1)]
            position += 1
            if bytes(log["topics"][0]) == skipped_topic:
                continue
            event = self.contract.events.ChannelSettled().process_log(log)
            results.append(
                SettledState(
                    channel_id=bytes(event["args"]["channelId"]),
                    payees=tuple(to_address(p) for p in entry["payees"]),
                    credited=capped.get(log["logIndex"] + 1, tuple(entry["amounts"])),
                    play_hash=bytes(event["args"]["playHash"]),
                    block_number=int(log["blockNumber"]),
                    log_index=int(log["logIndex"]),
                )
            )
        return results

    def gasless_address(self) -> Address:
        """The gas-free entry point contract this one created (ChainStreamChannels.gasless()), read once."""
        if self._gasless is None:
            self._gasless = to_address(self.contract.functions.gasless().call())
        return self._gasless

    def _gasless_contract(self) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(self.gasless_address()), abi=load_artifact("ChainStreamGasless").abi
        )

    def skipped_in(self, receipt: Any) -> list[tuple[bytes, str]]:
        """The batch entries a transaction skipped: (channel id, name of the custom error), in log order."""
        names = {selector: abi["name"] for selector, abi in error_abis().items()}
        return [
            (
                bytes(e["args"]["channelId"]),
                names.get(bytes(e["args"]["reason"]), "0x" + bytes(e["args"]["reason"]).hex()),
            )
            for e in self.contract.events.SettlementSkipped().process_receipt(receipt, errors=DISCARD)
            if to_address(e["address"]) == self.address
        ]

    def prev_amounts(self, channel_id: bytes, from_block: int = 0) -> tuple[int, ...]:
        state = self.settled_state(channel_id, from_block)
        return state.credited if state else ()

    # ------------------------------------------------------ transactions
    def open(
        self,
        sender: TxSender,
        *,
        relay: str,
        amount: int,
        salt: bytes,
        token: str = ZERO_ADDRESS,
        session_key: str = ZERO_ADDRESS,
        session_expiry: int = 0,
    ) -> tuple[bytes, TxReceipt]:
        """Open a channel (approving the token first if needed); returns (channel id, receipt)."""
        if token != ZERO_ADDRESS:
            erc20 = TokenClient(self.w3, token)
            if erc20.allowance(sender.address, self.address) < amount:
                sender.transact(erc20.contract.functions.approve(self.address, MAX_UINT256), action="approve")
        call = self.contract.functions.open(relay, token, amount, salt, session_key, session_expiry)
        receipt = sender.transact(call, value=amount if token == ZERO_ADDRESS else 0, action="open")
        return self.channel_id_for(sender.address, token, relay, salt), receipt

    def open_with_permit(
        self,
        sender: TxSender,
        *,
        relay: str,
        token: str,
        amount: int,
        salt: bytes,
        session_key: str = ZERO_ADDRESS,
        session_expiry: int = 0,
        deadline: int | None = None,
    ) -> tuple[bytes, TxReceipt]:
        """Open a token channel in one transaction with an EIP-2612 permit signed by the sender's key."""
        erc20 = TokenClient(self.w3, token)
        deadline = deadline or self.w3.eth.get_block("latest")["timestamp"] + 3600
        sig = erc20.sign_permit(sender, self.address, amount, deadline)
        call = self.contract.functions.openWithPermit(
            relay, token, amount, salt, session_key, session_expiry, deadline, sig.v, sig.r_bytes, sig.s_bytes
        )
        receipt = sender.transact(call, action="openWithPermit")
        return self.channel_id_for(sender.address, token, relay, salt), receipt

    def top_up(self, sender: TxSender, channel_id: bytes, amount: int, token: str = ZERO_ADDRESS) -> TxReceipt:
        if token != ZERO_ADDRESS:
            erc20 = TokenClient(self.w3, token)
            if erc20.allowance(sender.address, self.address) < amount:
                sender.transact(erc20.contract.functions.approve(self.address, MAX_UINT256), action="approve")
        return sender.transact(
            self.contract.functions.topUp(channel_id, amount),
            value=amount if token == ZERO_ADDRESS else 0,
            action="topUp",
        )

    def set_session_key(self, sender: TxSender, channel_id: bytes, key: str, expiry: int) -> TxReceipt:
        return sender.transact(self.contract.functions.setSessionKey(channel_id, key, expiry), action="setSessionKey")

    def settle(
        self, sender: TxSender, signed: SignedVoucher, prev_amounts: tuple[int, ...] | list[int] = ()
    ) -> TxReceipt:
        return sender.transact(self.contract.functions.settle(settle_entry(signed, prev_amounts)), action="settle")

    def settle_batch(self, sender: TxSender, entries: list[tuple[Any, ...]], gas: int | None = None) -> TxReceipt:
        return sender.transact(self.settle_batch_call(entries), gas=gas, action="settleBatch")

    def settle_batch_call(self, entries: list[tuple[Any, ...]]) -> ContractFunction:
        """The settleBatch call, not sent: for a caller that builds, signs and records the transaction itself (the
        relay's settler writes it to its outbox before sending)."""
        return self.contract.functions.settleBatch(entries)

    def cooperative_close(
        self,
        sender: TxSender,
        final: SignedVoucher | None,
        prev_amounts: tuple[int, ...] | list[int],
        relay_signature: Signature,
        channel_id: bytes | None = None,
    ) -> TxReceipt:
        if final is None:
            if channel_id is None:
                raise ValueError("channel_id is required without a final voucher")
            entry = empty_entry(channel_id)
        else:
            entry = settle_entry(final, prev_amounts)
        call = self.contract.functions.cooperativeClose(entry, relay_signature.r_bytes, relay_signature.vs_bytes)
        return sender.transact(call, action="cooperativeClose")

    def request_close(self, sender: TxSender, channel_id: bytes) -> TxReceipt:
        return sender.transact(self.contract.functions.requestClose(channel_id), action="requestClose")

    def withdraw(self, sender: TxSender, channel_id: bytes) -> TxReceipt:
        return sender.transact(self.contract.functions.withdraw(channel_id), action="withdraw")

    def claim(self, sender: TxSender, token: str = ZERO_ADDRESS, to: str | None = None) -> TxReceipt:
        return sender.transact(self.contract.functions.claim(token, to or sender.address), action="claim")

    def allow_token(self, sender: TxSender, token: str) -> TxReceipt:
        return sender.transact(self.contract.functions.allowToken(token), action="allowToken")


def close_voucher_digest(voucher: Voucher | None, domain: Domain) -> bytes:
    """The voucherDigest a relay's Close signature commits to (zero for "close at the settled state")."""
    if voucher is None or not voucher.payees:
        return ZERO_HASH
    return voucher.digest(domain)


@dataclass(frozen=True)
class TrackInfo:
    track_id: bytes
    owner: Address
    title: str
    split_version: int
    split_hash: bytes
    registered_at: int


class RegistryClient(_Client):
    artifact_name = "TrackRegistry"

    def register_track(
        self, sender: TxSender, track_id: bytes, title: str, token: str, terms: Terms, split: Split
    ) -> TxReceipt:
        call = self.contract.functions.registerTrack(track_id, title, token, terms.as_tuple(), split.as_tuple())
        return sender.transact(call, action="registerTrack")

    def set_terms(self, sender: TxSender, track_id: bytes, token: str, terms: Terms) -> TxReceipt:
        return sender.transact(self.contract.functions.setTerms(track_id, token, terms.as_tuple()), action="setTerms")

    def set_split(self, sender: TxSender, track_id: bytes, split: Split) -> TxReceipt:
        return sender.transact(self.contract.functions.setSplit(track_id, split.as_tuple()), action="setSplit")

    def transfer_track(self, sender: TxSender, track_id: bytes, new_owner: str) -> TxReceipt:
        return sender.transact(self.contract.functions.transferTrack(track_id, new_owner), action="transferTrack")

    def get_track(self, track_id: bytes) -> TrackInfo:
        raw = self.contract.functions.getTrack(track_id).call()
        return TrackInfo(track_id, to_address(raw[0]), raw[1], raw[2], bytes(raw[3]), raw[4])

    def find_track(self, track_id: bytes) -> TrackInfo | None:
        """The track, or None if the registry does not know it (getTrack reverts TrackNotFound); a node that
        cannot be reached still raises."""
        try:
            return self.get_track(track_id)
        except revert_errors():
            return None

    def get_terms(self, track_id: bytes, token: str = ZERO_ADDRESS) -> Terms:
        return Terms.from_tuple(tuple(self.contract.functions.getTerms(track_id, token).call()))

    def get_split(self, track_id: bytes, version: int) -> tuple[Split, bytes]:
        raw, split_hash = self.contract.functions.getSplit(track_id, version).call()
        return Split(tuple(raw[0]), tuple(raw[1]), raw[2], raw[3]), bytes(split_hash)

    def listing(self, track_id: bytes, token: str) -> Listing | None:
        """The track as priced in `token`, read from the registry itself (None if it is not registered): what a
        client prices its vouchers with, whatever a relay's catalog says."""
        info = self.get_track(track_id)
        if info.owner == ZERO_ADDRESS:
            return None
        split, _ = self.get_split(track_id, info.split_version)
        return Listing(track_id, info.title, info.owner, self.get_terms(track_id, token), split, info.split_version)

    def track_ids(self) -> list[bytes]:
        count = self.contract.functions.trackCount().call()
        return [bytes(t) for t in self.contract.functions.trackIds(0, count).call()]


class TokenClient(_Client):
    """An ERC-20 (the mock stablecoin ABI covers mint and permit too)."""

    artifact_name = "MockStablecoin"

    def balance_of(self, owner: str) -> int:
        return int(self.contract.functions.balanceOf(owner).call())

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.contract.functions.allowance(owner, spender).call())

    def mint(self, sender: TxSender, to: str, amount: int) -> TxReceipt:
        return sender.transact(self.contract.functions.mint(to, amount), action="mint")

    def approve(self, sender: TxSender, spender: str, amount: int) -> TxReceipt:
        return sender.transact(self.contract.functions.approve(spender, amount), action="approve")

    def sign_permit(self, owner: TxSender, spender: str, value: int, deadline: int) -> Signature:
        """An EIP-2612 permit signed by the owner's key."""
        nonce = self.contract.functions.nonces(owner.address).call()
        typed = permit_typed_data(self, owner.address, spender, value, nonce, deadline)
        signed = Account.sign_typed_data(owner.account.key, full_message=typed)
        return Signature(v=signed.v, r=signed.r, s=signed.s)


def permit_typed_data(
    token: TokenClient, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    """The EIP-2612 Permit typed data of `token` (its name as the domain's, version "1")."""
    return {
        "types": {
            "EIP712Domain": EIP712_TYPES["EIP712Domain"],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": token.contract.functions.name().call(),
            "version": "1",
            "chainId": token.w3.eth.chain_id,
            "verifyingContract": token.address,
        },
        "message": {"owner": owner, "spender": spender, "value": value, "nonce": nonce, "deadline": deadline},
    }
