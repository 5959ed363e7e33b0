"""The relay's HTTP app: `create_app` builds it from its routers (relay/api/), error handlers and middleware, and
runs a `Relay` (relay/process.py: service, settler, watchtower) for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from web3 import Web3

from chainstream.chain.deploy import Deployment
from chainstream.config import Settings
from chainstream.relay.api import artists, catalog, channels, events, info, media, payments, static
from chainstream.relay.api.errors import install_error_handlers
from chainstream.relay.api.media import is_upload
from chainstream.relay.health import health_router
from chainstream.relay.limits import RequestLimits
from chainstream.relay.metrics import metrics_router
from chainstream.relay.onboarding_routes import onboarding_router
from chainstream.relay.process import Relay, public_rpc_url, tune_interpreter_for_serving

__all__ = ["ROUTERS", "Relay", "create_app", "public_rpc_url", "tune_interpreter_for_serving"]

#: every router, in the order its routes are matched (the web player's static files are mounted after them all)
ROUTERS = (
    info.router,
    catalog.router,
    payments.router,
    channels.router,
    artists.router,
    events.router,
    media.router,
    static.router,
)


def _lifespan(
    settings: Settings, relay: Relay | None, w3: Web3 | None, deployment: Deployment | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the relay (the one given, or a new one on `w3`/`deployment`) before serving; stop it after."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = relay or Relay(settings, w3=w3, deployment=deployment)
        app.state.relay = r
        await r.start()
        try:
            yield
        finally:
            await r.stop()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    relay: Relay | None = None,
    w3: Web3 | None = None,
    deployment: Deployment | None = None,
) -> FastAPI:
    """The relay app. Tests and the demo pass their own chain (`w3`) and deployment, or a `relay` already built."""
    settings = settings or Settings()
    app = FastAPI(
        title="ChainStream relay",
        version="1",
        lifespan=_lifespan(settings, relay, w3, deployment),
        description="Pay-per-play vouchers: verified, stored durably, settled in batches. Protocol: docs/PROTOCOL.md",
        # No Swagger UI / ReDoc pages: FastAPI's load floating versions from a CDN, and this origin keeps the web
        # player's session keys. The OpenAPI document stays at /openapi.json (docs/API.md).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        streamed=is_upload,  # audio uploads: streamed to disk by their route, under upload_max_bytes
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # routers built around the running relay (operations, gas-free onboarding)
    app.include_router(health_router(lambda: app.state.relay))
    app.include_router(metrics_router(lambda: app.state.relay))
    app.include_router(
        onboarding_router(
            lambda: app.state.relay.service, lambda: app.state.relay.onboarding, lambda: app.state.relay.payouts
        )
    )
    static.mount_frontend(app, settings)
    return app
