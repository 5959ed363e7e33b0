"""Security headers for every answer of the relay's origin, which also serves the web player.

The player keeps session private keys in this origin's localStorage, so no script from anywhere else may run
here: the Content-Security-Policy allows scripts from the relay itself plus the one inline script of
frontend/index.html, its import map, by hash (computed from the file at start-up, so editing the map cannot
silently break the page). No third-party script is loaded (the relay serves no /docs or /redoc pages, which
would pull Swagger UI / ReDoc from a CDN; the OpenAPI document stays at /openapi.json).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(r"<script(?:\s[^>]*)?>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def inline_script_hashes(index_html: Path | None) -> list[str]:
    """CSP source expressions ('sha256-…') for the inline scripts (those with a body) of the player's page."""
    if index_html is None or not index_html.exists():
        return []
    text = index_html.read_text(encoding="utf-8")
    out = []
    for body in _INLINE_SCRIPT.findall(text):
        if body.strip():
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            out.append(f"'sha256-{digest}'")
    return out


def origin_of(url: str | None) -> str | None:
    """scheme://host[:port] of an http(s) URL, or None."""
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return f"{parsed.scheme}://{parsed.netloc}"


def content_security_policy(script_hashes: list[str], connect_origins: list[str]) -> str:
    """The player's policy: everything from the relay itself; wallets' icons and the favicon as data: images;
    the chain's published RPC origin for connections (a wallet injected into the page may call it)."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *script_hashes],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'", "blob:"],  # the player streams through Media Source Extensions (blob: URLs)
        "connect-src": ["'self'", *connect_origins],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


class SecurityHeaders:
    """Pure ASGI middleware adding the headers to every HTTP answer (errors, static files and event streams
    included; a header the route set itself is kept). No per-request work beyond appending them: the payment
    path stays as fast as it was."""

    def __init__(self, app: ASGIApp, *, index_html: Path | None, rpc_url: str | None) -> None:
        self.app = app
        connect = [o for o in (origin_of(rpc_url),) if o]
        headers = security_headers(content_security_policy(inline_script_hashes(index_html), connect))
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.raw if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
