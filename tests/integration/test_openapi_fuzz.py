"""Schemathesis against the relay's own OpenAPI schema, on a real relay (the session's in-process relay on the
embedded chain): for each operation a fixed, derandomized budget of generated requests, valid and invalid
(schemathesis' positive and negative modes).
Every answer must be a non-5xx, with a status the schema documents for that operation (relay/openapi.py), the
documented content type, and a body matching the documented schema (the relay's error format for refusals).

Not fuzzed: `GET /events` (a stream that never ends by itself) and the WebSocket stream (not in OpenAPI).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chainstream.config import Settings
from chainstream.relay.app import create_app
from tests.integration.relay_fixtures import InProcessRelay

#: generated requests per operation: bounded, so the run takes the same time (and finds the same things) each time
EXAMPLES = 40
SKIPPED = {"GET /api/v1/events"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _operations() -> list[str]:
    schema = create_app(Settings(relay_key="0x" + "11" * 32)).openapi()  # no relay needed to describe it
    labels = [f"{method.upper()} {path}" for path, methods in schema["paths"].items() for method in methods]
    return sorted(label for label in labels if label not in SKIPPED)


@pytest.fixture(scope="module")
def relay_schema(relay: InProcessRelay) -> Any:
    return schemathesis.openapi.from_dict(relay.app.openapi())


def test_every_operation_documents_its_refusals_with_the_error_model() -> None:
    """The schema itself: each operation lists 422, 500 and 503 at least, each with the error body's schema."""
    schema = create_app(Settings(relay_key="0x" + "11" * 32)).openapi()
    assert "ErrorResponse" in schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            statuses = set(operation["responses"])
            assert {"200", "422", "500", "503"} <= statuses, (method, path, statuses)
            for status in statuses - {"200"}:
                ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path, status, ref)


@pytest.mark.parametrize("label", _operations())
def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(
    label: str, relay: InProcessRelay, relay_schema: Any
) -> None:
    operation = relay_schema.find_operation_by_label(label)
    assert operation is not None, label

    valid_and_invalid = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @given(case=valid_and_invalid)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call(base_url=relay.url, timeout=30)
        case.validate_response(response, checks=CHECKS)

    fuzz()
