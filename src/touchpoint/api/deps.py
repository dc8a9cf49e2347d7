"""Request dependencies: the workspace, and the two kinds of keys.

Write keys are public (they ship in web pages): they only send events. The
secret key reads and administers; a write key on a secret-key route is a 403,
an unknown key a 401.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from touchpoint.core.config_sources import SourceConfig
from touchpoint.core.errors import Forbidden, Unauthorized
from touchpoint.core.keys import same_key
from touchpoint.runtime import Workspace


async def get_workspace(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


WorkspaceDep = Annotated[Workspace, Depends(get_workspace)]

T = TypeVar("T")


async def read_stores(workspace: Workspace, work: Callable[[], T]) -> T:
    """Run a hot-path read (`work`) where it costs least: on the event loop when the stores
    are local files (a few indexed reads take less than a thread hop), on the threadpool
    when they are servers (a round trip must not stall every other request on the loop)."""
    if workspace.local_stores:
        return work()
    return await run_in_threadpool(work)


async def charge_source(workspace: Workspace, source: SourceConfig, events: int) -> None:
    """Charge one request of a public key, carrying `events` events, to its source's rate
    limits (`RateLimited`, a 429, when over): inline when the limiter is in-process, on the
    threadpool when it is a Redis round trip."""
    limiter = workspace.rate_limiter
    if limiter.local:
        limiter.admit(source, events)
    else:
        await run_in_threadpool(limiter.admit, source, events)


def basic_user(request: Request) -> str | None:
    """The user name of HTTP Basic auth (Segment puts the write key there), if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Basic authorization header is not valid base64") from None
    return decoded.partition(":")[0]


def source_for_key(workspace: Workspace, write_key: str | None) -> SourceConfig:
    """The source a write key belongs to, or 401."""
    if not write_key:
        raise Unauthorized(
            "no write key: send it as the HTTP Basic user name or as `writeKey` in the body"
        )
    source = workspace.settings.config.source_by_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key")
    return source


async def require_secret_key(request: Request, workspace: WorkspaceDep) -> None:
    """Admin routes: `Authorization: Bearer <secret key>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this route needs the secret key as `Authorization: Bearer <key>`")
    if same_key(token, workspace.settings.secret_key):
        return
    if workspace.settings.config.source_by_key(token) is not None:
        raise Forbidden("a write key only sends events; this route needs the secret key")
    raise Unauthorized("unknown key")


AdminKey = Depends(require_secret_key)
