"""What every matrix-scoring recommender shares: the vocabularies, the training histories,
top-k selection with exclusions and filters, the popularity fallback, and plain-file save
and load.

A model subclasses `ScoringRecommender` and supplies four hooks: `_fit` (learn from the
people x items matrix), `_score` (a dense score row per history), `_similarity` (one item's
row of similarities) and `_arrays` / `_restore` (its state as numpy arrays). Everything the
`Recommender` protocol promises beyond that (seen items excluded, `exclude` and `filter`
honoured, `recent` items added to the history, people unknown at fit time served from
`recent` or from popularity, identical answers after `save` then `load`) lives here once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.recommend.base import ItemFilter, Scored

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

logger = logging.getLogger(__name__)

MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
FORMAT_VERSION = 1
CHUNK_ROWS = 1024  # people scored at once by the batch path (1024 x items float32)

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TopItems:
    """The batch answer as arrays: row r holds the best items of `people[r]`, best first.

    `positions[r, :counts[r]]` are item positions (into `items`), `scores` the matching
    scores; slots past `counts[r]` are padding (-1 / -inf)."""

    people: tuple[str, ...]
    items: npt.NDArray[np.str_]
    positions: IndexArray
    scores: FloatArray
    counts: IndexArray


def write_model_file(directory: Path, name: str, params: dict[str, Any], **extra: Any) -> None:
    """`model.json`: the class name (so `load_recommender` can rebuild it) and parameters."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {"class": name, "format": FORMAT_VERSION, "params": params, **extra}
    (directory / MODEL_FILE).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


def read_model_file(directory: Path) -> dict[str, Any]:
    """The parsed `model.json` of a saved model; a clear error if it is missing or broken."""
    path = directory / MODEL_FILE
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidInput(
            f"cannot read the saved model {path}: {error}", details={"field": str(path)}
        ) from error
    if not isinstance(body, dict) or not isinstance(body.get("class"), str):
        raise InvalidInput(f"{path} does not name a model class", details={"field": str(path)})
    return body


def save_arrays(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Arrays into an uncompressed `.npz` (plain dtypes only: object arrays would need pickle)."""
    savez: Callable[..., None] = np.savez
    with path.open("wb") as handle:
        savez(handle, **arrays)


def load_arrays(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every array of an `.npz`, read without pickle."""
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    """A CSR matrix as plain arrays for an `.npz` (no pickle)."""
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, npt.NDArray[Any]]) -> sp.csr_matrix:
    """The inverse of `csr_arrays`."""
    import scipy.sparse as sp

    shape = tuple(int(size) for size in arrays[f"{prefix}_shape"])
    parts = (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"])
    return sp.csr_matrix(parts, shape=shape)


def top_rows(block: FloatArray, width: int) -> tuple[IndexArray, IndexArray]:
    """Per row of a 2-d score block: the positions of its `width` highest finite scores,
    best first, ties broken by position (exactly as `top_positions`), padded with -1; and
    how many each row has."""
    rows, columns = block.shape
    if width <= 0 or columns == 0:
        return np.full((rows, max(width, 0)), -1, dtype=np.int64), np.zeros(rows, dtype=np.int64)
    if width < columns:
        chosen = np.argpartition(-block, width - 1, axis=1)[:, :width].astype(np.int64)
    else:
        chosen = np.tile(np.arange(columns, dtype=np.int64), (rows, 1))
    values = np.take_along_axis(block, chosen, 1)
    order = np.lexsort((chosen, -values.astype(np.float64)), axis=1)
    chosen = np.take_along_axis(chosen, order, 1)
    values = np.take_along_axis(values, order, 1)
    if width < columns:
        # Ties across the cut: argpartition keeps an arbitrary few of the tied items, so
        # those rows are redone exactly (rare outside popularity-like scores).
        last = values[:, -1:]
        tied = (block == last).sum(axis=1) > (values == last).sum(axis=1)
        for row in np.flatnonzero(tied & np.isfinite(last[:, 0])):
            exact = top_positions(block[row], width)
            chosen[row, : exact.size] = exact
            values[row, : exact.size] = block[row, exact]
    finite = np.isfinite(values)
    return np.where(finite, chosen, -1), finite.sum(axis=1).astype(np.int64)


def top_positions(scores: FloatArray, k: int) -> IndexArray:
    """Positions of the `k` highest finite scores of a 1-d array, best first; ties broken by
    position so the order is deterministic."""
    finite = np.flatnonzero(np.isfinite(scores))
    if k <= 0 or finite.size == 0:
        return np.empty(0, dtype=np.int64)
    if finite.size > k:
        values = scores[finite]
        kth = np.partition(values, finite.size - k)[finite.size - k]
        finite = finite[values >= kth]
    order = np.lexsort((finite, -scores[finite].astype(np.float64)))
    return finite[order][:k].astype(np.int64)


class ScoringRecommender:
    """Base of the recommenders that score every item for a history (see the module doc).

    Subclasses set `name`, take their parameters as keyword constructor arguments (with a
    `seed`), and implement the hooks. Fitting never mutates the `Interactions` given."""

    name: str = "scoring"
    # Whether `_score` answers for empty histories itself (popularity) instead of the
    # shared popularity fallback.
    scores_empty_histories: bool = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self._people: npt.NDArray[np.str_] = np.empty(0, dtype=str)
        self._items: npt.NDArray[np.str_] = np.empty(0, dtype=str)
        self._person_positions: dict[str, int] = {}
        self._item_positions: dict[str, int] = {}
        self._history: sp.csr_matrix | None = None
        self._popularity: FloatArray = np.empty(0, dtype=np.float32)

    # ---- hooks -------------------------------------------------------------------------

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        raise NotImplementedError

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        """Dense scores (rows x items) for histories (rows x items). `positions[r]` is the
        person's index when the history is exactly their training row, else -1."""
        raise NotImplementedError

    def _similarity(self, position: int) -> FloatArray:
        """Similarity of every item to the item at `position` (any scale, higher = closer)."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        return None

    def _forget_rows(self, keep: npt.NDArray[np.bool_], people: Collection[str]) -> None:
        """Drop the state kept per training person: `keep` flags the rows that stay (of
        the people before `forget`), `people` are the ids forgotten. None by default."""
        return None

    def _model_file_extra(self) -> dict[str, Any]:
        """More keys for `model.json` (e.g. where a composite keeps its parts)."""
        return {}

    @classmethod
    def _from_saved(cls, directory: Path, body: dict[str, Any]) -> Self:
        """An unfitted model from a saved `model.json` (its state is restored after)."""
        return cls(**body.get("params", {}))

    def _extra_items(self, items: pd.DataFrame | None) -> list[str]:
        """Item ids known only from attributes (cold start); none by default."""
        return []

    # ---- fit ---------------------------------------------------------------------------

    def fit(self, interactions: Interactions, items: pd.DataFrame | None = None) -> Self:
        """Learn from the interactions (weights of repeated pairs summed) and return self."""
        if len(interactions) == 0 or interactions.shape[1] == 0:
            raise NotEnoughData(f"{self.name}: no interactions to learn from")
        matrix = interactions.matrix()
        # Non-positive weights still mean "interacted": they count as a plain 1.
        matrix.data = np.where(matrix.data > 0, matrix.data, 1.0).astype(np.float32)
        known = [str(item) for item in interactions.items]
        known_set = set(known)
        extra = [item for item in self._extra_items(items) if item not in known_set]
        if extra:
            matrix.resize((matrix.shape[0], len(known) + len(extra)))
        self._people = np.asarray([str(person) for person in interactions.people], dtype=str)
        self._items = np.asarray(known + extra, dtype=str)
        self._index_vocabularies()
        self._history = matrix
        counts = np.diff(matrix.tocsc().indptr).astype(np.float32)
        self._popularity = counts
        self._fit(interactions, matrix, items)
        logger.info("%s fitted: %d people x %d items", self.name, *matrix.shape)
        return self

    def forget(self, people: Collection[str]) -> int:
        """Remove these people from what the model keeps (erasure): their id, their row of
        training history and any state of their own (a person vector, a group); how many
        it knew. They are then served as people it never saw. Item statistics learned from
        everyone (popularity, item-item tables, item vectors) stay: they name no one, and
        the next training, on data without the person, replaces them."""
        wanted = set(people)
        positions = [index for person, index in self._person_positions.items() if person in wanted]
        keep = np.ones(len(self._people), dtype=bool)
        keep[positions] = False
        if positions:
            self._people = self._people[keep]
            self._history = self._fitted_history()[keep]
            self._index_vocabularies()
        self._forget_rows(keep, wanted)
        return len(positions)

    def _index_vocabularies(self) -> None:
        self._person_positions = {person: index for index, person in enumerate(self._people)}
        self._item_positions = {item: index for index, item in enumerate(self._items)}

    @property
    def fitted(self) -> bool:
        return self._history is not None

    def _fitted_history(self) -> sp.csr_matrix:
        if self._history is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit() or load() first")
        return self._history

    # ---- what the model knows ----------------------------------------------------------

    @property
    def items(self) -> tuple[str, ...]:
        """Every item the model can recommend."""
        return tuple(self._items.tolist())

    def knows(self, person: str) -> bool:
        """Whether the person was in the training interactions."""
        return person in self._person_positions

    def seen_items(self, person: str) -> frozenset[str]:
        """The items a person interacted with in training (excluded from their picks)."""
        position = self._person_positions.get(person)
        if position is None:
            return frozenset()
        history = self._fitted_history()
        row = history.indices[history.indptr[position] : history.indptr[position + 1]]
        return frozenset(self._items[row].tolist())

    # ---- recommend ---------------------------------------------------------------------

    def recommend(
        self,
        person: str,
        k: int,
        *,
        exclude: Collection[str] = (),
        filter: ItemFilter | None = None,
        recent: Sequence[str] = (),
    ) -> list[Scored]:
        """The top `k` items for a person, best first: training items, `recent` items and
        `exclude` left out, only items `filter` accepts. `recent` items join the person's
        history; a person with no history at all gets the most popular items."""
        history = self._fitted_history()
        position = self._person_positions.get(person, -1)
        row = history[position] if position >= 0 else _empty_row(len(self._items))
        held = set(row.indices.tolist())
        added = [
            self._item_positions[item]
            for item in dict.fromkeys(recent)
            if item in self._item_positions and self._item_positions[item] not in held
        ]
        if added:
            row = _with_items(row, added)
        state = np.asarray([-1 if added else position], dtype=np.int64)
        scores = self._scores_for(row, state, [person])[0]
        blocked = set(row.indices.tolist())
        blocked.update(self._item_positions[i] for i in exclude if i in self._item_positions)
        if blocked:
            scores[np.fromiter(blocked, dtype=np.int64)] = -np.inf
        return self._pick(scores, k, filter)

    def _scores_for(
        self, rows: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        scores = np.array(self._score(rows, positions, people), dtype=np.float32)
        if not self.scores_empty_histories:
            empty = np.diff(rows.indptr) == 0
            if empty.any():
                scores[empty] = self._popularity
        scores[np.isnan(scores)] = -np.inf
        return scores

    def _pick(self, scores: FloatArray, k: int, filter: ItemFilter | None) -> list[Scored]:
        if filter is None:
            positions, counts = top_rows(scores[None, :], max(0, min(k, scores.size)))
            chosen = positions[0, : counts[0]]
        else:
            accepted: list[int] = []
            for position in top_positions(scores, scores.size):
                if len(accepted) == k:
                    break
                if filter(str(self._items[position])):
                    accepted.append(int(position))
            chosen = np.asarray(accepted, dtype=np.int64)
        return [Scored(str(self._items[j]), float(scores[j])) for j in chosen]

    def top_items(
        self,
        people: Sequence[str],
        k: int,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> TopItems:
        """The batch path behind `recommend_many` and the batch command: arrays instead of
        objects, people scored in chunks, training items excluded. `progress(done, total)`
        is called after each chunk."""
        history = self._fitted_history()
        people = tuple(people)
        width = max(0, min(k, len(self._items)))
        positions = np.full((len(people), width), -1, dtype=np.int64)
        scores = np.full((len(people), width), -np.inf, dtype=np.float32)
        counts = np.zeros(len(people), dtype=np.int64)
        for start, stop in _chunks(len(people), CHUNK_ROWS):
            chunk = people[start:stop]
            rows_index = np.asarray([self._person_positions.get(p, -1) for p in chunk])
            rows = history[np.maximum(rows_index, 0)]
            if (rows_index < 0).any():
                rows = _zero_rows(rows, (rows_index < 0).astype(np.float32))
            block = self._scores_for(rows, rows_index.astype(np.int64), chunk)
            entry_rows = np.repeat(np.arange(len(chunk)), np.diff(rows.indptr))
            block[entry_rows, rows.indices] = -np.inf
            chosen, found = top_rows(block, width)
            positions[start:stop] = chosen
            scores[start:stop] = np.where(
                chosen >= 0, np.take_along_axis(block, np.maximum(chosen, 0), 1), -np.inf
            )
            counts[start:stop] = found
            if progress is not None:
                progress(stop, len(people))
        return TopItems(people, self._items, positions, scores, counts)

    def recommend_many(self, people: Sequence[str], k: int) -> dict[str, list[Scored]]:
        """`recommend` for many people at once (training items excluded, no filter)."""
        top = self.top_items(people, k)
        answer: dict[str, list[Scored]] = {}
        for row, person in enumerate(top.people):
            count = int(top.counts[row])
            answer[person] = [
                Scored(str(self._items[j]), float(s))
                for j, s in zip(top.positions[row, :count], top.scores[row, :count], strict=True)
            ]
        return answer

    def similar(self, item: str, k: int) -> list[Scored]:
        """Items most like `item`, best first, itself excluded; empty for an unknown item."""
        self._fitted_history()
        position = self._item_positions.get(item)
        if position is None:
            return []
        scores = np.array(self._similarity(position), dtype=np.float32)
        scores[position] = -np.inf
        return self._pick(scores, k, None)

    # ---- save / load -------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """`model.json` (class, parameters) and `arrays.npz` (vocabularies, histories, the
        model's state), plain files only."""
        history = self._fitted_history()
        write_model_file(directory, self.name, self._params(), **self._model_file_extra())
        arrays: dict[str, npt.NDArray[Any]] = {
            "people": self._people,
            "items": self._items,
            "popularity": self._popularity,
            **csr_arrays("history", history),
        }
        overlap = set(arrays) & set(self._arrays())
        if overlap:
            raise RuntimeError(f"{self.name} state names clash with shared ones: {overlap}")
        arrays.update(self._arrays())
        save_arrays(directory / ARRAYS_FILE, arrays)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """A model saved by `save`, answering exactly as it did."""
        body = read_model_file(directory)
        if body["class"] != cls.name:
            raise InvalidInput(
                f"{directory} holds a {body['class']!r} model, not {cls.name!r}",
                details={"field": "class"},
            )
        model = cls._from_saved(directory, body)
        arrays = load_arrays(directory / ARRAYS_FILE)
        model._people = arrays["people"].astype(str)
        model._items = arrays["items"].astype(str)
        model._popularity = arrays["popularity"].astype(np.float32)
        model._history = csr_from_arrays("history", arrays)
        model._index_vocabularies()
        model._restore(arrays)
        return model


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)


def _zero_rows(rows: sp.csr_matrix, which: FloatArray) -> sp.csr_matrix:
    """`rows` with the rows flagged in `which` emptied (unknown people have no history)."""
    import scipy.sparse as sp

    keep = sp.diags(1.0 - which).astype(np.float32)
    emptied = (keep @ rows).tocsr()
    emptied.eliminate_zeros()
    return emptied


def _empty_row(columns: int) -> sp.csr_matrix:
    import scipy.sparse as sp

    return sp.csr_matrix((1, columns), dtype=np.float32)


def _with_items(row: sp.csr_matrix, positions: list[int]) -> sp.csr_matrix:
    """A one-row history with more items, each at the row's mean weight (1 if empty)."""
    import scipy.sparse as sp

    weight = float(row.data.mean()) if row.nnz else 1.0
    values = np.full(len(positions), weight, dtype=np.float32)
    added = sp.csr_matrix(
        (values, (np.zeros(len(positions), dtype=np.int64), positions)), shape=row.shape
    )
    return (row + added).tocsr()


def binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """A copy of a sparse matrix with every stored entry set to 1 (who touched what)."""
    copy = matrix.copy().tocsr()
    copy.data = np.ones_like(copy.data, dtype=np.float32)
    return copy
