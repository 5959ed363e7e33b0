"""Sending transactions from a local key, with reverts decoded into the contracts' custom errors."""

from __future__ import annotations

import ast
import sys
import threading
from dataclasses import dataclass
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.types import TxParams, TxReceipt, Wei

from chainstream.chain.artifacts import error_abis
from chainstream.errors import ChainError
from chainstream.protocol.signing import PrivateKey

#: the priority fee (tip) every transaction offers, wei per gas; what one costs is about base fee + this
PRIORITY_FEE = 1_000_000_000
#: a replacement must raise both the tip and the fee cap by at least this fraction (geth's and anvil's pool rule)
REPLACEMENT_BUMP = (1, 8)  # 12.5 %


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def decode_revert(data: bytes | str | None) -> DecodedError | None:
    """Decode revert data into a custom error of one of our contracts (None if unknown)."""
    if data is None:
        return None
    raw = HexBytes(data)
    if len(raw) < 4:
        return None
    abi = error_abis().get(bytes(raw[:4]))
    if abi is None:
        return None
    types = [i["type"] for i in abi["inputs"]]
    values = abi_decode(types, bytes(raw[4:]))
    return DecodedError(abi["name"], {i["name"]: v for i, v in zip(abi["inputs"], values, strict=True)})


def _tester_failures() -> tuple[type[Exception], ...]:
    """eth-tester's TransactionFailed if the embedded chain is loaded, else nothing: a relay on an RPC node never
    imports eth-tester/py-evm (a third of a second of start-up and a large attack surface it does not use)."""
    module = sys.modules.get("eth_tester.exceptions")
    return (module.TransactionFailed,) if module is not None else ()


def _errors(*kinds: type[Exception]) -> tuple[type[Exception], ...]:
    """`kinds`, plus eth-tester's TransactionFailed when the embedded chain is loaded (for an `except`)."""
    return (*kinds, *_tester_failures())


def revert_errors() -> tuple[type[Exception], ...]:
    """What a reverted eth_call raises: web3's ContractLogicError, or eth-tester's TransactionFailed on the embedded
    chain (a node that cannot be reached raises neither)."""
    return _errors(ContractLogicError)


def _revert_data(exc: Exception) -> bytes | str | None:
    """Revert data from web3's exceptions, or from eth-tester's TransactionFailed (which only has a repr)."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes nest the data
        data = data.get("data")
    if data is None and isinstance(exc, _tester_failures()):
        text = str(exc).removeprefix("execution reverted: ")
        try:
            literal = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        data = literal if isinstance(literal, (bytes, str)) else None
    return data if isinstance(data, (bytes, str)) else None


def chain_error_from(exc: Exception, action: str) -> ChainError:
    """A ChainError naming the contract's custom error when the revert data carries one."""
    data = _revert_data(exc)
    decoded = decode_revert(data)
    if decoded is not None:
        return ChainError(f"{action} reverted: {decoded}", reason=decoded.name, args=decoded.args)
    return ChainError(f"{action} failed: {exc}")


class TxSender:
    """Signs and sends transactions for one key, keeping its own nonce so several can be in flight."""

    def __init__(self, w3: Web3, key: PrivateKey | LocalAccount | str) -> None:
        self.w3 = w3
        if isinstance(key, PrivateKey):
            self.account: LocalAccount = Account.from_key(key.secret)
        elif isinstance(key, str):
            self.account = Account.from_key(key)
        else:
            self.account = key
        self.address = self.account.address
        self._nonce: int | None = None
        self._lock = threading.Lock()

    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")
        nonce = self._nonce
        self._nonce += 1
        return nonce

    def reset_nonce(self) -> None:
        self._nonce = None

    def _fees(self) -> dict[str, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
        return {"maxFeePerGas": 2 * base + PRIORITY_FEE, "maxPriorityFeePerGas": PRIORITY_FEE}

    def build(
        self,
        call: ContractFunction | ContractConstructor | None = None,
        *,
        to: str | None = None,
        value: int = 0,
        gas: int | None = None,
        action: str = "transaction",
    ) -> dict[str, Any]:
        """An unsigned transaction; estimating gas surfaces reverts as ChainError with the decoded reason."""
        tx: dict[str, Any] = {"from": self.address, "value": value, "chainId": self.w3.eth.chain_id, **self._fees()}
        if call is not None:
            try:
                params = tx if gas is None else {**tx, "gas": gas}
                # TxParams is a TypedDict; the fee fields come from a plain dict, so the checker cannot see it
                tx = dict(call.build_transaction(cast(TxParams, params)))
            except _errors(ContractCustomError, ContractLogicError, Web3RPCError, ValueError) as exc:
                raise chain_error_from(exc, action) from exc
        else:
            tx["to"] = to
            tx["gas"] = gas or 21_000
        if gas is not None:
            tx["gas"] = gas
        return tx

    def send(
        self,
        call: ContractFunction | ContractConstructor | None = None,
        *,
        to: str | None = None,
        value: int = 0,
        gas: int | None = None,
        action: str = "transaction",
        wait: bool = True,
    ) -> TxReceipt | HexBytes:
        """Sign and send; by default wait for the receipt and raise ChainError if it reverted."""
        tx = self.build(call, to=to, value=value, gas=gas, action=action)
        with self._lock:
            tx["nonce"] = self._next_nonce()
            signed = self.account.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except _errors(Web3RPCError, ValueError) as exc:
                self.reset_nonce()
                raise chain_error_from(exc, action) from exc
        if not wait:
            return tx_hash
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise ChainError(f"{action} reverted in block {receipt['blockNumber']} (tx {tx_hash.hex()})")
        return receipt

    def transact(
        self,
        call: ContractFunction | ContractConstructor,
        *,
        value: int = 0,
        gas: int | None = None,
        action: str = "transaction",
    ) -> TxReceipt:
        receipt = self.send(call, value=value, gas=gas, action=action)
        assert not isinstance(receipt, (bytes, HexBytes))
        return receipt


def unsigned_from_raw(raw: bytes) -> dict[str, Any]:
    """The fields of a signed EIP-1559 transaction (as `Account.sign_transaction` takes them), without its
    signature: what a replacement at the same nonce re-signs with other fees."""
    fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    for name in ("v", "r", "s", "type"):
        fields.pop(name, None)
    fields["to"] = Web3.to_checksum_address(fields["to"]) if fields.get("to") else None
    fields["data"] = bytes(fields.get("data", b""))
    fields["accessList"] = list(fields.get("accessList", ()))
    return fields


def bumped_fees(
    max_fee: int, tip: int, *, base_fee: int, ceiling: int, min_tip: int = PRIORITY_FEE
) -> tuple[int, int] | None:
    """The (maxFeePerGas, maxPriorityFeePerGas) of a replacement for a transaction offering `max_fee`/`tip`: both
    raised by at least REPLACEMENT_BUMP (a node refuses a smaller raise as "replacement underpriced"), the fee
    cap at least twice the current `base_fee` plus the tip (room for the base fee to rise while it waits).
    None when `ceiling` (the operator's most per gas) leaves no room for a valid replacement: the transaction
    is then left to wait rather than pay more than the operator allowed."""
    num, den = REPLACEMENT_BUMP
    new_tip = max(tip + -(-tip * num // den), min_tip)
    new_max = max(max_fee + -(-max_fee * num // den), 2 * base_fee + new_tip)
    if new_max > ceiling:
        new_max = ceiling
    if new_max < max_fee + -(-max_fee * num // den) or new_tip > new_max:
        return None
    return new_max, new_tip


def fund(w3: Web3, address: str, wei: int) -> None:
    """Send ETH from the node's first unlocked account (embedded chain and anvil dev accounts)."""
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": Wei(wei)})
    w3.eth.wait_for_transaction_receipt(tx_hash)
