"""What every kind of definition shares: name patterns and bounds."""

from __future__ import annotations

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
CONTENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MAX_WHOLE = 10**9
"""The largest `priority` (and smallest, negated) and cap `max`: far beyond any real use,
and within what every store and the JSON a version is kept as can hold."""
