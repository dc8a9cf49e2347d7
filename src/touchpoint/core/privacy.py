"""The `privacy:` section of the workspace file: what happens to personal data in events.

Identity kinds marked `pii` are always hashed (see `identity.kinds`). This section says
what happens to everything else, before an event is logged, so the log, profiles,
timelines, the warehouse and exports never see a clear value:

```yaml
privacy:
  paths:                                   # any trait, property or context path
    - {path: traits.phone, action: hash, as: phone}        # the default for phones
    - {path: properties.*.contact, action: hash, as: email}
    - {path: properties.coupon_owner, action: drop}
    - {path: properties.support_address, action: keep}     # exempt from the email scan
  ip: truncate          # context.ip: truncate (/24 IPv4, /48 IPv6) | keep | drop
  user_agent: keep      # context.userAgent: keep | hash | drop
  emails: hash          # email-shaped text anywhere else (URLs, search, free text)
```

A path is dotted names under `traits`, `properties` or `context`; `*` stands for any one
key of an object or any item of a list. A rule on `traits.x` also covers
`context.traits.x` (where SDKs copy traits on track events). The path language is
parsed here, never a user-written regular expression.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from touchpoint.core.config_base import ConfigModel

PathAction = Literal["hash", "drop", "keep", "truncate"]
PATH_ROOTS = ("traits", "properties", "context")
MAX_PATH_SEGMENTS = 8
_SEGMENT = re.compile(r"^(\*|[A-Za-z0-9_$@-]{1,128})$")
# Normalizations a rule can hash `as` without naming an identity kind.
BUILTIN_AS = ("email", "phone")


def parse_path(text: str) -> tuple[str, ...]:
    """The segments of a privacy path; ValueError saying what is wrong with it."""
    segments = tuple(text.split("."))
    if segments[0] not in PATH_ROOTS:
        raise ValueError(f"a path starts with one of {', '.join(PATH_ROOTS)}: {text!r}")
    if not 2 <= len(segments) <= MAX_PATH_SEGMENTS:
        raise ValueError(f"a path has 2 to {MAX_PATH_SEGMENTS} dotted parts: {text!r}")
    for segment in segments[1:]:
        if not _SEGMENT.match(segment):
            raise ValueError(
                f"each part of a path is a name (letters, digits, _ $ @ -) or *: {text!r}"
            )
    return segments


class PrivacyRule(ConfigModel):
    """What happens to the values at `path`.

    `hash`: a keyed hash (`h1:`), of every text or number under the path; with `as` (an
    identity kind, or `email` / `phone`) the value is normalized and hashed as that kind,
    so it joins with the identity's hash, and an email that is refused (a look-alike)
    rejects the event. `drop`: removed. `keep`: kept in clear, and exempt from the email
    scan. `truncate`: an IP address cut to its network (/24, /48); anything else dropped.
    """

    model_config = ConfigDict(populate_by_name=True)  # `as` in the file, `as_kind` here

    path: str
    action: PathAction
    as_kind: str | None = Field(default=None, alias="as")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parse_path(value)
        return value


class PrivacyConfig(ConfigModel):
    """Personal data in events beyond identity kinds; see the module docstring."""

    paths: list[PrivacyRule] = Field(default_factory=list)
    ip: Literal["truncate", "keep", "drop"] = "truncate"
    user_agent: Literal["keep", "hash", "drop"] = "keep"
    emails: Literal["hash", "drop", "keep"] = "hash"

    @field_validator("paths")
    @classmethod
    def _unique(cls, value: list[PrivacyRule]) -> list[PrivacyRule]:
        paths = [rule.path for rule in value]
        repeated = sorted({path for path in paths if paths.count(path) > 1})
        if repeated:
            raise ValueError(f"each path has one rule, repeated: {', '.join(repeated)}")
        return value


def default_rules(config: PrivacyConfig) -> list[PrivacyRule]:
    """The rules every workspace has unless its `paths` name the same path: phone numbers
    hashed, the IP address and the user agent as `ip` and `user_agent` say."""
    return [
        PrivacyRule.model_validate({"path": "traits.phone", "action": "hash", "as": "phone"}),
        PrivacyRule(path="context.ip", action=config.ip),
        PrivacyRule(path="context.userAgent", action=config.user_agent),
    ]
