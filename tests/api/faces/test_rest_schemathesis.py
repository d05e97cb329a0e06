"""A bounded schemathesis run over the OpenAPI document of ``/api/v1``: whatever it
sends to each operation (as the superadmin), the API never answers 5xx.

The operations are driven by hand with hypothesis (schemathesis' pytest plugin does
not support pytest 9 yet)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine

from tests.api.conftest import Api, World

EXAMPLES = 12


@pytest.mark.slow
def test_no_server_errors(shared: tuple[Api, World, Engine]) -> None:
    api, _world, _engine = shared
    app = api.client._transport._inner.app  # type: ignore[attr-defined]
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    auth = api.headers("root")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=[not_a_server_error])

        check()
    metrics = api.client.get("/metrics").text
    server_errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("qvd_api_requests_total") and 'status="5' in line
    ]
    assert server_errors == []
