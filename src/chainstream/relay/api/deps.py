"""What a route needs, as `Annotated` dependencies: the running relay (on `app.state.relay`, set by the app's
lifespan), its service, the read-token checks, and the app's settings.

The dependency functions are coroutines: FastAPI runs plain functions in a thread pool, and these only read
attributes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from chainstream.config import Settings
from chainstream.relay.process import Relay
from chainstream.relay.read_auth import ReadAuth
from chainstream.relay.service import RelayService


def relay_of(conn: HTTPConnection) -> Relay:
    """The relay serving this request or WebSocket (set on app.state once the app has started)."""
    relay: Relay = conn.app.state.relay
    return relay


def service_of(conn: HTTPConnection) -> RelayService:
    return relay_of(conn).service


async def _relay(request: Request) -> Relay:
    return relay_of(request)


async def _service(request: Request) -> RelayService:
    return service_of(request)


async def _reads(request: Request) -> ReadAuth:
    return ReadAuth(service_of(request))


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RelayDep = Annotated[Relay, Depends(_relay)]
ServiceDep = Annotated[RelayService, Depends(_service)]
ReadsDep = Annotated[ReadAuth, Depends(_reads)]
SettingsDep = Annotated[Settings, Depends(_settings)]
