"""Read tokens: a listener's (or its session key's) or an artist's short-lived permission to read its own data.

A token is the EIP-712 message ``ReadAccess(address account, bytes32 channelId, address relay, uint256 notAfter)``
in the channels contract's domain (so it is bound to one chain and one deployment), signed by `account` or a
session key of `account`'s channel, and sent as ``account.channelId.notAfter.signature`` (hex, decimal, hex):

- `account` is whose data is read: a channel's payer (its channels, history, events) or a payee (earnings);
- `channelId` is the one channel it opens, or zero for all of `account`'s reads;
- `relay` is the relay the token is for. It is not on the wire: a relay checks the signature over its own address,
  so a token shown to one relay (or made up by it) opens nothing at another;
- `notAfter` is when it stops working (unix seconds, the relay's clock); relays refuse tokens valid for longer than
  a few minutes, so a leaked one (a URL in a log) is useless soon.

A token is a bearer credential until `notAfter`: anyone holding it reads what it opens. It authorises no payment,
no caps, no close (those are other EIP-712 types). Pure: no I/O; the relay's rules are in relay/read_auth.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.eip712 import Domain, read_access_struct_hash
from chainstream.protocol.signing import PrivateKey, Signature, recover
from chainstream.protocol.types import ZERO_HASH, Address, to_address

#: the HTTP Authorization scheme (``Authorization: ChainStream-Read <token>``)
AUTH_SCHEME = "ChainStream-Read"
#: the query parameter carrying a token where headers cannot be set (EventSource, download links)
QUERY_PARAMETER = "readToken"
#: the longest token text accepted (a well-formed one is 42 + 66 + at most 12 + 132 + 3 = 255 characters)
MAX_TOKEN_LENGTH = 300

_TOKEN = re.compile(r"^(0x[0-9a-fA-F]{40})\.(0x[0-9a-fA-F]{64})\.([0-9]{1,12})\.(0x[0-9a-fA-F]{130})$")


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError(f"read token: {reason}", code=Code.READ_TOKEN_INVALID)


@dataclass(frozen=True)
class ReadToken:
    """A signed ReadAccess message (see the module docstring)."""

    account: Address
    channel_id: bytes
    not_after: int
    signature: Signature

    @property
    def all_channels(self) -> bool:
        """Whether the token opens all of the account's reads rather than one channel's."""
        return self.channel_id == ZERO_HASH

    def digest(self, domain: Domain, relay: str) -> bytes:
        """The EIP-712 digest signed for `relay`."""
        return domain.digest(read_access_struct_hash(self.account, self.channel_id, to_address(relay), self.not_after))

    def signer(self, domain: Domain, relay: str) -> Address:
        """Who signed the token for `relay` (an unrelated address if it was signed for another relay or domain)."""
        try:
            return recover(self.digest(domain, relay), self.signature)
        except ProtocolError as exc:
            raise _invalid(str(exc)) from exc

    def encode(self) -> str:
        return f"{self.account}.0x{self.channel_id.hex()}.{self.not_after}.{self.signature.to_hex()}"

    @classmethod
    def parse(cls, text: str) -> ReadToken:
        """Parse ``account.channelId.notAfter.signature``; ProtocolError(read_token_invalid) if malformed."""
        if len(text) > MAX_TOKEN_LENGTH:
            raise _invalid(f"longer than {MAX_TOKEN_LENGTH} characters")
        match = _TOKEN.match(text)
        if match is None:
            raise _invalid("expected account.channelId.notAfter.signature (0x-hex, 0x-hex, decimal, 0x-hex)")
        account, channel_id, not_after, signature = match.groups()
        return cls(to_address(account), bytes.fromhex(channel_id[2:]), int(not_after), Signature.from_hex(signature))


def sign_read_token(
    key: PrivateKey, domain: Domain, relay: str, *, account: str, not_after: int, channel_id: bytes = ZERO_HASH
) -> ReadToken:
    """A token for `account`'s data at `relay`, signed by `key` (the account itself or its channel's session key)."""
    if len(channel_id) != 32:
        raise ProtocolError("channel id must be 32 bytes", code=Code.BAD_BYTES32)
    if not 0 <= not_after < 10**12:
        raise ProtocolError("notAfter must be unix seconds", code=Code.READ_TOKEN_INVALID)
    token = ReadToken(to_address(account), channel_id, not_after, Signature(27, 0, 0))
    return ReadToken(token.account, channel_id, not_after, key.sign(token.digest(domain, relay)))
