"""The one protocol every recommender follows, so decide, the batch command, the registry
and the evaluation harness treat them alike (River's uniform verbs).

- `fit(interactions, items=None)`: learn from interactions (and item attributes, for the
  models that use them); returns the recommender. Randomness comes from the `seed` given
  to the constructor only, so a fit is reproducible.
- `recommend(person, k, exclude=…, filter=…, recent=…)`: the top `k` items for a person,
  best first. Items the person interacted with in training are excluded by default;
  `exclude` adds more; `filter(item_id)` keeps only items it accepts; `recent` are the item
  ids of the person's current session, newest first (a session re-rank uses them; a person
  unknown at fit time is recommended to from `recent` alone where the model can).
- `recommend_many(people, k)`: the same for many people at once (batch scoring).
- `similar(item, k)`: items like one item, best first, the item itself excluded.
- `forget(people)`: drop these people from what the model keeps (erasure); how many it
  knew. It then answers for them as for people it never saw.
- `save(directory)` / `load(directory)`: the model as plain files (JSON and `.npz`, never
  pickle), so the registry can keep versions and a loaded model answers as the saved one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.interactions import Interactions


@dataclass(frozen=True, slots=True)
class Scored:
    """An item and its score (higher is better; scales differ between models)."""

    item_id: str
    score: float


ItemFilter = Callable[[str], bool]


@runtime_checkable
class Recommender(Protocol):
    """See the module docstring."""

    name: str

    def fit(self, interactions: Interactions, items: pd.DataFrame | None = None) -> Self: ...

    def recommend(
        self,
        person: str,
        k: int,
        *,
        exclude: Collection[str] = (),
        filter: ItemFilter | None = None,
        recent: Sequence[str] = (),
    ) -> list[Scored]: ...

    def recommend_many(self, people: Sequence[str], k: int) -> dict[str, list[Scored]]: ...

    def similar(self, item: str, k: int) -> list[Scored]: ...

    def forget(self, people: Collection[str]) -> int: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...
