"""The relay's response models (relay/api/models.py): the hand-built hot-path JSON matches them byte for byte, every
JSON route documents its 200 with one of them, and the SDK's strict parsing refuses what a lying relay could send."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from chainstream.config import Settings
from chainstream.relay.api import models
from chainstream.relay.api.payments import ack_json
from chainstream.relay.app import create_app
from chainstream.relay.service import PaymentAck

ACK = PaymentAck("accepted", b"\x11" * 32, 7, 10**24, 5, b"\x22" * 32, 3 * 10**23, 5, None)


def _wire(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "ack",
    [ACK, PaymentAck("duplicate", b"\x11" * 32, 1, 1, 0, b"\x22" * 32, 0, 0, 9, grant={"token": "t", "until": 1})],
)
def test_the_streamed_ack_is_the_payment_reply_model_byte_for_byte(ack: PaymentAck) -> None:
    """The WebSocket path builds its ack by hand (no model on the hot path): it must serialise as the model does."""
    body = ack_json(ack)
    parsed = models.PaymentReply.model_validate(body, strict=True)
    assert _wire(parsed.model_dump(mode="json", exclude_unset=True)) == _wire(body)


def test_an_ack_without_a_grant_has_no_grant_member() -> None:
    """`grant` is absent (not null) when the payment opens no audio, as before the models."""
    assert "grant" not in models.PaymentReply.model_validate(ack_json(ACK)).model_dump(exclude_unset=True)


def test_every_json_route_documents_its_200_with_a_schema() -> None:
    """OpenAPI shows what each JSON route answers (not an empty object)."""
    doc = create_app(Settings(relay_key="0x" + "11" * 32)).openapi()
    undocumented = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            content = op["responses"]["200"].get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "application/json" in content and not schema.get("$ref"):
                undocumented.append(f"{method.upper()} {path}")
    # Server-Sent Events, and the audio bytes (their 200 is audio; FastAPI lists its JSON default next to it)
    binary = ["/init", "/segments/{index}", "/original"]
    assert [r for r in undocumented if not any(r.endswith(b) for b in binary)] == ["GET /api/v1/events"]


@pytest.mark.parametrize(
    "field, value",
    [("seq", True), ("seq", "3"), ("amount", 5), ("kind", "refund"), ("memo", None), ("units", 1.5)],
)
def test_strict_parsing_refuses_a_history_item_of_the_wrong_type(field: str, value: object) -> None:
    """A lying relay's history item with a boolean seq, a numeric amount or an unknown kind is malformed."""
    item = {
        "seq": 3,
        "kind": "play",
        "target": "0x" + "01" * 32,
        "title": None,
        "units": 1,
        "amount": "10",
        "total": "30",
        "memo": "",
        "payments": {},
        "at": 1.5,
        "digest": "0x" + "02" * 32,
    }
    models.HistoryItem.model_validate(item, strict=True)
    with pytest.raises(ValidationError):
        models.HistoryItem.model_validate({**item, field: value}, strict=True)


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/api/v1/onboard/open", {"channelId", "deposit"}),
        ("/api/v1/onboard/topup", {"channelId", "added"}),
        ("/api/v1/onboard/close", {"channelId"}),
        ("/api/v1/payouts/schedule", {"payee", "token", "enabled"}),
    ],
)
def test_each_gas_free_route_documents_its_own_answer(path: str, fields: set[str]) -> None:
    """Each gas-free route's 200 is its own model: exactly its fields, all required (not one optional-field bag)."""
    doc = create_app(Settings(relay_key="0x" + "11" * 32)).openapi()
    ref = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    expected = {"txHash", "block", "fee"} | fields
    assert set(schema["properties"]) == expected
    assert set(schema["required"]) == expected
