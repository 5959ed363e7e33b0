"""relay/api/errors.py `failure_of`: the one mapping from an exception to the relay's error vocabulary, the same
for a request (status, body, Retry-After) and for a batch item or stream message (`item`). Real exceptions, no
server."""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests

from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainStreamError, RecoverableError, UnrecoverableError
from chainstream.relay.api.errors import Failure, failure_of
from chainstream.relay.limits import Refusal
from chainstream.relay.outage import ChainStatus
from chainstream.store.errors import RETRY_AFTER as DATABASE_RETRY_AFTER
from chainstream.verify import Rejection


def _raised_from(cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as exc:
            raise ValueError("decoding the node's answer") from exc
    except ValueError as outer:
        return outer


@pytest.mark.parametrize(
    "exc, status, code, retry",
    [
        (Rejection(Code.SEQ_GAP, "seq 5 after 3"), 409, Code.SEQ_GAP, None),
        (Rejection(Code.BAD_SIGNATURE, "not a signature"), 422, Code.BAD_SIGNATURE, None),
        (RecoverableError("bad input", code=Code.INVALID_REQUEST), 400, Code.INVALID_REQUEST, None),
        (UnrecoverableError("commit failed", code=Code.DATABASE_UNAVAILABLE), 503, Code.DATABASE_UNAVAILABLE, 1),
        (ChainStreamError("broken"), 503, Code.CHAINSTREAM_ERROR, None),
        (Refusal(413, Code.BODY_TOO_LARGE, "too large"), 413, Code.BODY_TOO_LARGE, None),
        (sqlite3.OperationalError("database or disk is full"), 503, Code.DATABASE_UNAVAILABLE, 1),
        (requests.ConnectionError("connection refused"), 503, Code.CHAIN_UNAVAILABLE, 2),
        (_raised_from(requests.Timeout("read timed out")), 503, Code.CHAIN_UNAVAILABLE, 2),
        (KeyError("a bug"), 500, Code.INTERNAL_ERROR, None),
    ],
)
def test_every_exception_maps_to_one_status_code_and_retry(
    exc: Exception, status: int, code: str, retry: int | None
) -> None:
    """Refusals by their status, our own and the database's errors 503 (retry after the database's delay),
    the node out of reach 503 (retry after the chain's backoff, the outage recorded), anything else 500."""
    chain = ChainStatus(Settings(relay_key="0x" + "11" * 32, poll_interval=2.0))
    failure = failure_of(exc, lambda: chain)
    expected_retry = {None: None, 1: DATABASE_RETRY_AFTER, 2: chain.retry_after()}[retry]
    assert (failure.status, failure.code, failure.retry_after) == (status, code, expected_retry)
    assert chain.reachable is (code != Code.CHAIN_UNAVAILABLE)


def test_a_request_and_a_batch_item_say_the_same_thing() -> None:
    """The HTTP answer (body, header) and the item error carry the same code, message, details and retry."""
    failure = Failure(503, code=Code.DATABASE_UNAVAILABLE, message="disk full", details={"n": "1"}, retry_after=7)
    response = failure.response()
    body = json.loads(bytes(response.body))
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert failure.item() == {**body["error"], "status": 503, "retryAfter": 7}
    assert "retryAfter" not in Failure(409, code=Code.SEQ_GAP, message="gap").item()
