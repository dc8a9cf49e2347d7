"""Interactions: who did what with which item, as the recommenders take them.

A person-item pair may appear many times (views, purchases); `Interactions` keeps
the rows and encodes ids to dense indices once, so every model shares one
vocabulary and one sparse matrix (people x items, weights summed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Rows of (person, item, weight[, time]) with their id vocabularies.

    `people[i]` / `items[j]` are the ids behind index i / j; `person_index`,
    `item_index` (int32) and `weights` (float32) are the rows; `times` (float64 epoch
    seconds) is optional. Build with `from_frame` or `from_rows`; never mutate.
    """

    people: npt.NDArray[np.object_]
    items: npt.NDArray[np.object_]
    person_index: npt.NDArray[np.int32]
    item_index: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]
    times: npt.NDArray[np.float64] | None = None
    _positions: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        person: str = "person_id",
        item: str = "item_id",
        weight: str | None = "weight",
        time: str | None = "timestamp",
    ) -> Interactions:
        """From a frame with person and item columns, and optional weight and time columns
        (absent or missing weights count 1; times may be datetimes or epoch seconds)."""
        import pandas as pd

        people, person_index = np.unique(frame[person].astype(str).to_numpy(), return_inverse=True)
        items, item_index = np.unique(frame[item].astype(str).to_numpy(), return_inverse=True)
        if weight is not None and weight in frame.columns:
            weights = pd.to_numeric(frame[weight], errors="coerce").fillna(1.0).to_numpy()
        else:
            weights = np.ones(len(frame))
        times = None
        if time is not None and time in frame.columns:
            column = frame[time]
            if pd.api.types.is_datetime64_any_dtype(column):
                times = column.astype("int64").to_numpy() / 1e9
                times = times.astype(np.float64)
            else:
                times = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        return cls(
            people=people.astype(object),
            items=items.astype(object),
            person_index=person_index.astype(np.int32),
            item_index=item_index.astype(np.int32),
            weights=np.asarray(weights, dtype=np.float32),
            times=times,
        )

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[str, str]] | Sequence[tuple[str, str, float]]
    ) -> Interactions:
        """From (person, item[, weight]) tuples, mostly for tests."""
        import pandas as pd

        columns = ["person_id", "item_id", "weight"][: len(rows[0])] if rows else ["person_id"]
        return cls.from_frame(pd.DataFrame(list(rows), columns=columns))

    def __len__(self) -> int:
        return len(self.person_index)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.people), len(self.items)

    def matrix(self) -> sp.csr_matrix:
        """People x items, float32, weights of repeated pairs summed."""
        import scipy.sparse as sp

        matrix = sp.csr_matrix(
            (self.weights, (self.person_index, self.item_index)), shape=self.shape
        )
        matrix.sum_duplicates()
        return matrix.astype(np.float32)

    def person_position(self, person: str) -> int | None:
        """The index of a person id, None if unknown."""
        return self._lookup("people", self.people).get(person)

    def item_position(self, item: str) -> int | None:
        """The index of an item id, None if unknown."""
        return self._lookup("items", self.items).get(item)

    def _lookup(self, name: str, ids: npt.NDArray[Any]) -> dict[str, int]:
        found = self._positions.get(name)
        if found is None:
            found = self._positions[name] = {str(value): index for index, value in enumerate(ids)}
        return found

    def seen(self, person: str) -> set[str]:
        """The items a person interacted with."""
        position = self.person_position(person)
        if position is None:
            return set()
        return {str(self.items[j]) for j in self.item_index[self.person_index == position]}
