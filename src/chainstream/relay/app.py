"""The relay's HTTP API (FastAPI) and the process that runs it with its settler and watchtower."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope
from web3 import Web3

from chainstream import resources
from chainstream.chain.contracts import ChannelsClient, RegistryClient
from chainstream.chain.deploy import Deployment
from chainstream.chain.node import connect
from chainstream.chain.transactions import TxSender
from chainstream.config import Settings
from chainstream.errors import ChainStreamError, ConfigurationError, RecoverableError
from chainstream.protocol import PrivateKey, Signature
from chainstream.protocol.eip712 import relay_identity_struct_hash
from chainstream.protocol.types import to_address, to_bytes32
from chainstream.relay.headers import SecurityHeaders
from chainstream.relay.health import DatabaseProbe, health_router
from chainstream.relay.limits import Refusal, RequestLimits, check_message, describe
from chainstream.relay.media_routes import is_upload, media_router
from chainstream.relay.metrics import instrument, metrics_router
from chainstream.relay.onboarding import Onboarding
from chainstream.relay.onboarding_routes import onboarding_router
from chainstream.relay.openapi import responses
from chainstream.relay.outage import (
    UNREACHABLE,
    ChainStatus,
    follow_chain,
    install_log_filter,
    is_chain_unreachable,
    unavailable_item,
)
from chainstream.relay.payouts import PayoutPusher
from chainstream.relay.read_auth import ReadAuth, on_chain_view, resync_state
from chainstream.relay.schemas import BatchIn, CapsIn, CloseIn, PaymentIn, StreamedPaymentIn, to_payment
from chainstream.relay.service import PUBLIC_TOPIC, PaymentAck, RelayService, caps_typed_data
from chainstream.relay.settler import Settler
from chainstream.relay.watcher import Watcher
from chainstream.store import open_store
from chainstream.store.errors import RETRY_AFTER as DATABASE_RETRY_AFTER
from chainstream.store.errors import UNAVAILABLE_ERRORS, database_unavailable
from chainstream.verify import Rejection

log = logging.getLogger("chainstream.relay")


class Relay:
    """Service + settler + watchtower, started and stopped together (by the app's lifespan or by the demo)."""

    def __init__(
        self,
        settings: Settings,
        *,
        w3: Web3 | None = None,
        deployment: Deployment | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.relay_key is None:
            raise ConfigurationError("no relay key: set CHAINSTREAM_RELAY_KEY")
        self.settings = settings
        self.w3 = w3 or connect(settings.rpc_url, timeout=settings.rpc_timeout)
        self.deployment = deployment or Deployment.load(settings.deployment_file)
        if self.deployment.chain_id != self.w3.eth.chain_id:
            raise ConfigurationError(
                f"{settings.deployment_file} is for chain {self.deployment.chain_id}, "
                f"the node is chain {self.w3.eth.chain_id}"
            )
        key = PrivateKey(settings.relay_key.get_secret_value())
        self.store = open_store(settings.database)
        try:
            self.store.claim_instance(settings.instance)
        except ConfigurationError:
            self.store.close()
            raise
        self.service = RelayService(
            settings=settings,
            channels=ChannelsClient(self.w3, self.deployment.channels),
            registry=RegistryClient(self.w3, self.deployment.registry),
            deployment=self.deployment,
            relay_key=key,
            store=self.store,
            clock=clock,
        )
        self.settler = Settler(self.service, TxSender(self.w3, key))
        self.watcher = Watcher(self.service, self.settler)
        self.chain_status = ChainStatus(settings)  # relay/outage.py: node lost / back, backoff
        self.database_probe = DatabaseProbe(self.store, settings.instance)  # relay/health.py
        instrument(self)  # relay/metrics.py: counters and latency histograms
        self.onboarding = Onboarding(settings, self.service.channels, self.settler.sender)
        self.payouts = PayoutPusher(
            settings,
            self.service.channels,
            self.settler.sender,
            [t.address for t in self.service.tokens()],
            store=self.store,
            from_block=self.deployment.deploy_block,
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._remove_log_filter: Callable[[], None] | None = None

    async def start(self) -> None:
        self.store.start()
        await asyncio.to_thread(self.service.catalog.load_all)
        self.chain_status.answered(await asyncio.to_thread(lambda: int(self.w3.eth.block_number)))
        await self.watcher.poll()
        # Before the port opens (uvicorn runs this lifespan step first): closing channels cannot wait for a relay
        # that might be killed by its first request.
        await self.settler.settle_urgent_before_serving()
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(follow_chain(self.watcher, self.w3, self.chain_status, self._stop)),
            asyncio.create_task(self.settler.run(self._stop)),
        ]
        self._remove_log_filter = install_log_filter(self.chain_status)
        log.info(
            "relay %s serving chain %s from block %s (instance %s)",
            self.service.address,
            self.deployment.chain_id,
            self.watcher.processed_block,
            self.settings.instance,
        )
        self._tasks.append(asyncio.create_task(self.payouts.run(self._stop, lambda: self.settler.leading)))
        tune_interpreter_for_serving()

    def begin_shutdown(self) -> None:
        """A shutdown was asked for (SIGTERM): end the live-event streams now, so the server need not wait for
        their clients before the relay's own shutdown (`stop`) runs."""
        self.service.bus.close()

    async def stop(self) -> None:
        self._stop.set()
        self.settler.wake()  # do not wait out the settle interval
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if self._remove_log_filter is not None:
            self._remove_log_filter()
        self.store.close()


def tune_interpreter_for_serving() -> None:
    """Set the interpreter up for a relay under payment load (called once started).

    - Garbage collector: everything alive by then (modules, contract ABIs, schemas, the catalog) lives as long
      as the process, so it is frozen out of the collector's view; and the young generation is collected every
      10,000 allocations rather than 700. Each voucher allocates dozens of short-lived containers, and with
      thousands in flight the default settings had the collector walk them over and over: ~20% of the event
      loop's CPU per voucher (benchmarks/hot_path.py). Most objects are freed by reference counting anyway.
    - GIL switch interval 1 ms (default 5 ms): the group-commit thread hands the GIL over around each SQLite
      step and must win it back from the busy event loop; every acknowledgement waits for that. With a busy
      loop, a commit of 20 payments took p50 11-12 ms with 5 ms, 7 ms with 1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    sys.setswitchinterval(0.001)


#: refusals that mean the client's view of the channel drifted: answered with the channel's state to resync from
RESYNC_CODES = frozenset({"voucher_mismatch", "stale_voucher", "seq_gap"})

#: the answer to a binary WebSocket frame (payments are JSON text frames)
BINARY_FRAME = Refusal(400, "binary_frame", "send each payment as a JSON text frame; binary frames are not read")

#: messages a WebSocket payment stream may have in flight (unanswered) before the relay stops reading from it
STREAM_WINDOW = 4_096


def public_rpc_url(settings: Settings) -> str | None:
    """The chain's node URL as published to the player's wallet: CHAINSTREAM_PUBLIC_RPC_URL, else the relay's own
    node URL when it is on loopback (a provider URL may embed a key), else none."""
    from urllib.parse import urlparse

    rpc = settings.public_rpc_url
    if rpc is None and urlparse(settings.rpc_url).hostname in ("127.0.0.1", "localhost", "::1"):
        rpc = settings.rpc_url
    return rpc


class _AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote the request, and a string from a request can hold a lone
    surrogate (valid JSON, "\\ud800") that no UTF-8 encoder accepts."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return _AsciiJSONResponse(
        {"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers
    )


def retry_headers(code: str) -> dict[str, str] | None:
    """Retry-After for the 503s a client should wait out."""
    return {"Retry-After": str(DATABASE_RETRY_AFTER)} if code == "database_unavailable" else None


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the input they quote (a body of megabytes would be echoed back) and with
    location parts cut short (an unknown key can be long)."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p)[:64] for p in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:200],
            "type": str(e.get("type", "")),
        }
        for e in errors[:20]
    ]


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The methods some route takes at this request's path, for a 405's Allow header (asked of the routes
    themselves, method by method; the web player's static files, mounted at /, take GET and HEAD anywhere)."""
    static = [r for r in app.router.routes if isinstance(r, Mount) and r.path == ""]
    routes = [r for r in app.router.routes if r not in static]
    allowed = {m for m in HTTP_METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)}
    return ", ".join(sorted(allowed | {"GET", "HEAD"} if static else allowed))


def _ack_json(ack: PaymentAck) -> dict[str, Any]:
    return {
        "status": ack.status,
        "channelId": "0x" + ack.channel_id.hex(),
        "seq": ack.seq,
        "total": str(ack.total),
        "amount": str(ack.amount),
        "digest": "0x" + ack.digest.hex(),
        "remaining": str(ack.remaining),
        "spentToday": str(ack.spent_today),
        "dailyCap": None if ack.daily_cap is None else str(ack.daily_cap),
        **({"grant": ack.grant} if ack.grant is not None else {}),
    }


def create_app(
    settings: Settings | None = None,
    *,
    relay: Relay | None = None,
    w3: Web3 | None = None,
    deployment: Deployment | None = None,
) -> FastAPI:
    """The relay app. Tests and the demo pass their own chain (`w3`) and deployment."""
    settings = settings or Settings()
    holder: dict[str, Relay] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = relay or Relay(settings, w3=w3, deployment=deployment)
        holder["relay"] = r
        await r.start()
        try:
            yield
        finally:
            await r.stop()

    app = FastAPI(
        title="ChainStream relay",
        version="1",
        lifespan=lifespan,
        description="Pay-per-play vouchers: verified, stored durably, settled in batches. Protocol: docs/PROTOCOL.md",
        # No Swagger UI / ReDoc pages: FastAPI's load floating versions from a CDN, and this origin keeps the web
        # player's session keys. The OpenAPI document stays at /openapi.json (docs/API.md).
        docs_url=None,
        redoc_url=None,
    )

    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        streamed=is_upload,  # audio uploads: streamed to disk by their route, under upload_max_bytes
    )

    def svc() -> RelayService:
        return holder["relay"].service

    def reads() -> ReadAuth:
        return ReadAuth(svc())

    @app.exception_handler(Rejection)
    async def rejection_handler(_: Request, exc: Rejection) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(RecoverableError)
    async def recoverable_handler(_: Request, exc: RecoverableError) -> JSONResponse:
        return _error(400, exc.code, str(exc))

    @app.exception_handler(ChainStreamError)
    async def unrecoverable_handler(_: Request, exc: ChainStreamError) -> JSONResponse:
        log.error("internal error: %s", exc)
        return _error(503, exc.code, str(exc), headers=retry_headers(exc.code))

    async def database_handler(_: Request, exc: Exception) -> JSONResponse:
        """A store write the database refused (full, read-only, I/O error) outside a payment's commit."""
        error = database_unavailable("the relay could not write its database", exc)
        log.error("%s", error)
        return _error(503, error.code, str(error), headers=retry_headers(error.code))

    for driver_error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(driver_error, database_handler)

    @app.exception_handler(StarletteHTTPException)
    async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (no such path, wrong method) in the relay's error format."""
        if exc.status_code == 404:
            return _error(404, "not_found", "no such path")
        if exc.status_code == 405:
            allow = allowed_methods(app, request.scope)
            return _error(
                405, "method_not_allowed", f"this path takes {allow}, not {request.method}", headers={"Allow": allow}
            )
        return _error(exc.status_code, "request_refused", str(exc.detail), headers=exc.headers)

    async def chain_unreachable_handler(_: Request, exc: Exception) -> JSONResponse:
        """The chain's node did not answer: 503 with Retry-After; logged once per outage (relay/outage.py).
        Registered per exception class, not only under `Exception`: Starlette re-raises what its `Exception`
        handler answered, and the server then logs a traceback per request and drops the connection."""
        status = holder["relay"].chain_status
        status.failed(exc)
        return _error(
            503,
            "chain_unavailable",
            "the relay cannot reach its chain's node; retry later",
            headers={"Retry-After": str(status.retry_after())},
        )

    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, chain_unreachable_handler)

    @app.exception_handler(Exception)
    async def unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
        """Anything else: the chain's node unreachable (503, retry later), or a bug (500, logged)."""
        if is_chain_unreachable(exc):  # raised from a node error
            return await chain_unreachable_handler(request, exc)
        log.exception("unexpected error", exc_info=exc)
        return _error(500, "internal_error", f"unexpected {type(exc).__name__}; the relay's log has the details")

    @app.exception_handler(RequestValidationError)
    async def validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc.errors()) or [{"loc": [], "msg": "invalid request", "type": ""}]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"], details=details)

    api = APIRouter(prefix="/api/v1")

    @api.get("/info", responses=responses("info"))
    async def info(
        challenge: str | None = Query(
            None, pattern="^0x[0-9a-fA-F]{64}$", description="32 random bytes the relay signs to prove its address"
        ),
    ) -> dict[str, Any]:
        s = svc()
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

    def _track_json(entry: Any, token: str | None) -> dict[str, Any]:
        terms = {
            t: {
                "perPlay": str(x.per_play),
                "perSecond": str(x.per_second),
                "download": str(x.download),
                "model": x.model,
                "ownAfter": x.own_after,
                "minSeconds": x.min_seconds,
            }
            for t, x in entry.terms.items()
            if x.enabled and (token is None or t == token)
        }
        return {
            "trackId": "0x" + entry.track_id.hex(),
            "title": entry.title,
            "owner": entry.owner,
            "splitVersion": entry.split_version,
            "splitHash": "0x" + entry.split.hash.hex(),
            "split": {
                "recipients": list(entry.split.recipients),
                "bps": list(entry.split.bps),
                "feeRecipient": entry.split.fee_recipient,
                "feeBps": entry.split.fee_bps,
            },
            "terms": terms,
            "registeredAt": entry.registered_at,
            "media": f"/api/v1/tracks/0x{entry.track_id.hex()}/media",
        }

    @api.get("/catalog", responses=responses("catalog"))
    async def catalog(token: str | None = None) -> dict[str, Any]:
        token = to_address(token) if token else None
        entries = sorted(svc().catalog.entries.values(), key=lambda e: e.registered_at)
        tracks = [_track_json(e, token) for e in entries]
        return {"tracks": [t for t in tracks if t["terms"]]}

    @api.get("/tracks/{track_id}", responses=responses("track"))
    async def track(track_id: str) -> Any:
        entry = svc().catalog.entries.get(to_bytes32(track_id, "trackId"))
        if entry is None:
            return _error(404, "unknown_track", f"no track {track_id}")
        return _track_json(entry, None)

    @api.post("/channels/{channel_id}/payments", responses=responses("pay"))
    async def pay(channel_id: str, body: PaymentIn) -> Any:
        payment = to_payment(channel_id, body)
        try:
            ack = await svc().submit(payment)
        except Rejection as exc:
            extra: dict[str, Any] = {}
            if exc.code in RESYNC_CODES and (state := await resync_state(svc(), payment)) is not None:
                extra["state"] = state
            return _error(exc.status, exc.code, str(exc), **extra)
        return _ack_json(ack)

    async def _one(body: StreamedPaymentIn) -> dict[str, Any]:
        """One batch item or stream message: its acknowledgement, or its error with the status the single-payment
        endpoint would answer (and the channel's state where that one adds it); never an exception."""
        try:
            payment = to_payment(body.channelId, body)
            ack = await svc().submit(payment)
            return {"id": body.id, "ok": True, **_ack_json(ack)}
        except Rejection as exc:
            out: dict[str, Any] = {
                "id": body.id,
                "ok": False,
                "error": {"code": exc.code, "message": str(exc), "status": exc.status},
            }
            if exc.code in RESYNC_CODES and (state := await resync_state(svc(), payment)) is not None:
                out["state"] = state
            return out
        except RecoverableError as exc:
            return {"id": body.id, "ok": False, "error": {"code": exc.code, "message": str(exc), "status": 400}}
        except ChainStreamError as exc:  # not stored (a failed commit): this item only, the client may resend
            log.error("payment not stored: %s", exc)
            error = {"code": exc.code, "message": str(exc), "status": 503}
            if exc.code == "database_unavailable":
                error["retryAfter"] = DATABASE_RETRY_AFTER
            return {"id": body.id, "ok": False, "error": error}
        except UNAVAILABLE_ERRORS as exc:  # another store write (a channel's first load) the database refused
            error = database_unavailable("the relay could not write its database", exc)
            log.error("payment not stored: %s", error)
            item = {"code": error.code, "message": str(error), "status": 503, "retryAfter": DATABASE_RETRY_AFTER}
            return {"id": body.id, "ok": False, "error": item}
        except Exception as exc:
            if not is_chain_unreachable(exc):
                raise
            holder["relay"].chain_status.failed(exc)  # needed the node (a channel not loaded yet): retry later
            return {"id": body.id, "ok": False, "error": unavailable_item(holder["relay"].chain_status)}

    @api.post("/payments/batch", responses=responses("pay_batch"))
    async def pay_batch(body: BatchIn) -> dict[str, Any]:
        """Many payments in one request (any channels); each is verified and acknowledged on its own."""
        results = await asyncio.gather(*(_one(p) for p in body.payments))
        return {"results": results}

    @api.websocket("/payments/stream")
    async def pay_stream(ws: WebSocket) -> None:
        """One JSON payment per message (with channelId and an optional id); one reply per payment, in order
        of durability. Replies carry the id so a client can pipeline."""
        await ws.accept()
        pending: set[asyncio.Task[None]] = set()
        # At most this many messages in flight per connection: past it the relay stops reading (TCP back-pressure
        # on the client) instead of piling up tasks and replies for a client that does not read them.
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def handle(text: str) -> None:
            try:
                check_message(text, settings.max_message_bytes)
                body = StreamedPaymentIn.model_validate_json(text)
            except Refusal as refusal:
                await ws.send_json({"ok": False, "error": describe(refusal)})
                return
            except ValidationError as exc:
                await ws.send_json(
                    {
                        "ok": False,
                        "error": {"code": "invalid_request", "message": str(exc.errors()[0]["msg"]), "status": 422},
                    }
                )
                return
            try:
                reply = await _one(body)
            except Exception as exc:  # never silence: a fault is answered too (and logged)
                log.exception("payment stream message failed", exc_info=exc)
                reply = {
                    "id": body.id,
                    "ok": False,
                    "error": {
                        "code": "internal_error",
                        "message": f"unexpected {type(exc).__name__}; the relay's log has the details",
                        "status": 500,
                    },
                }
            await ws.send_json(reply)

        def done(task: asyncio.Task[None]) -> None:
            pending.discard(task)
            window.release()

        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                text = message.get("text")
                if text is None:  # a binary frame: answered, and the stream goes on
                    await ws.send_json({"ok": False, "error": describe(BINARY_FRAME)})
                    continue
                await window.acquire()
                task = asyncio.create_task(handle(text))
                pending.add(task)
                task.add_done_callback(done)
        except WebSocketDisconnect:
            for task in pending:
                task.cancel()

    @api.get("/channels/{channel_id}", responses=responses("channel"))
    async def channel(channel_id: str, request: Request) -> dict[str, Any]:
        """The channel's state (payer's read token)."""
        return svc().channel_summary(await reads().channel(request, to_bytes32(channel_id, "channelId")))

    @api.get("/channels/{channel_id}/history", responses=responses("history"))
    async def history(
        channel_id: str,
        request: Request,
        limit: int = Query(50, ge=1, le=500),
        before: int | None = Query(None, ge=0, lt=2**63),
    ) -> dict[str, Any]:
        """The channel's payments, newest first (payer's read token)."""
        s = svc()
        cid = to_bytes32(channel_id, "channelId")
        await reads().channel(request, cid)
        items = []
        for p in s.store.history(cid, limit=limit, before_seq=before):
            entry = s.catalog.entries.get(p.target)
            items.append(
                {
                    "seq": p.seq,
                    "kind": ["play", "seconds", "tip", "download"][p.kind],
                    "target": "0x" + p.target.hex(),
                    "title": entry.title if entry else None,
                    "units": p.units,
                    "amount": str(p.amount),
                    "total": str(p.voucher.total),
                    "memo": p.memo,
                    "payments": {k: str(v) for k, v in p.payments.items()},
                    "at": p.accepted_at,
                    "digest": "0x" + p.digest.hex(),
                }
            )
        return {"channelId": channel_id, "items": items, "delivered": s.media.delivery_summary(cid)}

    @api.get("/channels/{channel_id}/caps/typed-data", responses=responses("caps_doc"))
    async def caps_doc(
        channel_id: str,
        dailyCap: int = Query(0, ge=0, lt=2**96),
        sessionCap: int = Query(0, ge=0, lt=2**96),
        issuedAt: int | None = Query(None, ge=0, lt=2**63),
    ) -> dict[str, Any]:
        """The EIP-712 document a wallet or session key signs to set spending caps."""
        cid = to_bytes32(channel_id, "channelId")
        return caps_typed_data(svc().domain, cid, dailyCap, sessionCap, issuedAt or int(svc().clock()))

    @api.put("/channels/{channel_id}/caps", responses=responses("caps"))
    async def caps(channel_id: str, body: CapsIn) -> dict[str, Any]:
        s = svc()
        rt = await s.set_caps(
            to_bytes32(channel_id, "channelId"),
            int(body.dailyCap),
            int(body.sessionCap),
            body.issuedAt,
            Signature.from_hex(body.signature),
        )
        return s.channel_summary(rt)

    @api.post("/channels/{channel_id}/close", responses=responses("close"))
    async def close(channel_id: str, body: CloseIn) -> Any:
        """The relay's consent to a cooperative close at the latest voucher (no payments are accepted after),
        asked for by the payer or its session key over that voucher."""
        cid = to_bytes32(channel_id, "channelId")
        try:
            latest, signature, prev = await svc().cosign_close(
                cid, to_bytes32(body.voucherDigest, "voucherDigest"), Signature.from_hex(body.signature)
            )
        except Rejection as exc:
            if exc.code != "close_state_mismatch":
                raise
            return _error(exc.status, exc.code, str(exc), state=svc().channel_summary(await svc().runtime(cid)))
        voucher = None
        if latest is not None:
            voucher = {
                "payees": list(latest.voucher.payees),
                "amounts": [str(a) for a in latest.voucher.amounts],
                "playHash": "0x" + latest.voucher.play_hash.hex(),
                "signature": "0x" + latest.signature.hex(),
            }
        return {
            "channelId": channel_id,
            "voucher": voucher,
            "prevAmounts": [str(a) for a in prev],
            "relaySignature": signature.to_hex(),
        }

    @api.get("/listeners/{address}/channels", responses=responses("listener_channels"))
    async def listener_channels(address: str, request: Request) -> dict[str, Any]:
        """The listener's channels on this relay (its all-channels read token)."""
        s = svc()
        out = []
        for record, full in reads().listener(request, address):
            out.append(s.channel_summary(await s.current(record.channel_id)) if full else on_chain_view(s, record))
        return {"channels": out}

    @api.get("/artists/{address}/earnings", responses=responses("earnings"))
    async def earnings(address: str, request: Request, format: str = Query("json", pattern="^(json|csv)$")) -> Any:
        """The artist's earnings (the artist's own read token)."""
        address = reads().artist(request, address)
        if format == "json":
            return svc().earnings(address)
        return PlainTextResponse(
            svc().earnings_csv(address),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="earnings-{address}.csv"'},
        )

    @api.get("/events", responses=responses("events"))
    async def events(request: Request, channel: str | None = None, payee: str | None = None) -> StreamingResponse:
        """Server-Sent Events: payments and catalog changes as they happen. Filtered by channel (the payer's read
        token) or payee (the payee's), in the `readToken` query parameter since EventSource sends no headers; the
        unfiltered stream is public and shows only what kind of charge hit which track, when."""
        topics = {"catalog"}
        if channel:
            cid = to_bytes32(channel, "channel")
            await reads().channel(request, cid)
            topics.add("channel:0x" + cid.hex())
        if payee:
            topics.add("payee:" + reads().artist(request, payee))
        if not channel and not payee:
            topics.add(PUBLIC_TOPIC)
        # a private stream ends with its token: nothing is sent past notAfter (the client reconnects with a new one)
        ends_at = reads().token(request).not_after + svc().settings.read_token_skew if channel or payee else None

        async def stream() -> AsyncIterator[str]:
            yield ": connected\n\n"
            async for event in svc().bus.subscribe(topics):
                if await request.is_disconnected():
                    break
                if ends_at is not None and svc().clock() > ends_at and event["type"] == "payment":
                    break
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(api)
    app.include_router(health_router(lambda: holder["relay"]))
    app.include_router(metrics_router(lambda: holder["relay"]))
    app.include_router(media_router(svc))
    app.include_router(onboarding_router(svc, lambda: holder["relay"].onboarding))

    # ------------------------------------------------------------------ web player (frontend/) and its assets
    # Third-party builds are served from node_modules (never committed, no CDN): the player imports "ethers"
    # through an import map pointing here.
    vendor_gzip: dict[str, bytes] = {}

    @app.get("/vendor/{name}", include_in_schema=False)
    async def vendor(name: str, request: Request) -> Response:
        path = resources.vendor_file(name, settings.vendor_dir)
        if path is None:
            return _error(404, "no_vendor_file", resources.vendor_missing_message(name))
        headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            if name not in vendor_gzip:  # ethers.min.js: 510 kB, 140 kB gzipped; compressed once
                import gzip

                vendor_gzip[name] = await asyncio.to_thread(gzip.compress, path.read_bytes(), 6)
            return Response(
                vendor_gzip[name], media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"}
            )
        return FileResponse(path, media_type="text/javascript", headers=headers)

    # Contract ABIs straight from the committed artifacts (the player builds its contract objects from them).
    abi_names = ("ChainStreamChannels", "TrackRegistry", "MockStablecoin")

    @app.get("/abi/{name}.json", include_in_schema=False)
    async def abi(name: str) -> Response:
        if name not in abi_names:
            return _error(404, "no_abi", f"no ABI {name}")
        from chainstream.chain.artifacts import load_artifact

        return JSONResponse(
            {"contractName": name, "abi": load_artifact(name).abi}, headers={"Cache-Control": "public, max-age=300"}
        )

    @app.get("/player-config.json", include_in_schema=False)
    async def player_config() -> dict[str, Any]:
        """What a wallet needs to add the relay's chain (wallet_addEthereumChain). The node URL is published only
        when it is on loopback or set explicitly (CHAINSTREAM_PUBLIC_RPC_URL): a provider URL may embed a key."""
        rpc = public_rpc_url(settings)
        return {"rpcUrls": [rpc] if rpc else [], "chainName": settings.chain_name}

    frontend = resources.web_dir(settings.frontend_dir)
    app.add_middleware(
        SecurityHeaders, index_html=frontend / "index.html" if frontend else None, rpc_url=public_rpc_url(settings)
    )
    if frontend is not None:
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    return app
