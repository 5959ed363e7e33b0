"""GET /api/v1/info: what a client needs to talk to the relay (health: relay/health.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from chainstream.protocol.eip712 import relay_identity_struct_hash
from chainstream.relay.api.deps import ServiceDep
from chainstream.relay.api.models import Info
from chainstream.relay.openapi import responses

router = APIRouter(prefix="/api/v1")


@router.get("/info", response_model=Info, response_model_exclude_unset=True, responses=responses("info"))
async def info(
    s: ServiceDep,
    challenge: str | None = Query(
        None, pattern="^0x[0-9a-fA-F]{64}$", description="32 random bytes the relay signs to prove its address"
    ),
) -> dict[str, Any]:
    identity = {}
    if challenge is not None:
        digest = s.domain.digest(relay_identity_struct_hash(bytes.fromhex(challenge[2:])))
        identity = {"identity": {"challenge": challenge, "signature": s.relay_key.sign(digest).to_hex()}}
    d = s.deployment
    tokens = [{"address": t.address, "symbol": t.symbol, "decimals": t.decimals} for t in s.tokens()]
    return {
        "chainId": d.chain_id,
        "channels": d.channels,
        "registry": d.registry,
        "stablecoin": d.stablecoin,
        "relay": s.address,
        "challengePeriod": d.challenge_period,
        "keyRotationGrace": d.key_rotation_grace,
        "sessionMargin": s.settings.session_margin,
        "domain": s.domain.as_dict(),
        "tokens": tokens,
        "time": int(s.clock()),  # the relay's clock, which judges read tokens' notAfter
        "readTokenMaxTtl": s.settings.read_token_max_ttl,
        **identity,
    }
