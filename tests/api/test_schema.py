"""schemathesis against the OpenAPI document the app serves: generated requests to every
operation (through the WSGI app, a token with every scope sent) never get a 5xx, and every
response conforms to the document: its status code, content type and body schema."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audit.api.views import JSONL_TYPES
from audit.models import Transcript
from audit.publish.release import publish_release
from tests.api.conftest import bearer
from tests.factories import confirm, import_fixture


@schemathesis.serializer(*JSONL_TYPES)
def jsonl_body(ctx: object, value: object) -> dict:
    """The ingest body as generated: bytes, sent as they are."""
    return {"data": value if isinstance(value, bytes) else str(value).encode()}


schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def keep_connection():
    """The WSGI app closes the database connection after each request, which would end the
    test's transaction; Django's test client keeps it open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, keep_connection, staff_user, make_token, tmp_path, auditor, settings):
    """A staff auditor's token with both scopes, over an imported fixture with a settled item
    and a published release, so the read endpoints have something to answer with."""
    settings.RELEASES_ROOT = tmp_path / "releases"
    import_fixture("rule_s0")
    confirm(Transcript.objects.order_by("id").first(), auditor)
    publish_release(Transcript.objects.all(), version="1.0.0", output_dir=tmp_path / "releases")
    return make_token(staff_user, "ingest", "read")


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_openapi_document(case, token):
    case.call_and_validate(headers=bearer(token), checks=CHECKS)
