"""Where an erasure's bytes may still be, and for how long: what a store could not scrub.

Deleting a row removes it from every query at once, but its bytes can outlive it in the
backend's files: a SQLite write-ahead log not yet truncated, PostgreSQL pages whose dead
tuples wait to be overwritten, Redis stream nodes and append-only files not yet rewritten.
After an erasure each store scrubs what it can (see `scrub` on the store interfaces) and
names what remains as `Leftover`s, which the erasure job records, so the job says exactly
where the person may still be readable on disk and until when.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Leftover:
    """Bytes of erased rows that may remain after a scrub.

    `store`: the store (`profile_store`, `event_log`...); `where`: the file, table or
    structure that may hold them; `until`: the event that removes them for good.
    """

    store: str
    where: str
    until: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form (the erasure job's `leftovers` entries)."""
        return asdict(self)
