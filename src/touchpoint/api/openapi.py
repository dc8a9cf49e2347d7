"""The OpenAPI document: FastAPI's, completed with what the routes cannot say themselves.

- The security schemes (`schemas.security`) with their descriptions (which routes use
  which, the routes declare).
- The request bodies the hot routes parse themselves (events, decide): their models'
  schemas go into `components`, and the decide body lists this workspace's identity kinds.

Built once per app, on first request of `/openapi.json` (or `/docs`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from touchpoint.api.schemas.collect import SINGLE_BODIES, BatchBody
from touchpoint.api.schemas.decide import decide_body_schema
from touchpoint.api.schemas.security import SECURITY_SCHEMES
from touchpoint.config.workspace import TouchpointConfig

REF_TEMPLATE = "#/components/schemas/{model}"
DOCUMENTED_BODIES: tuple[type[BaseModel], ...] = (BatchBody, *SINGLE_BODIES.values())
"""Request bodies the routes parse themselves, documented from these models."""

DESCRIPTION = """\
Collect events (Segment's HTTP Tracking API), look up profiles, decide what a person sees,
and administer definitions.

**Keys.** A source's *write key* sends events: as the HTTP Basic user name (the way the
Segment SDKs send it) or as `writeKey` in the body. The *secret key* reads and administers,
as `Authorization: Bearer <key>`. `/v1/decide` takes the secret key, or the write key of a
source with `allow_client_decisions`.

**Errors.** Every 4xx and 5xx answer is `{"error": {"code", "message", ...}}` with a stable
`code`; a 422 for invalid input lists every invalid field in `error.errors`.
"""


def documented_body(model_name: str) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body whose schema is `model_name` in
    `components` (the route reads the body itself)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model_name)}}
            },
        }
    }


def _identity_kinds(config: TouchpointConfig) -> list[str]:
    """The identity kinds a decide request may name, highest priority first (the resolver's
    order)."""
    indexed = sorted(enumerate(config.identity.kinds), key=lambda pair: (pair[1].priority, pair[0]))
    return [kind.name for _, kind in indexed]


def build_document(app: FastAPI, config: TouchpointConfig, max_placements: int) -> dict[str, Any]:
    """The whole document of `app` for the workspace `config` describes."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    schemas = components.setdefault("schemas", {})
    _, definitions = models_json_schema(
        [(model, "validation") for model in DOCUMENTED_BODIES], ref_template=REF_TEMPLATE
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["DecideBody"] = decide_body_schema(_identity_kinds(config), max_placements)
    return dict(sorted(document.items()))


def install_openapi(app: FastAPI, config: TouchpointConfig, max_placements: int) -> None:
    """Serve `build_document`'s document at `app.openapi_url` (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app, config, max_placements)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
