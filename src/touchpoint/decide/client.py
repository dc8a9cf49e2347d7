"""Whom a write key may decide for: its own device, or a user id its backend signed.

A write key ships in web pages, so a decide request carrying one may come from anyone.
It may name the device (identity kinds read from `anonymous_id`: a random id the browser
holds), and a user id (kinds read from `user_id`) only with `user_hash`, the signature
the site's backend computed with the source's identity secret. Every other kind (email,
phone…) is something anyone can type and no browser can prove, so it is refused: a
server decides by those with the secret key. The check reads no store, so its answer is
the same whether the person exists or not. See docs/threat-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from touchpoint.config.workspace import IdentityKind
from touchpoint.core.config_sources import SourceConfig
from touchpoint.core.identity_verification import (
    USER_HASH_FIELD,
    IdentityNotVerified,
    verify_user_hash,
)

DEVICE_SOURCE = "anonymous_id"
USER_SOURCE = "user_id"


def check_client_identities(
    source: SourceConfig,
    kinds: Sequence[IdentityKind],
    identities: Mapping[str, str],
    signature: object,
) -> None:
    """Raise IdentityNotVerified naming the field unless every identity of a decide request
    from `source`'s write key is its device's or a user id `signature` proves."""
    by_name = {kind.name: kind for kind in kinds}
    secret = source.identity_verification.secret
    for name, value in identities.items():
        kind = by_name.get(name)
        if kind is None or kind.source == DEVICE_SOURCE:
            continue  # an undeclared kind is the engine's InvalidInput
        if kind.source != USER_SOURCE:
            raise IdentityNotVerified(
                f"{name}: a write key decides only for its device ({_device_names(kinds)}) "
                f"or for a user id signed with `{USER_HASH_FIELD}`; decide by {name} from a "
                "server, with the secret key",
                details={"field": name},
            )
        if signature is None:
            raise IdentityNotVerified(
                f"{USER_HASH_FIELD}: a write key naming {name} must send `{USER_HASH_FIELD}`, "
                f"the hex HMAC-SHA256 of the {name} under the source's identity secret, "
                "computed by the site's backend",
                details={"field": USER_HASH_FIELD},
            )
        if secret is None or not verify_user_hash(secret, value, signature):
            raise IdentityNotVerified(
                f"{USER_HASH_FIELD}: not the signature of this {name} under the identity "
                f"secret of source {source.name!r}",
                details={"field": USER_HASH_FIELD},
            )


def _device_names(kinds: Sequence[IdentityKind]) -> str:
    return ", ".join(kind.name for kind in kinds if kind.source == DEVICE_SOURCE) or "none"
