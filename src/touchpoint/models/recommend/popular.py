"""Most popular items: the fallback every placement can rely on, overall or per group.

Popularity counts people, not rows (a person buying an item ten times counts once), so a
few heavy users cannot carry an item. With `half_life_days` each person-item pair counts
by how recent its last interaction is (halving every half-life, measured back from the
newest interaction), so "trending" wins over "once popular".

"People like you": given `groups` (person id -> group label: a segment, a country, an age
band), a person's picks are the items popular among their group, smoothed toward overall
popularity by `group_prior` pseudo-people so a small group does not follow three people's
whims. A person in no group, or in a group unseen at fit time, gets overall popularity; a
person unknown at fit time but present in `groups` gets their group's picks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.scoring import FloatArray, IndexArray, ScoringRecommender

if TYPE_CHECKING:
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

SECONDS_PER_DAY = 86_400.0


class MostPopular(ScoringRecommender):
    """Items ranked by how many people took them (optionally decayed, optionally within the
    person's group); see the module docstring."""

    name = "popular"
    scores_empty_histories = True

    def __init__(
        self,
        *,
        half_life_days: float | None = None,
        groups: Mapping[str, str] | None = None,
        group_prior: float = 10.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if half_life_days is not None and not half_life_days > 0:
            raise InvalidInput(
                "half_life_days must be positive", details={"field": "half_life_days"}
            )
        if group_prior < 0:
            raise InvalidInput("group_prior must be >= 0", details={"field": "group_prior"})
        self.half_life_days = half_life_days
        self.group_prior = group_prior
        self._groups: dict[str, str] = {str(p): str(g) for p, g in (groups or {}).items()}
        self._overall: FloatArray = np.empty(0, dtype=np.float32)
        self._group_labels: list[str] = []
        self._group_scores: FloatArray = np.empty((0, 0), dtype=np.float32)
        self._group_of_label: dict[str, int] = {}

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        pair_weights = self._pair_weights(interactions, matrix)
        people_count = max(1, matrix.shape[0])
        self._overall = np.asarray(pair_weights.sum(axis=0), dtype=np.float32).ravel()
        overall_share = self._overall / people_count
        # Only groups with someone in the training data have picks of their own.
        labels = sorted({self._groups[p] for p in self._people.tolist() if p in self._groups})
        scores = np.zeros((len(labels), matrix.shape[1]), dtype=np.float32)
        label_index = {label: index for index, label in enumerate(labels)}
        member_group = np.asarray(
            [label_index.get(self._groups.get(str(person), ""), -1) for person in self._people]
        )
        for index in range(len(labels)):
            members = np.flatnonzero(member_group == index)
            counts = np.asarray(pair_weights[members].sum(axis=0), dtype=np.float64).ravel()
            prior = self.group_prior
            scores[index] = (counts + prior * overall_share) / (members.size + prior or 1.0)
        self._group_labels = labels
        self._group_scores = scores
        self._group_of_label = label_index

    def _pair_weights(self, interactions: Interactions, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """People x items: 1 per pair, or 0.5 ** (age of the pair's last row / half-life)."""
        import scipy.sparse as sp

        pairs = matrix.copy().tocsr()
        pairs.data = np.ones_like(pairs.data)
        times = interactions.times
        if self.half_life_days is None or times is None or np.isnan(times).all():
            return pairs
        times = np.nan_to_num(times, nan=float(np.nanmin(times)))
        rows = interactions.person_index.astype(np.int64)
        cols = interactions.item_index.astype(np.int64)
        # The newest time of each pair: sort by pair, newest first, keep the first row.
        order = np.lexsort((-times, cols, rows))
        rows, cols, times = rows[order], cols[order], times[order]
        first = np.ones(rows.size, dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        age_days = (times.max() - times[first]) / SECONDS_PER_DAY
        decayed = np.power(0.5, age_days / self.half_life_days).astype(np.float32)
        return sp.csr_matrix((decayed, (rows[first], cols[first])), shape=matrix.shape)

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        scores = np.empty((len(people), len(self._overall)), dtype=np.float32)
        for row, person in enumerate(people):
            group = self._group_of_label.get(self._groups.get(person, ""), -1)
            scores[row] = self._group_scores[group] if group >= 0 else self._overall
        return scores

    def _similarity(self, position: int) -> FloatArray:
        """No notion of likeness: the overall best sellers stand in ("others also took")."""
        return self._overall.copy()

    def group_of(self, person: str) -> str | None:
        """The group label a person's picks come from, None for overall popularity."""
        label = self._groups.get(person)
        return label if label in self._group_of_label else None

    def _params(self) -> dict[str, Any]:
        return {
            "half_life_days": self.half_life_days,
            "group_prior": self.group_prior,
            "seed": self.seed,
        }

    def forget(self, people: Collection[str]) -> int:
        """See `ScoringRecommender.forget`; their group is forgotten too, even for people
        given a group but absent from training."""
        wanted = set(people)
        grouped = sum(1 for person in self._groups if person in wanted)
        self._groups = {p: g for p, g in self._groups.items() if p not in wanted}
        return max(super().forget(wanted), grouped)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        members = sorted(self._groups)
        return {
            "overall": self._overall,
            "group_labels": np.asarray(self._group_labels, dtype=str),
            "group_scores": self._group_scores,
            "group_people": np.asarray(members, dtype=str),
            "group_people_labels": np.asarray([self._groups[p] for p in members], dtype=str),
        }

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._overall = arrays["overall"].astype(np.float32)
        self._group_labels = arrays["group_labels"].astype(str).tolist()
        self._group_scores = arrays["group_scores"].astype(np.float32)
        self._group_of_label = {label: i for i, label in enumerate(self._group_labels)}
        people = arrays["group_people"].astype(str).tolist()
        labels = arrays["group_people_labels"].astype(str).tolist()
        self._groups = dict(zip(people, labels, strict=True))
