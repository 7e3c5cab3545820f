"""Schemathesis over the app's own OpenAPI document, against the real app on SQLite and PostgreSQL.

Every operation gets schema-valid (positive) and schema-invalid (negative) requests, sent with an admin
key so they reach the handlers; about a third of the requests that name a model name one that exists,
so the model and decision endpoints run their real work, not only their 404. Checked on every response:
no 5xx, status and body as the document declares (errors included: `ErrorBody`), content type, and
that invalid input is refused with a 4xx.

Bounded: LOCUS_FUZZ_EXAMPLES (default 12) examples per operation and mode, derandomized so a CI failure
reproduces; raise it locally for a deeper run (`LOCUS_FUZZ_EXAMPLES=200 pytest tests/api/test_fuzz.py`).
The number of generated cases is printed (`-s`) and recorded as the test's `fuzz_cases` property.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup

from api.app import create_app
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from registry import services
from registry.services import Context
from tests.api.conftest import bearer, make_container
from tests.conftest import SMALL

EXAMPLES = int(os.environ.get("LOCUS_FUZZ_EXAMPLES", "12"))
CHECKS: list[Callable[..., Any]] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]
REJECTION = schemathesis.checks.negative_data_rejection
# Fuzzed with their random ids only: deleting a seeded model or revoking the run's key (its id is never
# aimed at) would starve the rest of the run of real targets.
DESTRUCTIVE = {("DELETE", "/v1/models/{model_id}"), ("DELETE", "/v1/keys/{key_id}")}


@pytest.fixture(scope="module")
def embedder() -> LocusEmbedder:
    """The small real encoder, with an in-memory query cache: fuzzed texts never reach the disk cache."""
    torch.manual_seed(0)
    return LocusEmbedder(LocusModel(SMALL), QueryEncoder(cache_dir=None))


@pytest.fixture
def seeded(ctx: Context) -> Iterator[tuple[FastAPI, dict[str, str], list[str]]]:
    """An app with two embedded models and an admin key; yields (app, auth headers, model ids)."""
    headers = bearer(services.create_api_key(ctx, "fuzz", ["admin"]).key)
    app = create_app(container=make_container(ctx))
    with TestClient(app) as client:  # runs the lifespan: the container is on app.state from here on
        ids = []
        for name, scores in [("alpha", [1.0, 0.0, 1.0, 0.5]), ("beta", [0.0, 1.0, 1.0, 0.0])]:
            body = {
                "name": name,
                "provider": "acme",
                "params_b": 7,
                "evaluations": [
                    {"question": f"q{i}", "text": f"Question number {i}?", "score": s}
                    for i, s in enumerate(scores)
                ],
            }
            r = client.post("/v1/models", json=body, headers=headers)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        yield app, headers, ids


def _aim(case: Any, model_ids: list[str], pick: int) -> None:
    """Point a third of the cases' model ids at registered models (the rest keep their random ids)."""
    if pick >= len(model_ids):
        return
    target = model_ids[pick]
    for params in (case.path_parameters, case.query):
        if not params:
            continue
        for name in ("model_id", "a", "b"):
            if name in params and _is_uuid(params[name]):
                params[name] = target


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class Tally:
    """What the run sent and saw, and one report per (operation, mode, failure title)."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failures: dict[str, str] = {}


def fuzz_operation(
    operation: Any, mode: Any, headers: dict[str, str], model_ids: list[str], tally: Tally
) -> None:
    """Send EXAMPLES generated requests to one operation in one mode; record failures, do not raise."""
    label = f"{operation.label} [{mode.value}]"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 2 * len(model_ids)))
    def run(case: Any, pick: int) -> None:
        _aim(case, model_ids, pick)
        # Our key replaces the generated one; a case that drops the header (negative mode) goes
        # without, and must get its 401.
        if case.headers and "Authorization" in case.headers:
            case.headers["Authorization"] = headers["Authorization"]
        response = case.call()
        tally.cases[label] += 1
        tally.statuses[response.status_code] += 1
        # A body over LOCUS_MAX_BODY_BYTES is refused with 413 before it is read: a rejection, which
        # schemathesis's negative-data check does not list among the rejecting statuses.
        checks = CHECKS if response.status_code != 413 else [c for c in CHECKS if c is not REJECTION]
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.failures.setdefault(
                    f"{label} {failure.title}", f"{failure.message}\n  sent: {case.as_curl_command()}"
                )

    try:
        run()
    except Unsatisfiable:
        # No parameter or body to make invalid (e.g. /healthz): nothing negative to send.
        assert mode is schemathesis.GenerationMode.NEGATIVE, label


def test_fuzz_openapi(seeded: tuple[FastAPI, dict[str, str], list[str]], record_property: Any) -> None:
    app, headers, model_ids = seeded
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        targets = [] if (operation.method.upper(), operation.path) in DESTRUCTIVE else model_ids
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, headers, targets, tally)

    total = sum(tally.cases.values())
    record_property("fuzz_cases", total)
    print(
        f"\nfuzz: {total} cases over {len(tally.cases)} operation/mode pairs; "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert len(tally.cases) >= 20, f"only {len(tally.cases)} operation/mode pairs were fuzzed"
    assert not tally.failures, f"{len(tally.failures)} failure classes:\n\n" + "\n\n".join(
        f"{k}\n{v}" for k, v in sorted(tally.failures.items())
    )
