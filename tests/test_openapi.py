"""Each role's /openapi.json against its real process, with schemathesis: generated requests,
valid (positive) and invalid (negative), for every documented operation; every answer must
be no 5xx, a documented status with the documented content type, headers and body schema,
and invalid data must be refused with a 4xx.

The SSE stream is left out: schemathesis reads a response to its end, and a stream has none.
Example counts are bounded so the module stays within seconds in CI.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emostream.openapi import REACTION_PATHS, delivery_document

from .conftest import Process, ProcessFactory

pytestmark = pytest.mark.e2e

EXAMPLES = 40
ADMIN_TOKEN = "openapi-admin-token"
STREAM = "/v1/events/{event_id}/stream"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Invalid data must be refused: with the statuses the contract names for it (413 for more
# than 500 reactions, 404 for an id that holds a slash and so names no route).
MODES = [
    (GenerationMode.POSITIVE, CHECKS),
    (GenerationMode.NEGATIVE, [*CHECKS, negative_data_rejection]),
]
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]


@schemathesis.serializer("application/msgpack")
def to_msgpack(context: Any, value: Any) -> bytes:
    packed: bytes = msgpack.packb(expressible(value))
    return packed


def expressible(value: Any) -> Any:
    """``value`` with the integers msgpack has no encoding for (beyond 64 bits; generated for
    negative cases) sent as the nearest float, still out of every range the contract has."""
    if isinstance(value, bool) or not isinstance(value, int | list | dict):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        return math.copysign(math.inf, value) if abs(value) > 2**1023 else float(value)
    if isinstance(value, list):
        return [expressible(item) for item in value]
    return {key: expressible(item) for key, item in value.items()}


@pytest.fixture(scope="module")
def roles(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Process]]:
    if redis_server.process is None:
        redis_server.start()
    factory = ProcessFactory(redis_server.url, str(tmp_path_factory.mktemp("openapi")))
    env = {"EMOSTREAM_ADMIN_TOKEN": ADMIN_TOKEN, "EMOSTREAM_REGISTRATION_RATE_PER_S": "1000"}
    try:
        yield factory.start_many([("ingest", env), ("delivery", env)])
    finally:
        factory.stop_all()


def exercise(process: Process) -> list[str]:
    """Run every documented operation of ``process``, positive and negative; the
    operations run."""
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
    )
    schema = schemathesis.openapi.from_url(f"{process.url}/openapi.json", config=config)
    exercised = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is invalid
        operation = result.ok()
        if operation.path == STREAM:
            continue
        for mode, checks in MODES:
            try:
                calls(process, operation.as_strategy(generation_mode=mode), checks)()
            except Unsatisfiable:
                # Nothing to make invalid: an operation without constrained parameters.
                assert mode is GenerationMode.NEGATIVE, operation.path
        exercised.append(f"{operation.method.upper()} {operation.path}")
    return exercised


def calls(process: Process, cases: Any, checks: list[Any]) -> Any:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # The same examples every run: a CI failure is reproducible, not a lottery.
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def call(case: Any) -> None:
        case.call_and_validate(base_url=process.url, checks=checks)

    return call


def test_ingest_answers_as_its_openapi_document_says(roles: list[Process]) -> None:
    ingest, _delivery = roles
    exercised = exercise(ingest)
    assert {
        "POST /v1/events/{event_id}/reactions",
        "POST /send_emoji",
        "GET /healthz",
        "PUT /v1/events/{event_id}/polls/{poll_id}",
        "POST /v1/events/{event_id}/polls/{poll_id}/lock",
        "POST /v1/events/{event_id}/polls/{poll_id}/votes",
    } <= set(exercised)
    assert "Traceback" not in ingest.log()


def test_delivery_answers_as_its_openapi_document_says(roles: list[Process]) -> None:
    _ingest, delivery = roles
    exercised = exercise(delivery)
    assert {
        "POST /v1/events/{event_id}/subscribers",
        "DELETE /v1/events/{event_id}/subscribers/{client_id}",
        "GET /v1/events/{event_id}/windows",
        "GET /v1/stats",
        "POST /register",
        "POST /unregister",
        "GET /v1/events/{event_id}/polls/{poll_id}",
        "GET /v1/events/{event_id}/polls/{poll_id}/votes/{user_id}",
        "GET /v1/events/{event_id}/leaderboard",
    } <= set(exercised)
    assert "Traceback" not in delivery.log()


def test_every_role_serves_its_document(roles: list[Process]) -> None:
    ingest, delivery = roles
    served = {p.args[0]: httpx.get(f"{p.url}/openapi.json").json() for p in roles}
    assert served["delivery"] == delivery_document()
    assert set(REACTION_PATHS) <= set(served["ingest"]["paths"])
    assert served["ingest"]["openapi"].startswith("3.1")
    # `emostream up` serves both on one port, and so does its document.
    combined = delivery_document(with_reactions=True)["paths"]
    assert set(REACTION_PATHS) | {"/v1/events/{event_id}/windows"} <= set(combined)
    # The seed's alias answers 200, as the seed did, and its document says so (fuzzing finds a
    # valid seed body only now and then).
    seed = {"user_id": "u-1", "emoji_type": "🔥", "timestamp": "not a time"}
    answer = httpx.post(f"{ingest.url}/send_emoji", json=seed)
    assert answer.json() == {"accepted": 1, "ts_dropped": 1}
    documented = served["ingest"]["paths"]["/send_emoji"]["post"]["responses"]
    assert str(answer.status_code) in documented
    # A poll's path has delivery's GET and ingest's PUT: both are kept.
    assert {"get", "put"} <= set(combined["/v1/events/{event_id}/polls/{poll_id}"])
    assert ingest.url != delivery.url
