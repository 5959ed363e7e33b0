"""Chains to run on: the embedded eth-tester (py-evm) chain, a local anvil node, or any RPC URL."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from types import TracebackType
from typing import Any

from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint

from chainstream.errors import ConfigurationError
from chainstream.resources import anvil_binary

EMBEDDED = "embedded"


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the embedded relay and its clients share one chain from several threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            return super().make_request(method, params)


def embedded_web3() -> Web3:
    """A fresh in-process chain (py-evm, latest fork) with ten funded, unlocked accounts."""
    return Web3(LockedTesterProvider())


def connect(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """`embedded` for a fresh in-process chain, else an HTTP(S) or WS JSON-RPC URL; `timeout`: seconds one call
    to the node may take."""
    if rpc_url == EMBEDDED:
        return embedded_web3()
    if rpc_url.startswith(("ws://", "wss://")):
        raise ConfigurationError("use an http(s) RPC URL")
    # No retries inside the provider: web3 retries a read 5 times by default, so a hung node held a request for
    # six timeouts; the relay's loops retry on their own schedule (relay/outage.py), and clients on Retry-After.
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None))
    if not w3.is_connected():
        raise ConfigurationError(f"cannot reach an Ethereum node at {rpc_url}")
    return w3


def is_embedded(w3: Web3) -> bool:
    return isinstance(w3.provider, EthereumTesterProvider)


def advance_time(w3: Web3, seconds: int) -> None:
    """Move the chain's clock forward and mine a block (embedded chain or anvil)."""
    provider = w3.provider
    if isinstance(provider, EthereumTesterProvider):  # is_embedded(w3)
        tester = provider.ethereum_tester
        assert tester is not None  # EthereumTesterProvider() always builds one
        tester.time_travel(w3.eth.get_block("latest")["timestamp"] + seconds)
        tester.mine_blocks(1)
    else:
        provider.make_request(RPCEndpoint("evm_increaseTime"), [seconds])
        provider.make_request(RPCEndpoint("evm_mine"), [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilNode:
    """A local anvil process on a free loopback port; a context manager that always stops it."""

    def __init__(
        self, *, port: int | None = None, block_time: float | None = None, chain_id: int = 31337, accounts: int = 10
    ) -> None:
        self.port = port or free_port()
        self.chain_id = chain_id
        self.block_time = block_time
        self.accounts = accounts  # unlocked dev accounts derived from anvil's test mnemonic
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> AnvilNode:
        args = [
            anvil_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
            "--accounts",
            str(self.accounts),
            "--balance",
            "100000",
        ]
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"}
        )
        deadline = time.monotonic() + timeout
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 5}))
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise ConfigurationError(f"anvil exited with {self._process.returncode}: {err.strip()}")
            try:
                if w3.is_connected() and w3.eth.chain_id == self.chain_id:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ConfigurationError(f"anvil did not answer on {self.url} within {timeout}s")

    def web3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 30}))

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
