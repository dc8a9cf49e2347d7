"""The checks every scorer must pass (see `touchpoint.models.scorer`).

A `ScorerCase` gives a scorer class, its training data and a frame to score; each check
raises AssertionError naming what failed. `scorer_checks()` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from touchpoint.models.registry import ModelRegistry, ModelVersion
from touchpoint.models.scorer import Scorer

CREATED_AT = "2026-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class ScorerCase:
    """A scorer to check: its class, what `fit` learns from, what `score` reads, and any
    options `fit` needs besides the seed."""

    kind: str
    scorer: type[Scorer]
    data: Any
    frame: pd.DataFrame
    options: Mapping[str, Any] = field(default_factory=dict)

    def fit(self, seed: int = 0) -> Scorer:
        fit: Callable[..., Scorer] = self.scorer.fit
        return fit(self.data, seed=seed, **self.options)


ScorerCheck = Callable[[ScorerCase, Path], None]


def check_scores_one_float_per_row(case: ScorerCase, directory: Path) -> None:
    """`score` gives one finite float per row of the frame."""
    scores = case.fit().score(case.frame)
    assert isinstance(scores, np.ndarray), f"{case.kind}: score gave {type(scores).__name__}"
    assert scores.shape == (len(case.frame),), f"{case.kind}: shape {scores.shape}"
    assert scores.dtype == np.float64, f"{case.kind}: dtype {scores.dtype}"
    assert np.isfinite(scores).all(), f"{case.kind}: scores that are not finite"


def check_deterministic_under_a_seed(case: ScorerCase, directory: Path) -> None:
    """Two fits with the same seed score exactly alike."""
    first, second = case.fit(seed=7), case.fit(seed=7)
    np.testing.assert_array_equal(
        first.score(case.frame), second.score(case.frame), err_msg=f"{case.kind}: not seeded"
    )


def check_inputs_not_mutated(case: ScorerCase, directory: Path) -> None:
    """`score` leaves the frame as it was."""
    frame = case.frame.copy(deep=True)
    case.fit().score(frame)
    pd.testing.assert_frame_equal(frame, case.frame, obj=f"{case.kind}: the scored frame")


def check_registry_round_trip(case: ScorerCase, directory: Path) -> None:
    """Registered, promoted and loaded back through the model registry, a scorer scores
    exactly as the one saved."""
    model = case.fit()
    registry = ModelRegistry(directory)
    version = registry.register(
        ModelVersion(model=case.kind, version=0, created_at=CREATED_AT, kind=case.kind),
        model.save,
    )
    registry.promote(case.kind, version.version, force=True)
    loaded = registry.load(case.kind, case.scorer.load)
    assert loaded is not None, f"{case.kind}: the registry could not load it"
    np.testing.assert_array_equal(
        loaded[1].score(case.frame), model.score(case.frame), err_msg=f"{case.kind}: reloaded"
    )


def scorer_checks() -> tuple[ScorerCheck, ...]:
    """Every check a scorer must pass."""
    return (
        check_scores_one_float_per_row,
        check_deterministic_under_a_seed,
        check_inputs_not_mutated,
        check_registry_round_trip,
    )
