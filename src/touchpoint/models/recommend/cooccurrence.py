"""Item-to-item co-occurrence: "people who took this also took".

Two items are close when the same people took both. Raw counts favour best sellers, so
the count is normalized (`similarity`):

- `cosine`: count / sqrt(people(a) * people(b)), the classic item-kNN;
- `jaccard`: count / people who took either;
- `lift`: count * people / (people(a) * people(b)), how much more often than chance
  (noisy for rare items; `shrink` pseudo-counts damp it);
- `count`: the raw count.

With `window` set, two items co-occur only when they are within `window` steps of each
other in a person's time-ordered history ("taken in the same session" rather than "ever
by the same person"); without times, the order of the rows is used.

Each item keeps its `neighbors` closest items (all when None). A person's score for an item
is the sum of its similarities to the items in their history (`recent` included), so the
same table answers `similar(item)` and `recommend(person)`. Interactions count once per
person-item pair (weights ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.scoring import (
    FloatArray,
    IndexArray,
    ScoringRecommender,
    binary,
    csr_arrays,
    csr_from_arrays,
)

if TYPE_CHECKING:
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

Similarity = Literal["cosine", "jaccard", "lift", "count"]
SIMILARITIES: tuple[str, ...] = ("cosine", "jaccard", "lift", "count")


class CoOccurrence(ScoringRecommender):
    """Item-item similarity from shared people; see the module docstring."""

    name = "cooccurrence"

    def __init__(
        self,
        *,
        similarity: Similarity = "cosine",
        neighbors: int | None = 100,
        shrink: float = 0.0,
        window: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if similarity not in SIMILARITIES:
            raise InvalidInput(
                f"similarity must be one of {', '.join(SIMILARITIES)}, not {similarity!r}",
                details={"field": "similarity"},
            )
        if neighbors is not None and neighbors < 1:
            raise InvalidInput("neighbors must be >= 1", details={"field": "neighbors"})
        if shrink < 0:
            raise InvalidInput("shrink must be >= 0", details={"field": "shrink"})
        if window is not None and window < 1:
            raise InvalidInput("window must be >= 1", details={"field": "window"})
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrink = shrink
        self.window = window
        self._table: sp.csr_matrix | None = None

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        people_items = binary(matrix)
        counts = (
            windowed_counts(interactions, self.window, matrix.shape[1])
            if self.window is not None
            else None
        )
        self._table = item_similarity(
            people_items,
            self.similarity,
            neighbors=self.neighbors,
            shrink=self.shrink,
            counts=counts,
        )

    def _fitted_table(self) -> sp.csr_matrix:
        if self._table is None:
            raise RuntimeError("cooccurrence is not fitted")
        return self._table

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        scores = binary(histories) @ self._fitted_table()
        return np.asarray(scores.toarray(), dtype=np.float32)

    def _similarity(self, position: int) -> FloatArray:
        row = self._fitted_table()[position]
        scores = np.full(row.shape[1], -np.inf, dtype=np.float32)
        scores[row.indices] = row.data
        return scores

    def _params(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity,
            "neighbors": self.neighbors,
            "shrink": self.shrink,
            "window": self.window,
            "seed": self.seed,
        }

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return csr_arrays("table", self._fitted_table())

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._table = csr_from_arrays("table", arrays)


def item_similarity(
    people_items: sp.csr_matrix,
    similarity: str,
    *,
    neighbors: int | None,
    shrink: float = 0.0,
    counts: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """Items x items similarity (float32 CSR, zero diagonal, at most `neighbors` per row)
    from a binary people x items matrix; `counts` replaces the co-occurrence counts
    (XᵀX) when given (e.g. `windowed_counts`)."""
    import scipy.sparse as sp

    people = people_items.shape[0]
    if counts is None:
        counts = people_items.T @ people_items
    counts = counts.tocsr().astype(np.float64)
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    takers = np.asarray(people_items.sum(axis=0), dtype=np.float64).ravel()
    coo = counts.tocoo()
    shared = coo.data
    if similarity == "cosine":
        values = shared / (np.sqrt(takers[coo.row] * takers[coo.col]) + shrink)
    elif similarity == "jaccard":
        values = shared / (takers[coo.row] + takers[coo.col] - shared + shrink)
    elif similarity == "lift":
        values = shared * people / (takers[coo.row] * takers[coo.col] + shrink)
    else:
        values = shared
    table = sp.csr_matrix((values, (coo.row, coo.col)), shape=counts.shape)
    if neighbors is not None:
        table = keep_top_per_row(table, neighbors)
    return table.astype(np.float32)


def windowed_counts(interactions: Interactions, window: int, items: int) -> sp.csr_matrix:
    """Items x items: how many times two items were within `window` steps of each other in
    a person's history ordered by time (then row order); each person-item pair once, at its
    first occurrence."""
    import scipy.sparse as sp

    people = interactions.person_index.astype(np.int64)
    taken = interactions.item_index.astype(np.int64)
    rows = np.arange(people.size)
    times = interactions.times if interactions.times is not None else rows.astype(np.float64)
    times = np.where(np.isnan(times), np.inf, times)
    order = np.lexsort((rows, times, people))
    people, taken = people[order], taken[order]
    # First occurrence of each person-item pair, the time order kept.
    _, first = np.unique(people * items + taken, return_index=True)
    keep = np.sort(first)
    people, taken = people[keep], taken[keep]
    sources: list[npt.NDArray[np.int64]] = []
    targets: list[npt.NDArray[np.int64]] = []
    for step in range(1, window + 1):
        same = people[step:] == people[:-step]
        sources += [taken[:-step][same], taken[step:][same]]
        targets += [taken[step:][same], taken[:-step][same]]
    source = np.concatenate(sources) if sources else np.empty(0, dtype=np.int64)
    target = np.concatenate(targets) if targets else np.empty(0, dtype=np.int64)
    values = np.ones(source.size, dtype=np.float64)
    return sp.csr_matrix((values, (source, target)), shape=(items, items))


def keep_top_per_row(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's `keep` largest entries (ties by column), the rest dropped."""
    import scipy.sparse as sp

    matrix = matrix.tocsr()
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or lengths.max() <= keep:
        return matrix
    kept: list[npt.NDArray[np.int64]] = []
    for row in np.flatnonzero(lengths > 0):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        if stop - start <= keep:
            kept.append(np.arange(start, stop, dtype=np.int64))
            continue
        values = matrix.data[start:stop]
        order = np.lexsort((matrix.indices[start:stop], -values))[:keep]
        kept.append(start + np.sort(order).astype(np.int64))
    entries = np.concatenate(kept)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)[entries]
    return sp.csr_matrix(
        (matrix.data[entries], (rows, matrix.indices[entries])), shape=matrix.shape
    )
