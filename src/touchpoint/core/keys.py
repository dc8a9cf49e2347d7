"""Comparing API keys: one helper for every place a key a caller sent meets a known one.

A key arrives from an `Authorization` header (Bearer, or the Basic user name) or from
`writeKey` in a body, so it may hold any character. `secrets.compare_digest` refuses
`str` arguments with characters outside ASCII (it raises TypeError), which turned
such a key into a 500 on every authenticated route; comparing the UTF-8 bytes keeps
the comparison constant-time and makes such a key simply unknown.
"""

from __future__ import annotations

import hmac


def _key_bytes(key: str) -> bytes:
    # `surrogatepass`: a lone surrogate (possible in decoded JSON text) must not raise either.
    return key.encode("utf-8", "surrogatepass")


def same_key(given: str, known: str) -> bool:
    """Whether the key a caller sent (`given`) is `known`, compared in constant time over
    the UTF-8 bytes; never raises, whatever characters either holds."""
    return hmac.compare_digest(_key_bytes(given), _key_bytes(known))
