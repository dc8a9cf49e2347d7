"""The demo storefront: `GET /demo`, its script, and the visitors the demo simulated.

`touchpoint demo` adds this router to the app it serves (`create_app(settings,
routers=[router])`); no other app has it, and the API knows nothing of the demo. The
page is plain HTML and vanilla JavaScript shipped beside this module, in
`touchpoint.demo`: it asks `POST /v1/decide` for its placements with the write key of a
source that allows client-side decisions, and sends `Decision Viewed` / `Decision
Clicked` through `/v1/batch`; for a visitor named by user id it sends the `user_hash`
`/demo/visitors.json` gives it, as a real shop's backend would for its signed-in
visitor. Write keys are public (they ship in web pages), so the router writes that key
into the page, as JSON inside a non-executed `<script type="application/json">`, escaped
so no value can close the element. A Content-Security-Policy allows scripts from this
origin only: the rendered content HTML the page inserts cannot run script.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from touchpoint.api.deps import WorkspaceDep
from touchpoint.core.config_sources import SourceConfig
from touchpoint.core.errors import NotFound
from touchpoint.core.identity_verification import USER_HASH_FIELD, user_hash
from touchpoint.demo.showcase import VISITORS_FILE
from touchpoint.runtime import Workspace

router = APIRouter(tags=["demo"], include_in_schema=False)

CONFIG_MARKER = "__TOUCHPOINT_PAGE_CONFIG__"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https:; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@cache
def _asset(name: str) -> str:
    """A file shipped beside this module, in the `touchpoint.demo` package (read once)."""
    return resources.files("touchpoint.demo").joinpath(name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside an HTML `<script>` element: `<`, `>` and `&` as `\\u` escapes, so a
    value cannot end the element or open a comment."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def client_source(workspace: Workspace) -> SourceConfig | None:
    """The first source whose write key may decide (the page's), if any."""
    return next(
        (item for item in workspace.settings.config.sources if item.allow_client_decisions), None
    )


def page_config(workspace: Workspace) -> dict[str, Any]:
    """What the page needs before it loads anything: a write key that may decide (None when
    no source allows client-side decisions), the workspace and its placement names."""
    config = workspace.settings.config
    source = client_source(workspace)
    return {
        "workspace": config.workspace,
        "writeKey": source.write_key if source is not None else None,
        "source": source.name if source is not None else None,
        "placements": [placement.name for placement in config.placements],
    }


@router.get("/demo", response_class=HTMLResponse)
async def storefront(workspace: WorkspaceDep) -> HTMLResponse:
    """The storefront page, with its configuration written in."""
    page = _asset("storefront.html").replace(CONFIG_MARKER, script_json(page_config(workspace)))
    return HTMLResponse(page, headers=SECURITY_HEADERS)


@router.get("/demo/storefront.js")
async def storefront_script() -> Response:
    """The page's script (vanilla JavaScript, no build step)."""
    return Response(_asset("storefront.js"), media_type="text/javascript", headers=SECURITY_HEADERS)


@router.get("/demo/visitors.json")
async def visitors(workspace: WorkspaceDep) -> Response:
    """The simulated visitors the demo wrote to `<data_dir>/demo-visitors.json`; 404 before
    `touchpoint demo` has written it.

    This route plays the shop's backend: a visitor named by user id gets the `user_hash` the
    backend of a real shop computes for its signed-in visitor (HMAC of the user id under
    the page source's identity secret), so the page may decide and send events for them.
    """
    path = workspace.settings.data_dir / VISITORS_FILE
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(
            "no simulated visitors yet: `touchpoint demo` writes them",
            details={"file": VISITORS_FILE},
        ) from None
    source = client_source(workspace)
    secret = source.identity_verification.secret if source is not None else None
    for visitor in document.get("visitors") or ():
        if secret is not None and isinstance(visitor, dict) and visitor.get("kind") == "user_id":
            visitor[USER_HASH_FIELD] = user_hash(secret, str(visitor.get("value")))
    return Response(
        json.dumps(document), media_type="application/json", headers={"cache-control": "no-store"}
    )
