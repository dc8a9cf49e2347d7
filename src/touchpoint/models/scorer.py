"""The one protocol every scorer follows (River's uniform verbs), as `Recommender` is for
recommenders: the decision engine, the batch jobs, the registry and the shared checks
(`touchpoint.checks.scorers`) treat propensity, churn and lifetime models alike.

- `fit(data, *, seed=0) -> Self` (a class method): learn from the model's training data
  (a `TimeSplit` for propensity and churn, a `CustomerSummary` for the lifetime models);
  randomness comes from `seed` only, so a fit is reproducible.
- `score(frame) -> array`: one float per row of `frame`, in row order; each scorer names
  the columns it reads. `frame` is never mutated.
- `save(directory)` / `load(directory)`: plain files (JSON, LightGBM text; never pickle),
  so the model registry keeps versions and a loaded model scores as the saved one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd


@runtime_checkable
class Scorer(Protocol):
    """See the module docstring."""

    @classmethod
    def fit(cls, data: Any, /, *, seed: int = 0) -> Self: ...

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


def scorer_kinds() -> dict[str, type[Scorer]]:
    """Every scorer by the kind the registry records: what the shared checks run over (a
    new scorer is added here). Imported on call, so `touchpoint.models` stays light."""
    from touchpoint.models.lifetime.bgnbd import BgNbdModel
    from touchpoint.models.lifetime.gamma_gamma import GammaGammaModel
    from touchpoint.models.lifetime.pareto_nbd import ParetoNbdModel
    from touchpoint.models.propensity import PropensityModel

    return {
        "propensity": PropensityModel,
        "bgnbd": BgNbdModel,
        "pareto_nbd": ParetoNbdModel,
        "gamma_gamma": GammaGammaModel,
    }
