"""Every scorer passes every scorer check (a new scorer is checked by adding it to
`models.scorer.scorer_kinds` and a case here), and the checks catch what they are for."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from touchpoint.checks.scorers import (
    ScorerCase,
    ScorerCheck,
    check_deterministic_under_a_seed,
    check_inputs_not_mutated,
    scorer_checks,
)
from touchpoint.models.labels import LabelledFrame, TimeSplit
from touchpoint.models.lifetime.bgnbd import BgNbdModel
from touchpoint.models.lifetime.gamma_gamma import GammaGammaModel
from touchpoint.models.lifetime.pareto_nbd import ParetoNbdModel
from touchpoint.models.lifetime.summary import CustomerSummary
from touchpoint.models.propensity import PropensityModel, PropensityParams
from touchpoint.models.scorer import scorer_kinds

FEATURES = ("views_7d", "frequency", "noise")


def planted(n: int, seed: int) -> LabelledFrame:
    """P(buy) = sigmoid(-2 + 0.6 views_7d): enough of both classes for a small fit."""
    rng = np.random.default_rng(seed)
    views = rng.poisson(3, n).astype(float)
    labels = (rng.random(n) < 1 / (1 + np.exp(2 - 0.6 * views))).astype(np.int8)
    frame = pd.DataFrame(
        {"views_7d": views, "frequency": rng.poisson(1, n), "noise": rng.normal(size=n)}
    )
    return LabelledFrame(frame, labels)


@cache
def summary() -> CustomerSummary:
    """People who buy at a gamma-distributed rate and stop with a beta-distributed chance
    after each purchase (BG/NBD's story), each purchase worth a gamma amount."""
    rng = np.random.default_rng(3)
    people = 200
    rates = rng.gamma(0.8, 1 / 4.0, people)
    drop = rng.beta(1.0, 3.0, people)
    age = rng.uniform(20.0, 40.0, people)
    frequency, recency = np.zeros(people), np.zeros(people)
    for person in range(people):
        now = 0.0
        while True:
            now += rng.exponential(1.0 / rates[person])
            if now > age[person]:
                break
            frequency[person] += 1
            recency[person] = now
            if rng.random() < drop[person]:
                break
    spend: npt.NDArray[np.float64] = np.where(frequency > 0, rng.gamma(6.0, 5.0, people), 0.0)
    ids = np.array([f"p{n:04d}" for n in range(people)], dtype=object)
    return CustomerSummary(ids, frequency, recency, age, spend, np.datetime64("2026-01-01"))


def history_frame() -> pd.DataFrame:
    data = summary()
    return pd.DataFrame(
        {
            "frequency": data.frequency[:50],
            "recency": data.recency[:50],
            "age": data.age[:50],
            "monetary_value": data.monetary_value[:50],
        }
    )


def cases() -> dict[str, ScorerCase]:
    propensity = ScorerCase(
        "propensity",
        PropensityModel,
        TimeSplit(planted(600, 1), planted(600, 2), timedelta(days=30)),
        planted(100, 3).features,
        {"features": FEATURES, "params": PropensityParams(max_rounds=60)},
    )
    return {
        "propensity": propensity,
        "bgnbd": ScorerCase("bgnbd", BgNbdModel, summary(), history_frame()),
        "pareto_nbd": ScorerCase("pareto_nbd", ParetoNbdModel, summary(), history_frame()),
        "gamma_gamma": ScorerCase("gamma_gamma", GammaGammaModel, summary(), history_frame()),
    }


def test_every_scorer_has_a_case() -> None:
    assert set(cases()) == set(scorer_kinds())
    for kind, case in cases().items():
        assert scorer_kinds()[kind] is case.scorer


@pytest.mark.parametrize("check", scorer_checks(), ids=lambda check: check.__name__)
@pytest.mark.parametrize("kind", sorted(scorer_kinds()))
def test_every_scorer_passes_every_check(kind: str, check: ScorerCheck, tmp_path: Path) -> None:
    check(cases()[kind], tmp_path)


class Fitted(BgNbdModel):
    """A BG/NBD model whose `fit` returns this class (to plant faults in `score`)."""

    @classmethod
    def fit(cls, data: CustomerSummary, /, *, seed: int = 0, penalty: float = 0.0) -> Any:
        fitted = BgNbdModel.fit(data, seed=seed, penalty=penalty)
        return cls(**{field.name: getattr(fitted, field.name) for field in fields(fitted)})


class Noisy(Fitted):
    """Adds fresh noise to every score."""

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        return super().score(frame) + np.random.default_rng().normal(size=len(frame))


class Scribbling(Fitted):
    """Writes its scores into the frame it scores."""

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        scores = super().score(frame)
        frame["score"] = scores
        return scores


@pytest.mark.parametrize(
    ("scorer", "check"),
    [(Noisy, check_deterministic_under_a_seed), (Scribbling, check_inputs_not_mutated)],
    ids=["noisy", "scribbling"],
)
def test_the_checks_catch_a_bad_scorer(scorer: Any, check: ScorerCheck, tmp_path: Path) -> None:
    case = ScorerCase("bad", scorer, summary(), history_frame())
    with pytest.raises(AssertionError):
        check(case, tmp_path)
