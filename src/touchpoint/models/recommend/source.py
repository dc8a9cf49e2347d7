"""What the decision engine asks a recommender for: items to fill a content item with.

The engine depends on this protocol only; the models area implements it (a recommender
from the model registry, the person's precomputed list, popularity when there is no
model yet). It lives in `models`, below `decide`, so the implementation needs nothing
from the engine; this module imports no model library, so `decide` never loads one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class RecommendedItems:
    """Items for one person, best first: each a mapping with `item_id`, `score` and the
    catalog's attributes. `source` says where they came from (`precomputed`, `model`,
    `session`, `popular`), `model`/`version` which registry version made them."""

    items: Sequence[Mapping[str, Any]]
    source: str
    model: str
    version: int | None = None

    def describe(self) -> dict[str, Any]:
        """What a decision's payload says about its recommender."""
        return {"model": self.model, "version": self.version, "source": self.source}


class RecommendationSource(Protocol):
    """Recommends items for a person in a decision."""

    def recommend(
        self, *, profile_id: str | None, document: Mapping[str, Any], model: str, k: int
    ) -> RecommendedItems | None:
        """Up to `k` items from `model` for the person (`document`: their profile document
        with the request `context`); None when the model cannot recommend at all."""
