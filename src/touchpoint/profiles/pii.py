"""Normalizing and hashing identifiers.

Identity kinds marked `pii` never reach a store in plain text: the collector
replaces them in the event with a keyed hash (HMAC-SHA256 under the workspace
secret) before the event is logged, and lookups hash the value the same way.
A keyed hash, not a plain one, so that a leaked database cannot be reversed by
hashing a list of known emails.

Every path that turns an identifier into its stored form (collection, imports,
profile lookups, decide, erasure, export) calls `normalize` here, so one address
written two ways is one person everywhere. The rules:

- email: whitespace removed, canonical equivalents composed (NFC) and case folded
  (`casefold`), except that `ß` and the final sigma `ς` stay letters of their own
  (IDNA2008 keeps them: `straße.de` and `strasse.de` are two domains with two
  owners). An address holding a compatibility character (fullwidth letters, the
  Kelvin sign, ligatures, superscripts: anything NFKC would turn into another
  letter) or a canonical singleton (the Kelvin, Ohm and Ångström signs, which NFC
  alone rewrites) is refused with `IdentifierRefused`, so that no look-alike can
  ever be folded into another person's address.
- phone: the digits (any script's, as ASCII), with a leading `+` when the number
  is international (`+` or `00`); a trunk `(0)` after the country code is dropped;
  a national number keeps its digits without leading zeros (its country is unknown,
  so it does not join its international form).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from typing import Any

HASH_PREFIX = "h1:"
_SPACES = re.compile(r"\s+")
# Letters case folding would rewrite into other letters, which IDNA2008 keeps distinct.
_OWN_LETTERS = re.compile("([\u00df\u1e9e\u03c2])")
_CAPITAL_SHARP_S = "\u1e9e"
_TRUNK_ZERO = re.compile(r"^(\+\d{1,3})\(0\)")

LOOK_ALIKE_REASON = (
    "holds compatibility characters (such as fullwidth letters or the Kelvin sign) that "
    "would read as other letters; write the address in its usual characters"
)


class IdentifierRefused(ValueError):
    """An identifier that cannot be normalized without risking another person's identity.

    `reason` says why, without echoing the value (it may be PII).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize(value: str, how: str) -> str:
    """Canonical form of an identifier, so `A@X.com ` and `a@x.com` are one person.

    Raises IdentifierRefused for an email that could pass for another (see the module).
    """
    if how == "email":
        return normalize_email(value)
    if how == "phone":
        return normalize_phone(value)
    if how == "lower":
        return value.strip().lower()
    return value.strip()


def normalize_email(value: str) -> str:
    """The stored form of an email address (see the module docstring for the rule)."""
    text = _SPACES.sub("", value)
    composed = unicodedata.normalize("NFC", text)
    if unicodedata.normalize("NFKC", text) != composed or any(map(_is_singleton, text)):
        raise IdentifierRefused(LOOK_ALIKE_REASON)
    parts = _OWN_LETTERS.split(composed)
    # split() with a group: the letters kept as themselves sit at the odd positions.
    folded = "".join(
        part.replace(_CAPITAL_SHARP_S, "\u00df") if index % 2 else part.casefold()
        for index, part in enumerate(parts)
    )
    return unicodedata.normalize("NFC", folded)


def _is_singleton(char: str) -> bool:
    """Whether canonical normalization replaces `char` by one other character (the Kelvin,
    Ohm and Ångström signs): NFC does that silently, so NFC alone cannot tell."""
    decomposition = unicodedata.decomposition(char)
    return bool(decomposition) and not decomposition.startswith("<") and " " not in decomposition


def normalize_phone(value: str) -> str:
    """The stored form of a phone number (see the module docstring for the rule)."""
    text = unicodedata.normalize("NFKC", value)
    kept = "".join(
        str(unicodedata.decimal(char)) if char.isdecimal() else char
        for char in text
        if char.isdecimal() or char in "+()"
    )
    international = kept.startswith("+") or kept.startswith("00")
    if kept.startswith("00"):
        kept = "+" + kept[2:]
    kept = _TRUNK_ZERO.sub(r"\1", kept)
    digits = "".join(char for char in kept if char.isdigit())
    if international:
        return "+" + digits if digits else ""
    return digits.lstrip("0")


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
