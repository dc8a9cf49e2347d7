"""The privacy policy applied to every event before it is logged.

One pass per event, in this order:

1. identity kinds: a `pii` kind's values are normalized and replaced by their keyed hash
   (a value that normalizes to nothing or to a blocked value is removed, so that "null"
   or "n/a" never becomes one identity shared by everyone); a kind normalized as email,
   `pii` or not, refuses look-alike addresses;
2. the workspace's `privacy.paths` rules, then the defaults they do not override
   (phones hashed, the IP address truncated, the user agent as configured);
3. the email scan: email-shaped text anywhere else in `traits`, `properties` and
   `context` (a page URL's `?email=jane%40example.com`, a search, a referrer) is
   hashed as an email, so it still joins with the identity, or dropped.

A refused identifier is reported as an error naming its path, and the collector rejects
the event; the rejected store's copy (`lenient`) has the refused value hashed instead, so
no clear value is kept there either. Values are replaced copy-on-write: containers the
event shares with the request (a batch's `context`) are never changed in place.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from touchpoint.config.workspace import TouchpointConfig, identity_paths
from touchpoint.core.identity_verification import USER_HASH_FIELD
from touchpoint.core.privacy import BUILTIN_AS, PrivacyRule, default_rules, parse_path
from touchpoint.profiles.pii import IdentifierRefused, IdentityHasher, identifier_text, normalize

Path = tuple[str, ...]
SECTIONS = ("traits", "properties", "context")
UNTAGGED = "value"  # the hash tag of a rule without `as`
REFUSED_SUFFIX = ":refused"
IPV4_PREFIX = 24
IPV6_PREFIX = 48
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, as `ipaddress` reads it
_IPV4 = re.compile(r"\.".join([_OCTET] * 4), re.ASCII)
EMAIL_SHAPED = re.compile(r"(?<![\w.%+-])[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")


class _Drop:
    """The value a rewrite returns to remove the key (or list item) it was given."""


DROP: Any = _Drop()


@dataclass(frozen=True, slots=True)
class _Rule:
    """A compiled rule: `identity` rules are an identity kind's, which no other rule may
    change; `normalize`/`tag` say how a hashed value is normalized and tagged; `refuse`:
    a value `normalize` refuses is an error (else it is hashed under `tag:refused`)."""

    pattern: Path
    action: str
    tag: str = UNTAGGED
    normalize: str = "none"
    refuse: bool = False
    identity: bool = False


def truncate_ip(text: str) -> str | None:
    """The network of an IP address: /24 for IPv4, /48 for IPv6 (an IPv4-mapped IPv6
    address as IPv4); None for text that is not an IP address."""
    text = text.strip()
    dotted = _IPV4.fullmatch(text)
    if dotted is not None:  # most addresses, in one match
        return f"{dotted[1]}.{dotted[2]}.{dotted[3]}.0"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        mask = (1 << 32) - (1 << (32 - IPV4_PREFIX))
        return str(ipaddress.IPv4Address(int(address) & mask))
    mask = (1 << 128) - (1 << (128 - IPV6_PREFIX))
    return str(ipaddress.IPv6Address(int(address) & mask))


class PrivacyPolicy:
    """A workspace's privacy rules compiled once; `apply` runs them on one event."""

    def __init__(self, config: TouchpointConfig, hasher: IdentityHasher) -> None:
        self._hasher = hasher
        self._blocked = frozenset(value.lower() for value in config.identity.blocked_values)
        kinds = {kind.name: kind for kind in config.identity.kinds}
        rules: list[_Rule] = []
        self._identity_paths: set[Path] = set()
        for kind in config.identity.kinds:
            for path in identity_paths(kind.source):
                self._identity_paths.add(path)
                if kind.pii:
                    rules.append(_Rule(path, "hash", kind.name, kind.normalize, True, True))
                elif kind.normalize == "email":
                    rules.append(_Rule(path, "check", kind.name, "email", True, True))
        named = {parse_path(rule.path) for rule in config.privacy.paths}
        chosen = list(config.privacy.paths) + [
            rule for rule in default_rules(config.privacy) if parse_path(rule.path) not in named
        ]
        for rule in chosen:
            for pattern in _patterns(rule.path):
                if pattern not in self._identity_paths:
                    rules.append(self._compile(rule, pattern, kinds))
        # A signature is a credential: dropped from every copy kept (the log's, after the
        # collector checked it, and the rejected store's), whatever the rules say.
        rules.append(_Rule(("context", USER_HASH_FIELD), "drop"))
        # `keep` rules change nothing: they only exempt their paths from the email scan.
        self._rules = tuple(rule for rule in rules if rule.action != "keep")
        self._scanned = config.privacy.emails != "keep"
        self._drop_emails = config.privacy.emails == "drop"
        self._exempt = tuple(rule.pattern for rule in rules)

    @staticmethod
    def _compile(rule: PrivacyRule, pattern: Path, kinds: dict[str, Any]) -> _Rule:
        if rule.as_kind is None:
            return _Rule(pattern, rule.action)
        kind = kinds.get(rule.as_kind)
        how = kind.normalize if kind is not None else rule.as_kind
        assert kind is not None or rule.as_kind in BUILTIN_AS  # checked by the config
        return _Rule(pattern, rule.action, rule.as_kind, how, refuse=how == "email")

    def apply(
        self,
        event: dict[str, Any],
        *,
        lenient: bool = False,
        may_hold_email: bool | None = None,
    ) -> list[dict[str, str]]:
        """Rewrite the event's `traits`, `properties` and `context` by the policy; return
        the refused identifiers as `[{"field", "reason"}]` (none when `lenient`: they are
        hashed). Idempotent: hashed values are left alone, so replays stay stable.
        `may_hold_email`: False when the caller knows the event holds no `@` (the email
        scan is then skipped); None to find out here."""
        errors: list[dict[str, str]] = []
        for rule in self._rules:
            section, first = rule.pattern[0], rule.pattern[1]
            value = event.get(section)
            if not isinstance(value, dict) or (first != "*" and first not in value):
                continue  # the usual case, decided without building anything
            leaf = self._leaf(rule, errors, lenient)
            self._store(event, section, _rewrite(value, rule.pattern, 1, (section,), leaf))
        if may_hold_email is None:
            may_hold_email = self._scanned and _may_hold_email(event)
        if self._scanned and may_hold_email:
            for section in SECTIONS:
                if section in event:
                    self._store(event, section, self._scan(event[section], (section,)))
        return errors

    @staticmethod
    def _store(event: dict[str, Any], section: str, value: Any) -> None:
        if value is DROP:
            del event[section]
        elif value is not event[section]:
            event[section] = value

    # -- rules ----------------------------------------------------------------------------

    def _leaf(
        self, rule: _Rule, errors: list[dict[str, str]], lenient: bool
    ) -> Callable[[Any, Path], Any]:
        """The rewrite of one value the rule's pattern reaches (at `path`)."""

        def rewrite(value: Any, path: Path) -> Any:
            if not rule.identity and path in self._identity_paths:
                return value  # a wildcard reaching an identity's source: the kind decides
            if rule.action == "keep":
                return value
            if rule.action == "drop":
                return DROP
            if rule.action == "truncate":
                text = value if isinstance(value, str) else None
                truncated = None if text is None else truncate_ip(text)
                return DROP if truncated is None else truncated
            if rule.identity:
                return self._identity_value(rule, value, path, errors, lenient)
            return self._hash_all(rule, value, path, errors, lenient)

        return rewrite

    def _identity_value(
        self, rule: _Rule, value: Any, path: Path, errors: list[dict[str, str]], lenient: bool
    ) -> Any:
        """An identity kind's value: hashed (`pii`) or only checked (a clear email kind)."""
        text = identifier_text(value)
        if text is None:
            return DROP if rule.action == "hash" else value
        if IdentityHasher.is_hashed(text):
            return value
        try:
            normalized = normalize(text, rule.normalize)
        except IdentifierRefused as refused:
            if lenient:
                return self._hasher.hash(rule.tag + REFUSED_SUFFIX, text)
            errors.append({"field": ".".join(path), "reason": refused.reason})
            return value
        if rule.action == "check":
            return value
        if not normalized or normalized.lower() in self._blocked:
            return DROP
        return self._hasher.hash(rule.tag, normalized)

    def _hash_all(
        self, rule: _Rule, value: Any, path: Path, errors: list[dict[str, str]], lenient: bool
    ) -> Any:
        """Every text or number under `value` hashed (containers kept, rebuilt)."""
        if isinstance(value, dict):
            return {
                key: self._hash_all(rule, item, (*path, key), errors, lenient)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._hash_all(rule, item, path, errors, lenient) for item in value]
        text = identifier_text(value)
        if text is None or IdentityHasher.is_hashed(text):
            return value
        try:
            normalized = normalize(text, rule.normalize)
        except IdentifierRefused as refused:
            if rule.refuse and not lenient:
                errors.append({"field": ".".join(path), "reason": refused.reason})
                return value
            return self._hasher.hash(rule.tag + REFUSED_SUFFIX, text)
        return self._hasher.hash(rule.tag, normalized)

    # -- the email scan -------------------------------------------------------------------

    def _scan(self, value: Any, path: Path) -> Any:
        """`value` with email-shaped text hashed or dropped, copy-on-write; the paths of
        rules are exempt (they were handled, or are to be kept). List items are at `*`."""
        if isinstance(value, str):
            if ("@" not in value and "%40" not in value) or self._is_exempt(path):
                return value
            return self._scan_text(value)
        if isinstance(value, dict):
            changed: dict[str, Any] | None = None
            for key, item in value.items():
                if isinstance(item, str) and "@" not in item and "%40" not in item:
                    continue  # most values: no tuple built, no call
                if not isinstance(item, str | dict | list):
                    continue
                new = self._scan(item, (*path, key))
                if new is not item:
                    changed = _with(value, changed, key, new)
            return value if changed is None else changed
        if isinstance(value, list):
            where = (*path, "*")
            items = [self._scan(item, where) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return [item for item in items if item is not DROP]
        return value

    def _is_exempt(self, path: Path) -> bool:
        return any(_matches(pattern, path) for pattern in self._exempt)

    def _scan_text(self, text: str) -> Any:
        whole = EMAIL_SHAPED.fullmatch(text.strip())
        if whole is not None and self._drop_emails:
            return DROP
        replaced = EMAIL_SHAPED.sub(self._email_replacement, text)
        return replaced

    def _email_replacement(self, match: re.Match[str]) -> str:
        if self._drop_emails:
            return ""
        address = unquote(match.group())
        try:
            return self._hasher.hash("email", normalize(address, "email"))
        except IdentifierRefused:
            return self._hasher.hash("email" + REFUSED_SUFFIX, address)


def may_hold_email(encoded: bytes) -> bool:
    """Whether JSON text holds an `@` (or its URL encoding) at all: most events hold none,
    and a byte search answers for them instead of a walk over every value in Python."""
    return b"@" in encoded or b"%40" in encoded


def _may_hold_email(event: dict[str, Any]) -> bool:
    """`may_hold_email` of the scanned sections of an event, serialized once in C."""
    sections = [event[section] for section in SECTIONS if section in event]
    try:
        text = orjson.dumps(sections)
    except TypeError:  # not JSON (never for a stored event): walk it
        return True
    return may_hold_email(text)


def _patterns(path: str) -> list[Path]:
    """A rule's path, and for a trait its `context.traits` twin."""
    pattern = parse_path(path)
    return [pattern, ("context", *pattern)] if pattern[0] == "traits" else [pattern]


def _matches(pattern: Path, path: Path) -> bool:
    """Whether a concrete path lies at or under `pattern` (`*` matches any one part)."""
    if len(path) < len(pattern):
        return False
    return all(want == "*" or want == part for want, part in zip(pattern, path, strict=False))


def _with(
    original: dict[str, Any], changed: dict[str, Any] | None, key: str, new: Any
) -> dict[str, Any]:
    """Copy on write: `changed` (a copy of `original`, made on the first change) with `key`
    set to `new`, or removed when `new` is DROP. Events are never changed in place: a
    batch's messages share their context."""
    if changed is None:
        changed = dict(original)
    if new is DROP:
        del changed[key]
    else:
        changed[key] = new
    return changed


def _rewrite(
    value: Any, pattern: Path, at: int, path: Path, leaf: Callable[[Any, Path], Any]
) -> Any:
    """`value` with `leaf` applied where `pattern[at:]` reaches, copy-on-write: the same
    object when nothing changed; DROP removes a key or a list item."""
    if at == len(pattern):
        return leaf(value, path)
    part = pattern[at]
    if isinstance(value, dict):
        keys = list(value) if part == "*" else [part] if part in value else []
        changed: dict[str, Any] | None = None
        for key in keys:
            new = _rewrite(value[key], pattern, at + 1, (*path, key), leaf)
            if new is not value[key]:
                changed = _with(value, changed, key, new)
        return value if changed is None else changed
    if isinstance(value, list) and part == "*":
        items = [_rewrite(item, pattern, at + 1, (*path, "*"), leaf) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return [item for item in items if item is not DROP]
    return value
