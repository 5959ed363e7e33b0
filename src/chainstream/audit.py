"""Reconciliation of a deployment, read from the chain alone: every wei deposited is paid to a payee (claimed or
still claimable), refunded, or still escrowed, per token — `chainstream audit`, the demo's last step, and tests.

Every figure comes from the contracts' state and events since the deployment block; nothing from a relay."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.table import Table
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from chainstream.chain.contracts import ChannelsClient, ChannelStatus, RegistryClient, TokenClient
from chainstream.chain.deploy import Deployment
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from chainstream.tokens import TokenInfo


def _short(address: str) -> str:
    return f"{address[:8]}…{address[-4:]}"


@dataclass
class PayeeBalance:
    address: Address
    name: str
    role: str  # "platform" or "artist"
    claimed: dict[Address, int] = field(default_factory=dict)
    claimable: dict[Address, int] = field(default_factory=dict)


@dataclass
class TokenReconciliation:
    token: TokenInfo
    deposits: int = 0
    claimed_artists: int = 0
    claimable_artists: int = 0
    claimed_platform: int = 0
    claimable_platform: int = 0
    refunds: int = 0
    escrowed: int = 0
    settled: int = 0  # sum over channels of what left them for payees
    contract_balance: int = 0
    channels: int = 0
    open_channels: int = 0

    @property
    def paid(self) -> int:
        return self.claimed_artists + self.claimable_artists + self.claimed_platform + self.claimable_platform

    @property
    def accounted(self) -> int:
        return self.paid + self.refunds + self.escrowed

    @property
    def balanced(self) -> bool:
        return (
            self.deposits == self.accounted
            and self.settled == self.paid
            and self.contract_balance == self.claimable_artists + self.claimable_platform + self.escrowed
        )


def reconcile(
    w3: Web3, deployment: Deployment, names: dict[Address, str], tokens: list[TokenInfo]
) -> tuple[list[TokenReconciliation], list[PayeeBalance]]:
    """Every figure from chain state and events since the deployment: deposits, credits, claims, refunds."""
    channels = ChannelsClient(w3, deployment.channels)
    start = deployment.deploy_block
    result = {t.address: TokenReconciliation(t) for t in tokens}
    token_of = _deposits_and_refunds(channels, start, result)
    payees = _Payees(names, _fee_recipients(RegistryClient(w3, deployment.registry), start))
    _channel_states(channels, start, token_of, result, payees)
    for log in channels.contract.events.Claimed().get_logs(from_block=start):
        p = payees.of(log["args"]["payee"])
        token = to_address(log["args"]["token"])
        p.claimed[token] = p.claimed.get(token, 0) + int(log["args"]["amount"])
    _payee_totals(channels, payees.by_address.values(), tokens, result)
    for t in tokens:
        if t.address == ZERO_ADDRESS:
            result[t.address].contract_balance = int(w3.eth.get_balance(Web3.to_checksum_address(deployment.channels)))
        else:
            result[t.address].contract_balance = TokenClient(w3, t.address).balance_of(deployment.channels)
    order = {"artist": 0, "platform": 1}
    return list(result.values()), sorted(payees.by_address.values(), key=lambda p: (order[p.role], p.name))


def _deposits_and_refunds(
    channels: ChannelsClient, start: int, result: dict[Address, TokenReconciliation]
) -> dict[bytes, Address]:
    """Add every deposit, top-up and refund since `start` to its token's figures; the token of each channel."""
    events = channels.contract.events
    token_of: dict[bytes, Address] = {}

    def channel_token(cid: bytes) -> Address:
        """A channel opened before `start` (a wrong deployment block) is read from the chain: it is then counted
        without its opening deposit, and the reconciliation shows the gap instead of failing."""
        if cid not in token_of:
            token_of[cid] = channels.get_channel(cid).token
        return token_of[cid]

    for log in events.ChannelOpened().get_logs(from_block=start):
        cid = bytes(log["args"]["channelId"])
        token_of[cid] = to_address(log["args"]["token"])
        result[token_of[cid]].deposits += int(log["args"]["deposit"])
    for log in events.ChannelToppedUp().get_logs(from_block=start):
        result[channel_token(bytes(log["args"]["channelId"]))].deposits += int(log["args"]["amount"])
    for log in events.ChannelClosed().get_logs(from_block=start):
        result[channel_token(bytes(log["args"]["channelId"]))].refunds += int(log["args"]["refund"])
    return token_of


def _fee_recipients(registry: RegistryClient, start: int) -> set[Address]:
    """Every fee recipient a split named since `start` (the platform's payees)."""
    fee_recipients: set[Address] = set()
    for log in registry.contract.events.SplitSet().get_logs(from_block=start):
        fee = to_address(log["args"]["split"]["feeRecipient"])
        if fee != ZERO_ADDRESS:
            fee_recipients.add(fee)
    return fee_recipients


class _Payees:
    """The payees met so far, each with its name and role (a fee recipient is the platform)."""

    def __init__(self, names: dict[Address, str], fee_recipients: set[Address]) -> None:
        self.names = names
        self.fee_recipients = fee_recipients
        self.by_address: dict[Address, PayeeBalance] = {}

    def of(self, raw: str) -> PayeeBalance:
        address = to_address(raw)
        if address not in self.by_address:
            role = "platform" if address in self.fee_recipients else "artist"
            self.by_address[address] = PayeeBalance(address, self.names.get(address, _short(address)), role)
        return self.by_address[address]


def _channel_states(
    channels: ChannelsClient,
    start: int,
    token_of: dict[bytes, Address],
    result: dict[Address, TokenReconciliation],
    payees: _Payees,
) -> None:
    """Each channel's settled and escrowed amounts as the chain holds them; its settled payees join `payees`."""
    for cid, token in token_of.items():
        state = channels.get_channel(cid)
        rec = result[token]
        rec.channels += 1
        rec.settled += state.settled
        if state.status != ChannelStatus.CLOSED:
            rec.open_channels += 1
            rec.escrowed += state.deposit - state.settled
        settled = channels.settled_state(cid, from_block=start) if state.settled else None
        for address in settled.payees if settled else ():
            payees.of(address)


def _payee_totals(
    channels: ChannelsClient,
    payees: Iterable[PayeeBalance],
    tokens: list[TokenInfo],
    result: dict[Address, TokenReconciliation],
) -> None:
    """Each payee's claimable balance per token, and the claimed and claimable totals of artists and platform."""
    for p in payees:
        for t in tokens:
            p.claimable[t.address] = channels.claimable(p.address, t.address)
            rec = result[t.address]
            if p.role == "platform":
                rec.claimed_platform += p.claimed.get(t.address, 0)
                rec.claimable_platform += p.claimable[t.address]
            else:
                rec.claimed_artists += p.claimed.get(t.address, 0)
                rec.claimable_artists += p.claimable[t.address]


def reconciliation_table(rec: TokenReconciliation) -> Table:
    t = rec.token
    ok, bad = "[bold green]✓[/]", "[bold red]✗[/]"
    table = Table(
        title=f"RECONCILIATION — {t.symbol}  ({rec.channels} channel{'' if rec.channels == 1 else 's'}, "
        f"{rec.open_channels} still open)",
        title_style="bold",
    )
    table.add_column("")
    table.add_column("read from the chain", style="dim")
    table.add_column(t.symbol, justify="right")
    table.add_row("[bold]deposits", "ChannelOpened, ChannelToppedUp", t.num(rec.deposits), end_section=True)
    table.add_row("artists, collaborators, label", "", t.num(rec.claimed_artists + rec.claimable_artists))
    table.add_row("  [dim]claimed", "Claimed events", f"[dim]{t.num(rec.claimed_artists)}")
    table.add_row("  [dim]still claimable", "claimable(payee, token)", f"[dim]{t.num(rec.claimable_artists)}")
    table.add_row("platform fees", "", t.num(rec.claimed_platform + rec.claimable_platform))
    table.add_row("  [dim]claimed", "Claimed events", f"[dim]{t.num(rec.claimed_platform)}")
    table.add_row("  [dim]still claimable", "claimable(payee, token)", f"[dim]{t.num(rec.claimable_platform)}")
    table.add_row("refunds to listeners", "ChannelClosed.refund", t.num(rec.refunds))
    table.add_row("still escrowed", "getChannel: deposit − settled", t.num(rec.escrowed), end_section=True)
    table.add_row("[bold]accounted for", "", t.num(rec.accounted))
    table.add_row(
        f"{ok if rec.deposits == rec.accounted else bad} deposits − accounted", "", t.num(rec.deposits - rec.accounted)
    )
    table.add_row(
        f"{ok if rec.settled == rec.paid else bad} settled = paid to payees",
        "Σ getChannel().settled",
        t.num(rec.settled),
    )
    in_contract = rec.claimable_artists + rec.claimable_platform + rec.escrowed
    table.add_row(
        f"{ok if rec.contract_balance == in_contract else bad} held = claimable + escrowed",
        "balance of the contract",
        t.num(rec.contract_balance),
        end_section=True,
    )
    table.add_row("[bold]balanced", "", "[bold green]yes[/]" if rec.balanced else "[bold red]NO[/]")
    return table


def deployment_tokens(w3: Web3, deployment: Deployment) -> list[TokenInfo]:
    """ETH and every token the channels contract allowed since the deployment (symbol and decimals read from
    the token; a token without them is shown by its address with 18 decimals)."""
    channels = ChannelsClient(w3, deployment.channels)
    tokens = [TokenInfo(ZERO_ADDRESS, "ETH", 18)]
    for log in channels.contract.events.TokenAllowed().get_logs(from_block=deployment.deploy_block):
        address = to_address(log["args"]["token"])
        erc20 = TokenClient(w3, address).contract.functions
        try:
            symbol, decimals = str(erc20.symbol().call()), int(erc20.decimals().call())
        except (ValueError, ContractLogicError, BadFunctionCallOutput):
            symbol, decimals = _short(address), 18
        tokens.append(TokenInfo(address, symbol, decimals))
    return tokens
