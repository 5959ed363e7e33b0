"""HTTP client for the relay API, with rejections raised as RelayError carrying the relay's stable code.

Private reads (a channel's summary and history, a listener's channels, an artist's earnings, filtered events) carry
a read token (protocol/read_token.py), signed on the fly by whoever registered as able to read them
(`add_reader`: the Listener with its session key and wallet, the Artist with its key) and reused until shortly
before it expires. Callers just `get(path)`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from chainstream.errors import ChainStreamError, ProtocolError, RecoverableError
from chainstream.protocol import Domain, PrivateKey, Signature, recover
from chainstream.protocol.eip712 import relay_identity_struct_hash
from chainstream.protocol.profile import ArtistProfile, SignedArtistProfile
from chainstream.protocol.read_token import AUTH_SCHEME, QUERY_PARAMETER, ReadToken, sign_read_token
from chainstream.protocol.types import ZERO_HASH, Address, to_address
from chainstream.relay.api.models import ArtistProfileReply, Info

#: read tokens are asked for this long (relays refuse much longer ones) and renewed with less than RENEW_AT left
READ_TOKEN_TTL, RENEW_AT = 300, 60
#: how far (s) the relay's clock may be from ours when a read token's notAfter is set from it
MAX_CLOCK_OFFSET = 120.0

_CHANNEL_READ = re.compile(r"^/channels/(0x[0-9a-fA-F]{64})(?:/history|/deliveries)?$")
_ACCOUNT_READ = re.compile(r"^/(?:listeners|artists)/(0x[0-9a-fA-F]{40})/(?:channels|earnings|payouts)$")


@dataclass(frozen=True)
class ReadIdentity:
    """A key able to read `account`'s data: one channel's (`channel_id`, e.g. its session key) or all of it."""

    key: PrivateKey
    account: Address
    channel_id: bytes | None = None


#: a callable naming the identities a client may read as (evaluated at each read: keys and channels change)
Reader = Callable[[], list[ReadIdentity]]


class RelayError(RecoverableError):
    """The relay refused a request; ``code`` is its machine-readable reason, ``details`` the numbers behind it
    (docs/API.md, Error codes), ``state`` its view of the channel."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        state: dict[str, Any] | None = None,
        *,
        body: dict[str, Any] | None = None,
    ) -> None:
        error = (body or {}).get("error")
        details = error.get("details") if isinstance(error, dict) else None
        super().__init__(
            f"{code}: {message}",
            code=code,
            details={str(k): str(v) for k, v in details.items()} if isinstance(details, dict) else None,
        )
        self.status = status
        self.state = state
        self.body = body or {}  # the whole error reply (a 402's `payment` block)


class RelayClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = client or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._readers: list[Reader] = []
        self._tokens: dict[tuple[Address, Address, bytes], ReadToken] = {}
        self._relay: tuple[Domain, Address, float] | None = None  # domain, relay address, relay clock - ours
        self._domain: Domain | None = None
        #: how far (s) the relay's clock may be from ours when a token's notAfter is set from it (tests that run a
        #: relay on a made-up clock widen it)
        self.max_clock_offset = MAX_CLOCK_OFFSET

    # ------------------------------------------------------------------ read tokens
    def add_reader(self, reader: Reader) -> None:
        """Let this client sign read tokens with the identities `reader` returns (Listener and Artist call it)."""
        if reader not in self._readers:
            self._readers.append(reader)

    def pin_domain(self, domain: Domain) -> None:
        """The signing domain this client's users trust (their deployment's): read tokens are signed in it, and a
        relay announcing another one is refused."""
        self._domain = domain

    def _relay_view(self) -> tuple[Domain, Address, float]:
        """The domain, the relay's address and the offset of its clock, as far as this client can check them: the
        relay proves its address by signing a fresh random challenge (a server that only names another relay in
        /info would otherwise collect read tokens that work there), the domain is the pinned deployment's, and the
        relay's clock may differ from ours by at most MAX_CLOCK_OFFSET (a relay claiming a far-future time would
        otherwise collect tokens valid later)."""
        if self._relay is None:
            challenge = os.urandom(32)
            try:
                info = Info.model_validate(self.get("/info", challenge="0x" + challenge.hex()), strict=True)
                if info.identity is None:
                    raise ValueError("no identity")
                domain = Domain(info.domain["chainId"], info.domain["verifyingContract"])
                relay = to_address(info.relay)
                proof = Signature.from_hex(info.identity.signature)
                offset = float(info.time) - time.time()
            except (KeyError, TypeError, ValueError, ChainStreamError) as exc:
                raise ProtocolError(
                    f"the relay's /info does not prove its identity ({exc})", code="untrusted_relay"
                ) from exc
            if self._domain is not None and domain != self._domain:
                raise ProtocolError("the relay signs in another deployment's domain", code="untrusted_relay")
            if recover(domain.digest(relay_identity_struct_hash(challenge)), proof) != relay:
                raise ProtocolError(f"the relay does not hold the key of {relay} it names", code="untrusted_relay")
            self._relay = (domain, relay, max(-self.max_clock_offset, min(self.max_clock_offset, offset)))
        return self._relay

    def domain(self) -> Domain:
        """The signing domain: the pinned deployment's, or (unpinned) the one the relay proved it signs in."""
        return self._relay_view()[0]

    def now(self) -> float:
        """The relay's clock as far as this client can tell (ours, moved by the relay's offset within
        MAX_CLOCK_OFFSET): what signed messages the relay dates (caps, profiles) are dated by."""
        return time.time() + self._relay_view()[2]

    def artist_profile(self, artist: str) -> SignedArtistProfile | None:
        """The artist's newest profile as the relay holds it, verified here: None if the artist has signed none;
        ProtocolError (untrusted_state) if the relay's answer is not a profile the artist signed in this client's
        domain (the relay is not trusted with names)."""
        domain = self._relay_view()[0]
        try:
            answer = self.get(f"/artists/{to_address(artist)}/profile")
        except RelayError as exc:
            if exc.code == "no_profile":
                return None
            raise
        try:
            reply = ArtistProfileReply.model_validate(answer)
            signed = SignedArtistProfile(
                ArtistProfile(to_address(reply.artist), reply.name, reply.issuedAt), Signature.from_hex(reply.signature)
            )
            if signed.profile.artist != to_address(artist):
                raise ProtocolError(f"the relay answered the profile of {reply.artist}", code="untrusted_state")
            signed.verify(domain)
        except (ValueError, ChainStreamError) as exc:
            raise ProtocolError(
                f"the relay's profile of {artist} does not verify: {exc}", code="untrusted_state"
            ) from exc
        return signed

    def read_token(self, key: PrivateKey, account: str, channel_id: bytes = ZERO_HASH) -> str:
        """A read token for `account`'s data (one channel, or all with a zero id) signed by `key`, valid for
        READ_TOKEN_TTL seconds on the relay's clock; cached and reused until RENEW_AT seconds before it expires."""
        domain, relay, offset = self._relay_view()
        now = time.time() + offset
        cache_key = (key.address, to_address(account), channel_id)
        token = self._tokens.get(cache_key)
        if token is None or token.not_after - now < RENEW_AT:
            token = sign_read_token(
                key, domain, relay, account=account, channel_id=channel_id, not_after=int(now) + READ_TOKEN_TTL
            )
            self._tokens[cache_key] = token
        return token.encode()

    def _identities(self) -> list[ReadIdentity]:
        return [identity for reader in self._readers for identity in reader()]

    def _tokens_for(self, path: str, params: dict[str, Any]) -> list[str]:
        """Tokens for a private read, best first, from the registered readers (none: the relay answers 401).
        A channel's read is tried with its session key, then with its payer's own key (a session key expires)."""
        if path == "/events":
            channel, payee = params.get("channel"), params.get("payee")
        else:
            match = _CHANNEL_READ.match(path)
            channel = match.group(1) if match else None
            match = _ACCOUNT_READ.match(path)
            payee = match.group(1) if match else None
        identities = self._identities() if channel or payee else []
        if channel is not None:
            cid = bytes.fromhex(channel[2:])
            own = [i for i in identities if i.channel_id == cid]
            payers = {i.account for i in own}
            # then the wallets: the channel's payer first (if a session key named it), then any other wallet
            # registered here (a wallet not yet attached to the channel, e.g. while it resyncs)
            wallets = [i for i in identities if i.channel_id is None]
            own += sorted(wallets, key=lambda i: i.account not in payers)
            return [self.read_token(i.key, i.account, cid) for i in own]
        if payee is not None:
            account = to_address(payee)
            return [
                self.read_token(i.key, account) for i in identities if i.channel_id is None and i.account == account
            ]
        return []

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        tokens = self._tokens_for(path, kwargs.get("params") or {}) if method == "GET" and self._readers else []
        for i, token in enumerate(tokens):
            attempt = dict(kwargs)
            if path == "/events":
                attempt["params"] = {**kwargs.get("params", {}), QUERY_PARAMETER: token}
            else:
                attempt["headers"] = {**kwargs.get("headers", {}), "Authorization": f"{AUTH_SCHEME} {token}"}
            try:
                return self._send(method, path, **attempt)
            except RelayError as exc:
                if exc.code not in ("read_token_invalid", "read_forbidden") or i == len(tokens) - 1:
                    raise
        return self._send(method, path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", {})
                raise RelayError(
                    response.status_code,
                    error.get("code", "http_error"),
                    error.get("message", response.text),
                    body.get("state"),
                    body=body,
                )
            except ValueError:
                raise RelayError(response.status_code, "http_error", response.text) from None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self._request("PUT", path, json=body)

    def upload(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        """PUT a raw body (bytes or an iterator of chunks, streamed) with `headers`; the JSON reply."""
        return self._request("PUT", path, content=body, headers=headers, timeout=None)

    def fetch(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        """GET raw bytes (audio); a refusal (402 included) is a RelayError with the relay's code and body."""
        response = self.http.get(f"/api/v1{path}", headers=headers or {})
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                raise RelayError(response.status_code, "http_error", response.text) from None
            error = body.get("error", {})
            raise RelayError(response.status_code, error.get("code", "http_error"), error.get("message", ""), body=body)
        return response.content

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.get("/info")
        return info

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
