"""Stable hashing for policies: pure functions of their inputs, the same on every machine
and in every process (SHA-256, never Python's salted `hash()`), tested against a shared
table of cases."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def stable_hash(subject: str, placement: str, content_id: str) -> int:
    """A 64-bit number from (subject, placement, content id)."""
    key = f"{subject}\x1f{placement}\x1f{content_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def pick_tied(subject: str, placement: str, content_ids: Sequence[str]) -> str:
    """Among tied content ids, the one with the highest `stable_hash` for this person.

    The same person always gets the same item (a consistent page), different people spread
    evenly across the items, and adding or removing one item only moves the people who get
    or got that item (rendezvous hashing). Ties of the hash itself go to the smaller id.
    """
    if not content_ids:
        raise ValueError("pick_tied needs at least one content id")
    best = content_ids[0]
    best_score = stable_hash(subject, placement, best)
    for content_id in content_ids[1:]:
        score = stable_hash(subject, placement, content_id)
        if score > best_score or (score == best_score and content_id < best):
            best, best_score = content_id, score
    return best


def unit_interval(*parts: str) -> float:
    """A number in [0, 1) from the parts (53 bits of their SHA-256): a draw that is the same
    whenever the parts are."""
    key = "\x1f".join(parts).encode()
    return (int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 11) / 2.0**53
