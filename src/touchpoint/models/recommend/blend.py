"""A weighted blend of recommenders: each member's scores standardized per person, summed.

Models see different things (EASE the whole history's item-item structure, a windowed
co-occurrence what is taken together in one session), and their score scales differ, so
each member's scores for a person are z-scored over all items (mean 0, spread 1) before
the weighted sum. Every member is fitted on the same interactions.

`Blend()` with no arguments is the configuration that won the MovieLens 100k bench
(bench/movielens.py; chosen on a validation split carved from the training data):
EASE (λ=250, κ=3, weights**0.5, popularity discount 0.1) plus 0.5 x co-occurrence of items
taken within 3 steps of each other (cosine, all neighbours). Without timestamps the
co-occurrence window follows the order of the rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.cooccurrence import CoOccurrence
from touchpoint.models.recommend.ease import EASE
from touchpoint.models.recommend.scoring import (
    FloatArray,
    IndexArray,
    ScoringRecommender,
)

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

Member = tuple[ScoringRecommender, float]


def default_members(seed: int = 0) -> list[Member]:
    """The MovieLens bench winner's members (see the module docstring)."""
    return [
        (
            EASE(
                regularization=250.0,
                popularity_regularization=3.0,
                weight_power=0.5,
                popularity_discount=0.1,
                seed=seed,
            ),
            1.0,
        ),
        (CoOccurrence(similarity="cosine", neighbors=None, window=3, seed=seed), 0.5),
    ]


def standardized(scores: FloatArray) -> FloatArray:
    """Each row to mean 0 and standard deviation 1 over its finite entries; entries that
    are not finite (items a member cannot score) become the row's minimum."""
    scores = np.array(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        masked = np.where(finite, scores, np.inf)
        lowest = masked.min(axis=1, keepdims=True)
        lowest[~np.isfinite(lowest)] = 0.0
        scores = np.where(finite, scores, lowest)
    mean = scores.mean(axis=1, keepdims=True)
    spread = scores.std(axis=1, keepdims=True)
    spread[spread == 0] = 1.0
    return np.asarray((scores - mean) / spread, dtype=np.float32)


class Blend(ScoringRecommender):
    """Weighted sum of standardized member scores; see the module docstring."""

    name = "blend"

    def __init__(self, members: Sequence[Member] | None = None, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        chosen = list(members) if members is not None else default_members(seed)
        if not chosen:
            raise InvalidInput("a blend needs at least one member", details={"field": "members"})
        for member, weight in chosen:
            if not isinstance(member, ScoringRecommender) or isinstance(member, Blend):
                raise InvalidInput(
                    "blend members must be scoring recommenders (not blends)",
                    details={"field": "members"},
                )
            if not np.isfinite(weight):
                raise InvalidInput("member weights must be finite", details={"field": "members"})
        self.members = chosen

    def _extra_items(self, items: pd.DataFrame | None) -> list[str]:
        extra: list[str] = []
        for member, _ in self.members:
            extra += member._extra_items(items)
        return list(dict.fromkeys(extra))

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        for member, _ in self.members:
            member.fit(interactions, items)
            if member.items != self.items:
                raise InvalidInput(
                    f"blend member {member.name} has another item catalog",
                    details={"field": "members"},
                )

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        total = np.zeros(histories.shape, dtype=np.float32)
        for member, weight in self.members:
            total += weight * standardized(member._score(histories, positions, people))
        return total

    def _similarity(self, position: int) -> FloatArray:
        total = np.zeros(len(self._items), dtype=np.float32)
        for member, weight in self.members:
            row = member._similarity(position)[None, :]
            total += weight * standardized(row)[0]
        return total

    def _forget_rows(self, keep: npt.NDArray[np.bool_], people: Collection[str]) -> None:
        for member, _ in self.members:
            member.forget(people)

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _model_file_extra(self) -> dict[str, Any]:
        return {
            "members": [
                {"directory": f"member_{index}", "weight": weight}
                for index, (_, weight) in enumerate(self.members)
            ]
        }

    def save(self, directory: Path) -> None:
        """The blend's own files plus `member_<i>/` per member, each by its own `save`."""
        super().save(directory)
        for index, (member, _) in enumerate(self.members):
            member.save(directory / f"member_{index}")

    @classmethod
    def _from_saved(cls, directory: Path, body: dict[str, Any]) -> Self:
        from touchpoint.models.recommend.catalog import load_recommender

        members: list[Member] = []
        for entry in body.get("members", []):
            member = load_recommender(directory / str(entry["directory"]))
            if not isinstance(member, ScoringRecommender):
                raise InvalidInput(
                    f"{directory}: blend member {entry['directory']} is not a scoring model",
                    details={"field": "members"},
                )
            members.append((member, float(entry["weight"])))
        return cls(members, **body.get("params", {}))
