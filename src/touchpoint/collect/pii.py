"""Normalizing and hashing identifiers.

Identity kinds marked `pii` never reach a store in plain text: the collector
replaces them in the event with a keyed hash (HMAC-SHA256 under the workspace
secret) before the event is logged, and lookups hash the value the same way.
A keyed hash, not a plain one, so that a leaked database cannot be reversed by
hashing a list of known emails.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

HASH_PREFIX = "h1:"
_SPACES = re.compile(r"\s+")
_NOT_PHONE = re.compile(r"[^\d+]")


def normalize(value: str, how: str) -> str:
    """Canonical form of an identifier, so `A@X.com ` and `a@x.com` are one person."""
    if how == "email":
        return _SPACES.sub("", value).lower()
    if how == "phone":
        digits = _NOT_PHONE.sub("", value)
        return digits if digits.startswith("+") else digits.lstrip("0")
    if how == "lower":
        return value.strip().lower()
    return value.strip()


def identifier_text(value: Any) -> str | None:
    """An identifier value as text; None for values that cannot identify (objects, lists)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return None


class IdentityHasher:
    """Keyed hashing of PII identifiers under one workspace secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("the hash secret must be at least 16 characters")
        self._key = secret.encode("utf-8")

    def hash(self, kind: str, normalized_value: str) -> str:
        """`h1:<hex>`; the kind is part of the message so equal values of two kinds differ."""
        digest = hmac.new(self._key, f"{kind}:{normalized_value}".encode(), hashlib.sha256)
        return HASH_PREFIX + digest.hexdigest()

    @staticmethod
    def is_hashed(value: str) -> bool:
        return value.startswith(HASH_PREFIX) and len(value) == len(HASH_PREFIX) + 64
