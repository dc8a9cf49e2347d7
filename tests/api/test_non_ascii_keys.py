"""A key with characters outside ASCII is an unknown key: a 401 JSON body on every
authenticated route family, never a 500 (the constant-time comparison used to raise
TypeError on non-ASCII text)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

NON_ASCII_KEY = "clé_sécrète_€_ключ"
EVENT = {"type": "track", "event": "Viewed", "userId": "u1"}

ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/batch", {"batch": [EVENT]}),
    ("POST", "/v1/track", EVENT),
    ("POST", "/v1/decide", {"user_id": "u1", "placements": ["home_hero"]}),
    ("GET", "/v1/placements", None),
    ("GET", "/v1/profiles/user_id/u1", None),
    ("GET", "/v1/profiles/user_id/u1/events", None),
    ("GET", "/v1/definitions", None),
    ("PUT", "/v1/definitions", {"placements": [], "content": []}),
    ("GET", "/v1/rejected", None),
    ("GET", "/v1/audit", None),
    ("GET", "/v1/decisions", None),
    ("GET", "/v1/segments", None),
]


def _bearer_utf8() -> dict[str, Any]:
    return {"Authorization": b"Bearer " + NON_ASCII_KEY.encode("utf-8")}


def _bearer_latin1() -> dict[str, Any]:
    return {"Authorization": b"Bearer cl\xe9"}


def _basic() -> dict[str, Any]:
    user = base64.b64encode(f"{NON_ASCII_KEY}:".encode()).decode()
    return {"Authorization": f"Basic {user}"}


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert error["message"]


@pytest.mark.parametrize("headers", [_bearer_utf8, _bearer_latin1, _basic])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_non_ascii_key_in_the_header_is_a_401(
    client: TestClient, headers: Any, method: str, path: str, body: Any
) -> None:
    response = client.request(method, path, json=body, headers=headers())
    _assert_401(response)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/batch", {"batch": [EVENT], "writeKey": NON_ASCII_KEY}),
        ("/v1/track", {**EVENT, "writeKey": NON_ASCII_KEY}),
        ("/v1/identify", {"userId": "u1", "writeKey": NON_ASCII_KEY}),
    ],
)
def test_a_non_ascii_write_key_in_the_body_is_a_401(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    _assert_401(client.post(path, json=body))
