"""The two kinds of keys, as OpenAPI security schemes.

Write keys are public (they ship in web pages) and only send events: Segment's SDKs send
one as the HTTP Basic user name, or as `writeKey` in the body. The secret key reads and
administers, as `Authorization: Bearer <key>`. `/v1/decide` also takes a write key of a
source with `allow_client_decisions` (Basic, or Bearer).

The checks themselves live in `api.deps` and `routers.decide`; these declarations only
document them. Secret-key routers add `SecretKeyScheme` beside `AdminKey`: FastAPI then
lists the requirement on each of their routes (it never refuses anything: the check stays
`AdminKey`'s). The hot routes (events, decide) run no dependency and declare their
schemes with `openapi_extra`; `api.openapi` puts every scheme in the document.
"""

from __future__ import annotations

from typing import Any

from fastapi import Security
from fastapi.security import HTTPBearer

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "writeKey": {
        "type": "http",
        "scheme": "basic",
        "description": (
            "A source's write key as the HTTP Basic user name (the password is empty), as "
            "Segment's SDKs send it. The event routes also take it as `writeKey` in the JSON "
            "body. Write keys are public: they only send events (and decide, for a source "
            "with `allow_client_decisions`)."
        ),
    },
    "secretKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The workspace's secret key: reads and administers. Keep it on servers.",
    },
    "clientKey": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "`/v1/decide` only: the write key of a source with `allow_client_decisions`, as a "
            "Bearer token (a web page deciding with the key it already ships)."
        ),
    },
}

SecretKeyScheme = Security(
    HTTPBearer(
        scheme_name="secretKey",
        description=SECURITY_SCHEMES["secretKey"]["description"],
        auto_error=False,  # documents only: `AdminKey` checks the key and words the errors
    )
)
"""Beside `AdminKey` on a secret-key route: declares the `secretKey` scheme in OpenAPI."""

WRITE_KEY: dict[str, Any] = {"security": [{"writeKey": []}]}
"""`openapi_extra` of a route that takes a write key (Basic, or `writeKey` in the body)."""

DECIDE_KEYS: dict[str, Any] = {"security": [{"secretKey": []}, {"writeKey": []}, {"clientKey": []}]}
"""`openapi_extra` of `/v1/decide`: the secret key, or a client-decisions write key."""
