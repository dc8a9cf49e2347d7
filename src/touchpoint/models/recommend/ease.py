"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A linear item-to-item model with a closed form: with X the people x items matrix and
G = XᵀX + Λ, P = G⁻¹, the weights are B = I - P·diag(1/diag(P)) (zero diagonal), and a
person's scores are their history times B. One dense items x items inverse, no iterations,
no randomness; on MovieLens 100k it is the strongest single model we measured.

- `regularization` (λ): added to the Gram diagonal. Weights are rescaled to mean 1 before
  the Gram is formed, so λ means the same whatever the weight scale.
- `popularity_regularization` (κ): adds κ·diag(XᵀX) to the diagonal as well, the
  dropout-emphasis term of Steck's EDLAE (2020): frequent items are shrunk harder.
- `weight_power` (p): each interaction enters as weight**p: 0 = who took what (binary),
  1 = the weights as given (ratings, quantities), 0.5 in between.
- `popularity_discount` (β): scores are divided by (people who took the item + 1)**β, a
  nudge away from best sellers (0 = none).

Size: the Gram inverse is dense, items² floats (float64 up to 8,192 items, float32 above):
20,000 items take ~1.6 GB and a few minutes on two cores. Above `max_items` the model
keeps the `max_items` most popular items (logged); the rest are never recommended by EASE
(use `cooccurrence` or `als` for very large catalogs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.scoring import FloatArray, IndexArray, ScoringRecommender

if TYPE_CHECKING:
    import scipy.sparse as sp

    from touchpoint.models.interactions import Interactions

logger = logging.getLogger(__name__)

MAX_ITEMS = 20_000
DOUBLE_PRECISION_UP_TO = 8_192


class EASE(ScoringRecommender):
    """Closed-form linear item-item autoencoder; see the module docstring."""

    name = "ease"

    def __init__(
        self,
        *,
        regularization: float = 500.0,
        popularity_regularization: float = 0.0,
        weight_power: float = 0.0,
        popularity_discount: float = 0.0,
        max_items: int = MAX_ITEMS,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if not regularization > 0:
            raise InvalidInput("regularization must be > 0", details={"field": "regularization"})
        if popularity_regularization < 0:
            raise InvalidInput(
                "popularity_regularization must be >= 0",
                details={"field": "popularity_regularization"},
            )
        if weight_power < 0:
            raise InvalidInput("weight_power must be >= 0", details={"field": "weight_power"})
        if popularity_discount < 0:
            raise InvalidInput(
                "popularity_discount must be >= 0", details={"field": "popularity_discount"}
            )
        if max_items < 1:
            raise InvalidInput("max_items must be >= 1", details={"field": "max_items"})
        self.regularization = regularization
        self.popularity_regularization = popularity_regularization
        self.weight_power = weight_power
        self.popularity_discount = popularity_discount
        self.max_items = max_items
        self._weights: FloatArray = np.empty((0, 0), dtype=np.float32)
        self._kept: IndexArray = np.empty(0, dtype=np.int64)
        self._weight_scale = 1.0

    def _fit(self, interactions: Interactions, matrix: sp.csr_matrix, items: Any) -> None:
        kept = np.arange(matrix.shape[1], dtype=np.int64)
        if matrix.shape[1] > self.max_items:
            order = np.lexsort((kept, -self._popularity))
            kept = np.sort(order[: self.max_items]).astype(np.int64)
            logger.warning(
                "ease: %d items is over max_items=%d; keeping the %d most popular",
                matrix.shape[1],
                self.max_items,
                self.max_items,
            )
        powered = matrix[:, kept].tocsr()
        powered.data = np.power(powered.data, self.weight_power, dtype=np.float32)
        self._weight_scale = float(powered.data.mean()) if powered.nnz else 1.0
        powered.data /= self._weight_scale
        self._kept = kept
        self._weights = ease_weights(powered, self.regularization, self.popularity_regularization)

    def _inputs(self, histories: sp.csr_matrix) -> sp.csr_matrix:
        inputs = histories[:, self._kept].tocsr()
        inputs.data = np.power(inputs.data, self.weight_power, dtype=np.float32)
        inputs.data /= self._weight_scale
        return inputs

    def _score(
        self, histories: sp.csr_matrix, positions: IndexArray, people: Sequence[str]
    ) -> FloatArray:
        kept_scores = np.asarray(self._inputs(histories) @ self._weights, dtype=np.float32)
        if self.popularity_discount:
            takers = self._popularity[self._kept] + 1.0
            kept_scores /= np.power(takers, self.popularity_discount, dtype=np.float32)
        if self._kept.size == histories.shape[1]:
            return kept_scores
        scores = np.full(histories.shape, -np.inf, dtype=np.float32)
        scores[:, self._kept] = kept_scores
        return scores

    def _similarity(self, position: int) -> FloatArray:
        scores = np.full(len(self._items), -np.inf, dtype=np.float32)
        found = np.searchsorted(self._kept, position)
        if found < self._kept.size and self._kept[found] == position:
            # Row i of B: how much having item i raises the score of every other item.
            scores[self._kept] = self._weights[found]
        return scores

    @property
    def item_weights(self) -> FloatArray:
        """B, the kept items x kept items weights (read-only view)."""
        view = self._weights.view()
        view.flags.writeable = False
        return view

    def _params(self) -> dict[str, Any]:
        return {
            "regularization": self.regularization,
            "popularity_regularization": self.popularity_regularization,
            "weight_power": self.weight_power,
            "popularity_discount": self.popularity_discount,
            "max_items": self.max_items,
            "seed": self.seed,
        }

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "weights": self._weights,
            "kept": self._kept,
            "weight_scale": np.asarray([self._weight_scale], dtype=np.float64),
        }

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._weights = arrays["weights"].astype(np.float32)
        self._kept = arrays["kept"].astype(np.int64)
        self._weight_scale = float(arrays["weight_scale"][0])


def ease_weights(
    people_items: sp.csr_matrix, regularization: float, popularity_regularization: float = 0.0
) -> FloatArray:
    """B = I - P·diag(1/diag(P)), P = (XᵀX + λI + κ·diag(XᵀX))⁻¹, as float32, zero diagonal."""
    items = people_items.shape[1]
    dtype = np.float64 if items <= DOUBLE_PRECISION_UP_TO else np.float32
    gram: npt.NDArray[np.floating[Any]] = np.asarray(
        (people_items.T @ people_items).toarray(), dtype=dtype
    )
    diagonal = np.diag_indices(items)
    gram[diagonal] += regularization + popularity_regularization * gram[diagonal]
    inverse = np.linalg.inv(gram)
    del gram
    weights = inverse / (-np.diag(inverse))
    weights[diagonal] = 0.0
    return np.asarray(weights, dtype=np.float32)
