"""Content-based recommendations from item attributes: cold start for new items.

Each item becomes a vector from its attributes (the `items` frame given to `fit`: an
`item_id` column and text or categorical columns, e.g. genres, brand, title, tags):

- text and categorical columns: TF-IDF over tokens split on spaces, commas, semicolons
  and `|` (so "Action Comedy" and "Action|Comedy" are two tags), one block per column;
- numeric columns: quantile bins (`numeric_bins`), one-hot, TF-IDF weighted;
- each block is L2-normalized, so every column weighs the same, then the whole vector.

A person's profile is the weighted mean of the vectors of their items (`recent`
included); an item's score is its cosine with the profile, and `similar(item)` is cosine
between items. Items that have attributes but no interactions yet are part of the
catalog: they can be recommended and found by `similar` from the first fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.scoring import (
    FloatArray,
    IndexArray,
    ScoringRecommender,
    csr_arrays,
    csr_from_arrays,
)

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

logger = logging.getLogger(__name__)

TAG_PATTERN = r"[^\s,;|]+"


class ContentBased(ScoringRecommender):
    """Recommendations by likeness of item attributes; see the module docstring."""

    name = "content"

    def __init__(
        self,
        *,
        columns: Sequence[str] | None = None,
        id_column: str = "item_id",
        numeric_bins: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if numeric_bins < 1:
            raise InvalidInput("numeric_bins must be >= 1", details={"field": "numeric_bins"})
        self.columns = list(columns) if columns is not None else None
        self.id_column = id_column
        self.numeric_bins = numeric_bins
        self._vectors: sp.csr_matrix | None = None

    def _checked(self, items: pd.DataFrame | None) -> pd.DataFrame:
        if items is None or len(items) == 0:
            raise InvalidInput(
                "content-based recommendations need item attributes (an items table)",
                details={"field": "items"},
            )
        if self.id_column not in items.columns:
            raise InvalidInput(
                f"the items table has no {self.id_column!r} column",
                details={"field": self.id_column},
            )
        missing = [column for column in self.columns or () if column not in items.columns]
        if missing:
            raise InvalidInput(
                f"the items table has no {missing[0]!r} column", details={"field": missing[0]}
            )
        return items

    def _extra_items(self, items: pd.DataFrame | None) -> list[str]:
        checked = self._checked(items)
        return list(dict.fromkeys(checked[self.id_column].astype(str).tolist()))

    def _fit(
        self, interactions: Interactions, matrix: sp.csr_matrix, items: pd.DataFrame | None
    ) -> None:
        import scipy.sparse as sp

        frame = self._checked(items).drop_duplicates(subset=[self.id_column], keep="last")
        ids = frame[self.id_column].astype(str).tolist()
        columns = self.columns or [c for c in frame.columns if c != self.id_column]
        vectors = attribute_vectors(frame, columns, self.numeric_bins)
        # Rows in catalog order: items without attributes keep an empty vector.
        rows = np.asarray([self._item_positions[item] for item in ids], dtype=np.int64)
        placed = sp.csr_matrix(
            (np.ones(len(ids), dtype=np.float32), (rows, np.arange(len(ids)))),
            shape=(len(self._items), len(ids)),
        )
        self._vectors = (placed @ vectors).tocsr().astype(np.float32)

    def _fitted_vectors(self) -> sp.csr_matrix:
        if self._vectors is None:
            raise RuntimeError("content is not fitted")
        return self._vectors

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        import scipy.sparse as sp

        vectors = self._fitted_vectors()
        totals = np.asarray(histories.sum(axis=1), dtype=np.float64).ravel()
        totals[totals == 0] = 1.0
        profiles = sp.diags(1.0 / totals) @ histories @ vectors
        return np.asarray((profiles @ vectors.T).toarray(), dtype=np.float32)

    def _similarity(self, position: int) -> FloatArray:
        vectors = self._fitted_vectors()
        return np.asarray((vectors @ vectors[position].T).toarray(), dtype=np.float32).ravel()

    def _params(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "id_column": self.id_column,
            "numeric_bins": self.numeric_bins,
            "seed": self.seed,
        }

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return csr_arrays("vectors", self._fitted_vectors())

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._vectors = csr_from_arrays("vectors", arrays)


def attribute_vectors(frame: pd.DataFrame, columns: Sequence[str], bins: int) -> sp.csr_matrix:
    """One L2-normalized row per frame row: a TF-IDF block per usable column, each block
    L2-normalized, blocks side by side."""
    import pandas as pd
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    blocks = []
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.nunique() == 0:
                continue
            binned = pd.qcut(numbers, q=bins, labels=False, duplicates="drop")
            texts = [f"bin{int(b)}" if b == b else "" for b in binned]
        else:
            texts = values.fillna("").astype(str).tolist()
        vectorizer = TfidfVectorizer(token_pattern=TAG_PATTERN, lowercase=True, norm="l2")
        try:
            blocks.append(vectorizer.fit_transform(texts))
        except ValueError:  # the column holds no tokens at all
            logger.info("content: column %r has no usable values, skipped", column)
    if not blocks:
        raise InvalidInput(
            "the items table has no usable attribute column", details={"field": "items"}
        )
    vectors: sp.csr_matrix = normalize(sp.hstack(blocks).tocsr(), norm="l2")
    return vectors
