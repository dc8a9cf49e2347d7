"""The OpenAPI document tells the truth about the server.

Structural tests read `/openapi.json` (request bodies, security, the error shape, a schema
for every answer); the contract test runs schemathesis over the whole document against
the app in-process, once with a write key and once with the secret key, and fails on a
server error or an answer its operation does not document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import SECRET_KEY, WRITE_KEY, basic, bearer, drain, fixed_clock
from touchpoint.api.app import create_app
from touchpoint.config.settings import Settings
from touchpoint.runtime import Workspace

METHODS = {"get", "put", "post", "delete", "patch"}
EVENT_KINDS = ("track", "identify", "page", "screen", "group", "alias")


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


# -- request bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/batch", *(f"/v1/{kind}" for kind in EVENT_KINDS)])
def test_every_event_route_documents_its_json_body(document: dict[str, Any], path: str) -> None:
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    schema = resolve(document, body["content"]["application/json"]["schema"])
    assert schema["type"] == "object"
    if path == "/v1/batch":
        assert "batch" in schema["required"]
        items = schema["properties"]["batch"]["items"]
        # Every event type of the Segment spec, told apart by `type`.
        assert items["discriminator"]["propertyName"] == "type"
        assert set(items["discriminator"]["mapping"]) == set(EVENT_KINDS)
    else:
        assert "writeKey" in schema["properties"]
        assert "type" not in schema.get("required", [])


def test_a_track_body_requires_event_and_an_alias_body_previous_id(
    document: dict[str, Any],
) -> None:
    def required(path: str) -> set[str]:
        body = document["paths"][path]["post"]["requestBody"]
        return set(resolve(document, body["content"]["application/json"]["schema"])["required"])

    assert "event" in required("/v1/track")
    assert {"previousId", "userId"} <= required("/v1/alias")
    assert "groupId" in required("/v1/group")


def test_decide_documents_its_body_with_the_workspaces_identity_kinds(
    document: dict[str, Any],
) -> None:
    body = document["paths"]["/v1/decide"]["post"]["requestBody"]
    schema = resolve(document, body["content"]["application/json"]["schema"])
    assert schema["required"] == ["placements"]
    assert {"user_id", "email", "anonymous_id", "context", "placements"} <= set(
        schema["properties"]
    )
    assert schema["properties"]["placements"]["maxItems"] == 20
    assert schema["additionalProperties"] is False


# -- security ---------------------------------------------------------------------------------


def test_both_kinds_of_key_are_declared_security_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["writeKey"] == {
        "type": "http",
        "scheme": "basic",
        "description": schemes["writeKey"]["description"],
    }
    assert "writeKey" in schemes["writeKey"]["description"]  # the body field is documented
    assert schemes["secretKey"]["type"] == "http"
    assert schemes["secretKey"]["scheme"] == "bearer"
    assert schemes["clientKey"]["scheme"] == "bearer"


def test_each_route_declares_the_key_it_needs(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        security = operation.get("security")
        if path in {"/healthz", "/metrics"}:
            assert security is None, path
        elif path.startswith("/v1/batch") or path.removeprefix("/v1/") in EVENT_KINDS:
            assert security == [{"writeKey": []}], path
        elif path == "/v1/decide":
            assert security == [{"secretKey": []}, {"writeKey": []}, {"clientKey": []}]
        else:
            assert security == [{"secretKey": []}], f"{method} {path}"


# -- answers -----------------------------------------------------------------------------------


def test_the_error_shape_is_the_one_the_server_returns(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error = schemas["ErrorResponse"]
    assert error["required"] == ["error"]
    detail = resolve(document, error["properties"]["error"])
    assert set(detail["required"]) == {"code", "message"}
    assert detail["additionalProperties"] is True


def test_every_route_documents_its_answer_and_its_errors(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        name = f"{method} {path}"
        responses = operation["responses"]
        assert "200" in responses, name
        ok = responses["200"]["content"]
        if path == "/metrics":
            assert "text/plain" in next(iter(ok)), name
            continue
        assert ok["application/json"]["schema"], f"{name}: the 200 answer has no schema"
        errors = [status for status in responses if status[0] in "45"]
        assert "500" in errors, name
        if path != "/healthz":
            assert "401" in errors, name
        takes_input = operation.get("parameters") or method in {"PUT", "POST"}
        is_event_route = path == "/v1/batch" or path.removeprefix("/v1/") in EVENT_KINDS
        if takes_input and not is_event_route:  # event routes answer 400, never 422
            assert "422" in errors, name
        for status in errors:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert resolve(document, schema)["required"] == ["error"], f"{name} {status}"


def test_a_validation_error_answers_in_the_documented_shape(client: TestClient) -> None:
    response = client.get("/v1/audit?limit=0", headers=bearer(SECRET_KEY))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["errors"] == [{"field": "query.limit", "reason": error["errors"][0]["reason"]}]


NON_ASCII_BEARER = {"Authorization": "Bearer clé".encode("latin-1")}


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/v1/track", {}, {"writeKey": "clé", "userId": "u1", "event": "E"}),
        ("/v1/track", basic("clé"), {"userId": "u1", "event": "E"}),
        ("/v1/decide", NON_ASCII_BEARER, {"user_id": "u1", "placements": ["home_hero"]}),
        ("/v1/audit", NON_ASCII_BEARER, None),
    ],
    ids=["body-key", "basic-key", "bearer-decide", "bearer-admin"],
)
def test_a_key_with_non_ascii_characters_is_unknown_not_a_server_error(
    client: TestClient, path: str, headers: dict[str, Any], body: dict[str, Any] | None
) -> None:
    # Found by the contract test: `secrets.compare_digest` raises TypeError on non-ASCII text.
    if body is None:
        response = client.get(path, headers=headers)
    else:
        response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"


# -- the docs page ------------------------------------------------------------------------------

LOCAL_URL = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")


def test_the_docs_page_loads_everything_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = [first or second for first, second in LOCAL_URL.findall(page.text)]
    assert urls, page.text
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by this server"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "//" not in "".join(url.removeprefix("/") for url in urls)


def test_redoc_loads_from_this_server_too(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    urls = [first or second for first, second in LOCAL_URL.findall(page.text)]
    assert urls and all(url.startswith("/") for url in urls), urls
    assert "fonts.googleapis.com" not in page.text
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url


# -- the contract, with schemathesis -------------------------------------------------------------

KEYS = {"write key": basic(WRITE_KEY), "secret key": bearer(SECRET_KEY)}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 10  # per operation and generation mode: the whole run stays well under a minute


@pytest.fixture
def seeded_app(settings: Settings) -> Iterator[FastAPI]:
    """An app on a workspace with a profile, a decision and a rejected event, so lookups
    find something as well as nothing."""
    workspace = Workspace.open(settings, clock=fixed_clock())
    try:
        app = create_app(settings, workspace=workspace)
        with TestClient(app) as seed:
            events = [
                {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}},
                {"type": "track", "userId": "u1", "event": "Order Completed"},  # flagged
                {"type": "track", "userId": "u1", "event": "Product Viewed"},
            ]
            seed.post("/v1/batch", json={"batch": events}, headers=basic(WRITE_KEY))
            seed.post("/v1/track", json={"userId": "u1"}, headers=basic(WRITE_KEY))  # rejected
            drain(workspace)
            decide = {"user_id": "u1", "placements": ["home_hero"]}
            seed.post("/v1/decide", json=decide, headers=bearer(SECRET_KEY))
            yield app
    finally:
        workspace.close()


def test_every_operation_keeps_its_contract(seeded_app: FastAPI) -> None:
    """schemathesis over every operation of the document, valid and invalid input alike,
    with each kind of key (a write key on an admin route is a 403: documented too): no
    server error, and every answer's status, content type and body as documented.
    Deterministic (derandomized) and bounded (EXAMPLES per operation and mode)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", seeded_app)
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Case) -> None:
                for headers in KEYS.values():
                    case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, or free-form text only)
            except (Exception, BaseExceptionGroup) as error:  # try all; report every failure
                failures.append(f"{operation.label} ({mode.value}): {error}")
            tested += 1
    assert tested >= 45, tested  # every operation with valid input, most with invalid too
    assert not failures, "\n\n".join(failures)
