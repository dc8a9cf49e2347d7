"""The decide API: `POST /v1/decide`, and the placements it can fill.

`POST /v1/decide` takes the secret key (a server asking, by any identifier), or
the write key of a source that allows client-side decisions (a web page asking,
with the key it already ships, for its own device or for a user id its backend
signed: `decide/client.py`). It answers with one decision id and, per placement,
the content, its payload and rendered HTML, the reason and the policy; the
profile id only to the secret key.

Where the work runs is a measured choice: the whole decision (a few indexed
point reads, compiled conditions, a Liquid render or a remembered one, one short
insert into the decision log's WAL, no fsync) runs inline on the event loop. It
is CPU-bound Python holding the GIL wherever it runs, and its blocking part is
tens of microseconds, so a worker thread only adds thread switches and GIL
contention. Measured with uvicorn on this 2-core machine, 3 placements over a
500-item catalog: inline 1,650-1,830 requests/s against 1,130-1,170 on the
threadpool (32 clients), and a p99 at 500 requests/s of 30 ms against 83 ms
(a loaded machine). A third shape, deciding inline and storing the decision on
a writer thread with group commit, gave no more throughput (1,410-1,840 against
1,720-2,030 inline in `bench/decide.py`) and a worse tail at 500 requests/s
(59-64 ms against 2-33 ms): the writer has to win the GIL back from the loop.

`GET /v1/placements` and `GET /v1/placements/{name}` (secret key) show the
current definitions version's placements with their candidate content and
fallback.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from touchpoint.api.deps import AdminKey, WorkspaceDep, basic_user, charge_source, read_stores
from touchpoint.api.openapi import documented_body
from touchpoint.api.responses import OrjsonResponse
from touchpoint.api.routers.collect import parse_json, read_body
from touchpoint.api.schemas.decide import DecideResponse, PlacementDetail, PlacementList
from touchpoint.api.schemas.errors import ADMIN_ERRORS, error_responses
from touchpoint.api.schemas.security import DECIDE_KEYS, SecretKeyScheme
from touchpoint.core.config_sources import SourceConfig
from touchpoint.core.errors import BadRequest, Forbidden, InvalidInput, Unauthorized
from touchpoint.core.identity_verification import USER_HASH_FIELD
from touchpoint.core.keys import same_key
from touchpoint.decide.client import check_client_identities
from touchpoint.decide.results import DecideRequest
from touchpoint.runtime import Workspace

router = APIRouter(tags=["decide"])

MAX_BODY_BYTES = 64 * 1024
MAX_PLACEMENTS = 20
_RESERVED = frozenset({"context", "placements", USER_HASH_FIELD})


def authorize_decide(request: Request, workspace: Workspace) -> SourceConfig | None:
    """Who may decide: the secret key (`Bearer`), or a write key (Basic user name, as the
    Segment SDKs send it, or `Bearer`) of a source with `allow_client_decisions`. Returns
    None for the secret key, else the write key's source; 401 for no or an unknown key,
    403 for a source that does not allow client-side decisions."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key: str | None
    if scheme.lower() == "bearer":
        key = token.strip() or None
        if key is not None and same_key(key, workspace.settings.secret_key):
            return None
    else:
        key = basic_user(request)
    if not key:
        raise Unauthorized(
            "send the secret key as `Authorization: Bearer <key>`, or the write key of a "
            "source that allows client-side decisions"
        )
    source = workspace.settings.config.source_by_key(key)
    if source is None:
        raise Unauthorized("unknown key")
    if not source.allow_client_decisions:
        raise Forbidden(
            f"client-side decisions are off for source {source.name!r}: set "
            "`allow_client_decisions: true` on it, or decide from a server with the secret key",
            details={"source": source.name},
        )
    return source


def parse_decide_body(body: Any, identity_kinds: tuple[str, ...]) -> DecideRequest:
    """Validate the JSON body into a DecideRequest; InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    kinds = set(identity_kinds)
    identities: dict[str, str] = {}
    for key, value in body.items():
        if key in _RESERVED:
            continue
        if key not in kinds:
            raise InvalidInput(
                f"{key}: unknown field; name the person with one of "
                f"{', '.join(identity_kinds)}, plus `context` and `placements`",
                details={"field": key},
            )
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{key}: must be a non-empty string", details={"field": key})
        identities[key] = value
    if not identities:
        raise InvalidInput(
            f"name the person with one of: {', '.join(identity_kinds)}",
            details={"field": "identity", "accepted": list(identity_kinds)},
        )
    context = body.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        raise InvalidInput("context: must be an object", details={"field": "context"})
    placements = body.get("placements")
    if not isinstance(placements, list) or not placements:
        raise InvalidInput(
            "placements: must be a non-empty list of placement names",
            details={"field": "placements"},
        )
    if len(placements) > MAX_PLACEMENTS:
        raise InvalidInput(
            f"placements: at most {MAX_PLACEMENTS} per request", details={"field": "placements"}
        )
    if not all(isinstance(name, str) for name in placements):
        raise InvalidInput(
            "placements: every item must be a placement name (a string)",
            details={"field": "placements"},
        )
    if len(set(placements)) != len(placements):
        raise InvalidInput("placements: names must be unique", details={"field": "placements"})
    return DecideRequest(identities=identities, placements=placements, context=context)


@router.post(
    "/v1/decide",
    summary="Decide what placements show a person",
    # Declared, not validated by FastAPI: the answer is a ready Response. Validating it with
    # `response_model` measured 8 us per answer (3 placements), 1.3% of a decision at
    # 1,700 requests/s, on the route tuned hardest for latency; the contract test checks
    # its answers against DecideResponse instead.
    responses={
        200: {"model": DecideResponse, "description": "The decision"},
        **error_responses(400, 401, 403, 404, 413, 422, 429, 503),
    },
    openapi_extra={**DECIDE_KEYS, **documented_body("DecideBody")},
)
async def decide(request: Request) -> OrjsonResponse:
    # The workspace is read from the app state rather than through a dependency: on a route
    # this hot, FastAPI's dependency resolution is a measurable share of the request.
    workspace: Workspace = request.app.state.workspace
    source = authorize_decide(request, workspace)
    if source is not None:  # a public key: each decision it asks for is charged to its source
        await charge_source(workspace, source, 0)
    raw = await read_body(request, MAX_BODY_BYTES)
    decider = workspace.decider
    body = parse_json(raw)
    parsed = parse_decide_body(body, decider.identity_kinds)
    if source is not None:  # a write key: its device, or a signed user id (decide/client.py)
        kinds = workspace.settings.config.identity.kinds
        check_client_identities(source, kinds, parsed.identities, body.get(USER_HASH_FIELD))
    decision = await read_stores(workspace, lambda: decider.decide(parsed))
    # The profile id is for servers: a page has no use for it, and it would tell apart a
    # known person from a stranger.
    return OrjsonResponse(decision.to_dict(with_profile_id=source is None))


@router.get(
    "/v1/placements",
    summary="Placements with their content",
    dependencies=[AdminKey, SecretKeyScheme],
    response_model=PlacementList,
    responses=ADMIN_ERRORS,
)
async def list_placements(workspace: WorkspaceDep) -> dict[str, Any]:
    return workspace.decider.describe()


@router.get(
    "/v1/placements/{name}",
    summary="One placement with its content",
    dependencies=[AdminKey, SecretKeyScheme],
    response_model=PlacementDetail,
    responses=ADMIN_ERRORS,
)
async def get_placement(name: str, workspace: WorkspaceDep) -> dict[str, Any]:
    return workspace.decider.describe_placement(name)
