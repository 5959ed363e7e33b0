"""The web player (frontend/, or the package's copy) and what it loads besides: vendored libraries (never
committed, no CDN), contract ABIs from the committed artifacts, and the wallet's chain config. None of it is in the OpenAPI doc."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from chainstream import resources
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.relay.api.deps import SettingsDep
from chainstream.relay.api.errors import error_response
from chainstream.relay.headers import SecurityHeaders
from chainstream.relay.process import public_rpc_url

router = APIRouter(include_in_schema=False)

#: third-party builds the player imports (through an import map pointing here; chainstream.resources finds
#: them), gzipped once, on first request (ethers.min.js: 510 kB, 140 kB gzipped)
_vendor_gzip: dict[str, bytes] = {}
#: contract ABIs the player builds its contract objects from
ABI_NAMES = ("ChainStreamChannels", "TrackRegistry", "MockStablecoin", "ChainStreamGasless")


@router.get("/vendor/{name}")
async def vendor(name: str, request: Request, settings: SettingsDep) -> Response:
    path = resources.vendor_file(name, settings.vendor_dir)
    if path is None:
        return error_response(404, Code.NO_VENDOR_FILE, resources.vendor_missing_message(name))
    headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        if name not in _vendor_gzip:
            _vendor_gzip[name] = await asyncio.to_thread(gzip.compress, path.read_bytes(), 6)
        return Response(
            _vendor_gzip[name], media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"}
        )
    return FileResponse(path, media_type="text/javascript", headers=headers)


@router.get("/abi/{name}.json")
async def abi(name: str) -> Response:
    if name not in ABI_NAMES:
        return error_response(404, Code.NO_ABI, f"no ABI {name}")
    from chainstream.chain.artifacts import load_artifact

    return JSONResponse(
        {"contractName": name, "abi": load_artifact(name).abi}, headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/player-config.json")
async def player_config(settings: SettingsDep) -> dict[str, Any]:
    """What a wallet needs to add the relay's chain (wallet_addEthereumChain). The node URL is published only
    when it is on loopback or set explicitly (CHAINSTREAM_PUBLIC_RPC_URL): a provider URL may embed a key."""
    rpc = public_rpc_url(settings)
    return {"rpcUrls": [rpc] if rpc else [], "chainName": settings.chain_name}


def mount_frontend(app: FastAPI, settings: Settings) -> None:
    """The web player at / (after every other route), and the security headers its pages are served with."""
    frontend = resources.web_dir(settings.frontend_dir)
    app.add_middleware(
        SecurityHeaders, index_html=frontend / "index.html" if frontend else None, rpc_url=public_rpc_url(settings)
    )
    if frontend is not None:
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
