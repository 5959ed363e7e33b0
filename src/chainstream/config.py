"""Relay configuration, from CHAINSTREAM_* environment variables, a .env file, or keyword arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAINSTREAM_", env_file=".env", extra="ignore")

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the chain ('embedded' in-process)")
    deployment_file: Path = Field(Path("deployments/local.json"), description="addresses written by scripts/deploy.py")
    relay_key: SecretStr | None = Field(None, description="hex private key; signs only settlements and closes")
    database: str = Field(
        "chainstream-relay.db", description="SQLite file path (or sqlite:///path), or a postgresql:// URL"
    )
    host: str = "127.0.0.1"
    port: int = 8700
    instance: str = Field(
        "main",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="this relay instance's name: instances sharing a PostgreSQL database need "
        "distinct names (each keeps its own watcher cursor); one leads settlement",
    )
    frontend_dir: Path | None = Field(
        None, description="static web player to serve at / (default: the package's, or the checkout's frontend/)"
    )
    vendor_dir: Path | None = Field(
        None,
        description="directory holding the browser builds the player imports (ethers.min.js); default: the "
        "package's, or the checkout's node_modules",
    )
    public_rpc_url: str | None = Field(
        None,
        description="node URL the web player offers wallets (wallet_addEthereumChain); default: rpc_url when it "
        "is on loopback, else none (a provider URL may embed a key)",
    )
    chain_name: str | None = Field(None, description="chain name the web player offers wallets")
    log_level: str = Field(
        "warning", pattern=r"^(critical|error|warning|info|debug)$", description="log level of `chainstream relay`"
    )

    # settlement policy
    settle_interval: float = Field(5.0, description="seconds between settlement rounds")
    settle_min_value: int = Field(1, description="settle a channel once this much is unsettled (token units)")
    settle_max_age: float = Field(300.0, description="...or once its oldest unsettled payment is this old (s)")
    settle_max_gas_fraction: float = Field(
        0.1,
        gt=0,
        description="settle a due channel only if its estimated gas (at base fee + tip) costs at most this "
        "fraction of the value it settles; deadlines (close window, key expiry or rotation) override it",
    )
    settle_token_prices: dict[str, float] = Field(
        default_factory=dict,
        description="value of one smallest unit of each ERC-20 in wei, for the gas rule, as JSON "
        '({"0xToken": 300000000}); channels in a token without a price settle only at deadlines',
    )
    settle_batch_size: int = Field(100, description="channels per settlement transaction")
    settle_batch_gas: int = Field(
        15_000_000,
        description="...and about this much gas per settlement transaction "
        "(keep it well under the chain's block gas limit)",
    )
    settle_max_fee_per_gas: int = Field(
        500 * 10**9,
        gt=0,
        description="the most a settlement transaction may offer per gas (wei), replacements included: a "
        "transaction stuck below the base fee is re-sent with a 12.5 percent higher fee up to this ceiling",
    )
    settle_replace_after: float = Field(
        30.0, gt=0, description="seconds a settlement transaction may stay unmined before it is replaced"
    )
    settle_receipt_wait: float = Field(
        30.0,
        gt=0,
        description="seconds a round waits for its settlement's receipt; then the outbox follows it in later rounds",
    )

    # chain watching
    confirmations: int = Field(0, ge=0, description="blocks to wait before acting on an event")
    poll_interval: float = Field(1.0, description="seconds between chain polls")
    rpc_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds one call to the chain's node may take: a request that needs the node is answered "
        "(chain_unavailable) within about this long when the node hangs",
    )
    chain_backoff_max: float = Field(
        15.0, gt=0, description="while the node is unreachable, polls back off exponentially up to this many seconds"
    )
    ready_max_lag_blocks: int = Field(
        20, ge=0, description="/health/ready is 503 when the watcher is more than this many blocks behind the head"
    )

    # listener protection
    session_margin: int = Field(600, description="refuse session-key vouchers this close to the key's expiry (s)")
    max_payees: int = Field(
        32,
        ge=1,
        le=256,
        description="refuse payments that would make a channel pay more addresses (each costs gas at every settlement)",
    )

    # what one request or connection may cost (relay/limits.py, relay/server.py)
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1_024, description="largest HTTP request body (413 body_too_large beyond)"
    )
    max_message_bytes: int = Field(
        64 * 1024, ge=1_024, description="largest WebSocket message (a payment with 256 payees is ~25 kB)"
    )
    header_timeout: float = Field(10.0, gt=0, description="seconds a connection has to send a request's headers")
    body_timeout: float = Field(30.0, gt=0, description="seconds a request has to send its whole body (408 beyond)")
    keep_alive_timeout: int = Field(5, ge=1, description="seconds an idle kept-alive connection stays open")
    caps_clock_skew: int = Field(
        600, ge=0, description="caps may be issued at most this far ahead of the relay's clock (s)"
    )
    # privacy: reads of a listener's or an artist's data need a short-lived signed read token (docs/API.md)
    read_token_max_ttl: int = Field(
        900, ge=10, le=3_600, description="refuse read tokens valid for longer than this from now (s)"
    )
    read_token_skew: int = Field(30, ge=0, le=300, description="clock skew allowed on a read token's notAfter (s)")
    # audio: uploads, transcoding, paid streaming (src/chainstream/media, relay/api/media.py)
    media_dir: Path | None = Field(
        None,
        description="content store directory: originals and streaming segments by track id (published "
        "atomically); default: chainstream-media/ beside the SQLite database, or in the working directory",
    )
    upload_max_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1,
        description="largest audio upload taken (bytes); streamed to disk, never held in memory",
    )
    upload_max_seconds: int = Field(1_800, ge=1, description="longest audio taken (seconds of playback)")
    segment_seconds: int = Field(2, ge=1, le=10, description="target length of a streaming segment (seconds)")
    transcode_timeout: float = Field(300.0, gt=0, description="give up on an ffmpeg run after this long (s)")
    ffmpeg: str = Field("ffmpeg", description="the ffmpeg executable (ffprobe is looked up next to it)")
    grant_ttl: int = Field(
        3_600, ge=10, description="a streaming grant (returned with a payment's acknowledgement) is valid this long (s)"
    )

    # gas-free onboarding and scheduled payouts (issue 13)
    gasless_fee: int = Field(
        10_000,
        ge=0,
        description="token units the relay keeps for submitting a listener's gas-free open, top-up or close "
        "(quoted by GET /onboard/quote; the listener's signed maxFee must cover it)",
    )
    payout_fee: int = Field(
        1_000, ge=0, description="token units the relay keeps per scheduled payout (capped by each payee's maxFee)"
    )
    payout_interval: float = Field(
        0.0, ge=0, description="seconds between scheduled-payout rounds (0: the relay pushes no payouts)"
    )
    payout_batch_size: int = Field(100, ge=1, le=500, description="payees per payoutBatch transaction")
