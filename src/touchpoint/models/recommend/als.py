"""Implicit-feedback matrix factorization (Hu, Koren & Volinsky 2008) via `implicit`.

`implicit.als.AlternatingLeastSquares` learns a vector per person and per item; a person's
score for an item is the dot product. It scales to catalogs EASE cannot hold (no items²
matrix). Fit runs with BLAS limited to one thread, as `implicit` asks (its own threads do
the work), and `random_state=seed`, so a fit is reproducible.

Only the factors are kept (`factors.npz`-style arrays in the saved model), so a loaded
model scores without `implicit`. A person unknown at fit time, or whose history gains
`recent` items, is folded in: their vector is solved from the item factors with the same
normal equations ALS uses (confidence = alpha * weight).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.scoring import FloatArray, IndexArray, ScoringRecommender

if TYPE_CHECKING:
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

logger = logging.getLogger(__name__)


class ImplicitALS(ScoringRecommender):
    """Alternating least squares on implicit feedback; see the module docstring."""

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        for field, value in (("factors", factors), ("iterations", iterations)):
            if value < 1:
                raise InvalidInput(f"{field} must be >= 1", details={"field": field})
        if regularization < 0:
            raise InvalidInput("regularization must be >= 0", details={"field": "regularization"})
        if not alpha > 0:
            raise InvalidInput("alpha must be > 0", details={"field": "alpha"})
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self._person_factors: FloatArray = np.empty((0, factors), dtype=np.float32)
        self._item_factors: FloatArray = np.empty((0, factors), dtype=np.float32)
        self._gram: npt.NDArray[np.float64] | None = None

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(matrix.astype(np.float32).tocsr(), show_progress=False)
        self._person_factors = np.asarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._gram = None

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        vectors = np.empty((histories.shape[0], self._item_factors.shape[1]), dtype=np.float32)
        stored = positions >= 0
        vectors[stored] = self._person_factors[positions[stored]]
        for row in np.flatnonzero(~stored):
            vectors[row] = self._fold_in(histories[row])
        return np.asarray(vectors @ self._item_factors.T, dtype=np.float32)

    def _fold_in(self, history: sp.csr_matrix) -> FloatArray:
        """A person vector from their items: (YᵀY + λI + Σ (c-1) y yᵀ) x = Σ c y."""
        if history.nnz == 0:
            return np.zeros(self._item_factors.shape[1], dtype=np.float32)
        item_vectors = self._item_factors[history.indices].astype(np.float64)
        confidence = self.alpha * history.data.astype(np.float64)
        system = self._item_gram() + self.regularization * np.eye(item_vectors.shape[1])
        system += (item_vectors * (confidence - 1.0)[:, None]).T @ item_vectors
        target = (item_vectors * confidence[:, None]).sum(axis=0)
        return np.asarray(np.linalg.solve(system, target), dtype=np.float32)

    def _item_gram(self) -> npt.NDArray[np.float64]:
        if self._gram is None:
            all_items = self._item_factors.astype(np.float64)
            self._gram = all_items.T @ all_items
        return self._gram

    def _similarity(self, position: int) -> FloatArray:
        norms = np.linalg.norm(self._item_factors, axis=1)
        norms[norms == 0] = 1.0
        unit = self._item_factors / norms[:, None]
        return np.asarray(unit @ unit[position], dtype=np.float32)

    def _params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "alpha": self.alpha,
            "seed": self.seed,
        }

    def _forget_rows(self, keep: npt.NDArray[np.bool_], people: Collection[str]) -> None:
        if len(keep) == len(self._person_factors):
            self._person_factors = self._person_factors[keep]

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"person_factors": self._person_factors, "item_factors": self._item_factors}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._person_factors = arrays["person_factors"].astype(np.float32)
        self._item_factors = arrays["item_factors"].astype(np.float32)
        self._gram = None
