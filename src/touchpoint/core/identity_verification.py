"""Identity verification: proof, from a site's backend, that a browser speaks for a user id.

A write key ships in web pages, so anything it sends is a claim anyone can make. A
source's identity secret never leaves the site's backend: when a visitor signs in, the
backend computes `user_hash` = hex HMAC-SHA256(secret, user id) and hands it to the page
(as Intercom and Zendesk do). A decide request or an event from that source naming a
user id is believed only with the matching `user_hash`. See docs/threat-model.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from touchpoint.core.errors import Forbidden
from touchpoint.core.keys import same_key

if TYPE_CHECKING:
    from touchpoint.core.config_sources import SourceConfig

USER_HASH_FIELD = "user_hash"
"""The field carrying the signature: top level of a decide body, `context` of an event."""

IDENTITY_VERIFIED = "identityVerified"
"""Set (true) by the collector on a stored event from a source that verifies identities:
its `userId` is proven and nothing else it names is, so identity resolution links only
its anonymous id and that user id (see `IdentityResolver.extract`). Recorded at collect
time, so a replay reads the event as it was judged, whatever the configuration became."""


def user_hash(secret: str, user_id: str) -> str:
    """The signature of `user_id` under `secret`: lowercase hex HMAC-SHA256 of its UTF-8."""
    return hmac.new(secret.encode("utf-8"), user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, user_id: str, given: object) -> bool:
    """Whether `given` is the signature of `user_id` (hex, either case), compared in constant
    time (`core.keys.same_key`). Anything that is not a string is simply not a match."""
    return isinstance(given, str) and same_key(given.lower(), user_hash(secret, user_id))


class IdentityNotVerified(Forbidden):
    """A write key named someone it has not proven to be: an identifier kind a browser cannot
    prove, or a user id without its valid `user_hash`. The message never depends on whether
    the person exists."""

    code = "identity_not_verified"
    status = 403


def verify_event_identity(stored: dict[str, Any], source: SourceConfig) -> dict[str, str] | None:
    """Check a stored event of a source that verifies identities, in place: take
    `context.user_hash` out (a signature is a credential: it is never stored), mark the event
    `IDENTITY_VERIFIED`, and return None; or the error (field, reason) when it has a `userId`
    without its valid signature, which the event is rejected for."""
    context = stored.get("context")
    signature = context.pop(USER_HASH_FIELD, None) if isinstance(context, dict) else None
    user_id = stored.get("userId")
    if user_id is not None:
        field = f"context.{USER_HASH_FIELD}"
        if signature is None:
            reason = (
                f"source {source.name!r} verifies identities: an event with a userId must carry "
                "its signature (hex HMAC-SHA256 of the userId under the source's identity "
                "secret, computed by the site's backend)"
            )
            return {"field": field, "reason": reason}
        secret = source.identity_verification.secret
        if secret is None or not verify_user_hash(secret, user_id, signature):
            reason = f"not the signature of the userId under source {source.name!r}'s secret"
            return {"field": field, "reason": reason}
    stored[IDENTITY_VERIFIED] = True
    return None
