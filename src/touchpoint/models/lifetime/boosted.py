"""Expected purchases by BG/NBD or Pareto/NBD, corrected by gradient boosting, chosen by
validation inside the observed period.

The probabilistic models see each person as three numbers; gradient boosting can use
more of the history (inter-purchase regularity, recent activity, spend). It learns a
*multiplicative correction* of a base model: a LightGBM Poisson regression whose starting
score (offset) is the log of the base model's expected purchases, so the booster only
learns what the base model misses and each person's prediction is
`base expectation * exp(correction)`. Because the correction multiplies, it carries over
from the training window to the (longer) horizon asked for.

Training never looks beyond the end of observation `end`, and validation is forward in
time, as the prediction is:

1. `window = min(horizon, observed span / 3)`; rows at a cut are the features and the base
   model's offset computed from purchases up to the cut only (the base model is fitted
   on them), labelled with the purchase days in the `window` after the cut;
2. validation: boosters trained on the rows at `end - 2 window` are scored on the rows at
   `end - window` (labels up to `end`); that picks the base model (BG/NBD or Pareto/NBD),
   the tree size and the number of rounds (0 rounds = the base model alone) by mean
   Poisson deviance;
3. the chosen booster is retrained on the rows at `end - window`, the base model refitted
   on everything up to `end`, and the prediction uses features at `end` with the offset
   of the base model's expectation over the horizon: one window later again, as
   validated.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.lifetime.bgnbd import BgNbdModel, fit_bgnbd
from touchpoint.models.lifetime.features import FEATURES, purchase_features
from touchpoint.models.lifetime.pareto_nbd import ParetoNbdModel, fit_pareto_nbd
from touchpoint.models.lifetime.summary import (
    CustomerSummary,
    PurchaseDays,
    as_day,
    count_purchase_days,
    summarize,
)

if TYPE_CHECKING:
    import lightgbm

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BaseModel = BgNbdModel | ParetoNbdModel
BASE_MODELS = ("bgnbd", "pareto_nbd")
TREE_LEAVES = (4, 8)
ROUND_CHECKPOINTS = (0, 25, 50, 100, 200, 400)
LEARNING_RATE = 0.02
MIN_VALIDATION_PEOPLE = 20


def fit_base(kind: str, summary: CustomerSummary) -> BaseModel:
    """Fit the named base model (`bgnbd` or `pareto_nbd`) on a summary."""
    if kind == "bgnbd":
        return fit_bgnbd(summary)
    if kind == "pareto_nbd":
        return fit_pareto_nbd(summary)
    raise InvalidInput(f"unknown purchase model {kind!r}", details={"field": "model"})


def poisson_deviance(expected: FloatArray, actual: FloatArray) -> float:
    """Mean Poisson deviance of expected counts against observed counts (lower is
    better; a proper score for expectations, unlike absolute error)."""
    mu = np.maximum(expected, 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(actual > 0, actual * np.log(actual / mu), 0.0)
    return float(2.0 * np.mean(term - (actual - mu)))


@dataclass(frozen=True)
class ValidationResult:
    """Cross-validated Poisson deviance of one candidate (base model, leaves, rounds)."""

    base: str
    leaves: int
    rounds: int
    deviance: float


@dataclass(frozen=True)
class TrainingRows:
    """The rows at the cut: features, offsets (log base expectation over the window),
    labels, for one base model."""

    features: FloatArray
    offsets: FloatArray
    labels: FloatArray


def _booster_params(leaves: int, rows: int, seed: int) -> dict[str, Any]:
    return {
        "objective": "poisson",
        "learning_rate": LEARNING_RATE,
        "num_leaves": leaves,
        "min_data_in_leaf": max(20, rows // 50),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        # Threads cost more than they save on small tables (and this machine is shared).
        "num_threads": 1 if rows < 50_000 else 2,
        "force_col_wise": True,
        "verbose": -1,
    }


def _train(
    rows: TrainingRows, keep: npt.NDArray[np.intp], leaves: int, rounds: int, seed: int
) -> lightgbm.Booster:
    import lightgbm

    data = lightgbm.Dataset(
        rows.features[keep],
        rows.labels[keep],
        init_score=rows.offsets[keep],
        feature_name=list(FEATURES),
        free_raw_data=False,
    )
    return lightgbm.train(_booster_params(leaves, len(keep), seed), data, num_boost_round=rounds)


def rows_at(
    purchases: PurchaseDays, kind: str, cut: np.datetime64, window_days: int, unit_days: float
) -> TrainingRows:
    """Training rows at `cut` for base model `kind`: features and offsets from purchases
    up to the cut, labels = purchase days in the `window_days` after it. A base model that
    cannot be fitted at the cut raises `NotEnoughData`."""
    summary = summarize(purchases, cut, unit_days=unit_days)
    window = window_days / unit_days
    base = fit_base(kind, summary)
    expected = base.expected_purchases(window, summary.frequency, summary.recency, summary.age)
    labels = count_purchase_days(
        purchases, summary.person_ids, cut, cut + np.timedelta64(window_days, "D")
    )
    return TrainingRows(
        purchase_features(purchases, summary, base, window),
        np.log(np.maximum(expected, 1e-9)),
        labels,
    )


def validate_forward(
    earlier: TrainingRows, later: TrainingRows, base: str, *, seed: int
) -> list[ValidationResult]:
    """Poisson deviance on `later` of boosters trained on `earlier`, at every (leaves,
    rounds) checkpoint; rounds 0 is the base model alone."""
    results = [
        ValidationResult(
            base, TREE_LEAVES[0], 0, poisson_deviance(np.exp(later.offsets), later.labels)
        )
    ]
    if earlier.labels.sum() <= 0:
        return results
    everyone = np.arange(len(earlier.labels))
    for leaves in TREE_LEAVES:
        booster = _train(earlier, everyone, leaves, max(ROUND_CHECKPOINTS), seed)
        for rounds in ROUND_CHECKPOINTS[1:]:
            correction = booster.predict(later.features, num_iteration=rounds, raw_score=True)
            predicted = np.exp(later.offsets + correction)
            results.append(
                ValidationResult(base, leaves, rounds, poisson_deviance(predicted, later.labels))
            )
    return results


@dataclass(frozen=True)
class PurchasePrediction:
    """Per person (sorted ids, as in `summary`): expected purchase days over the horizon
    and the probability of being still active at the end of observation."""

    summary: CustomerSummary
    expected_purchases: FloatArray
    p_alive: FloatArray
    horizon: float

    @property
    def person_ids(self) -> npt.NDArray[np.object_]:
        return self.summary.person_ids


def predict_with_base(
    base: BaseModel, summary: CustomerSummary, horizon: float
) -> PurchasePrediction:
    """A base model's expectations over `horizon` units for the people of `summary`."""
    expected = base.expected_purchases(horizon, summary.frequency, summary.recency, summary.age)
    alive = base.p_alive(summary.frequency, summary.recency, summary.age)
    return PurchasePrediction(summary, expected, alive, horizon)


@dataclass(frozen=True)
class BoostedPurchaseModel:
    """A base model fitted up to `end` and, when validation said it helps, a LightGBM
    correction (text model) with the tree size and rounds validation chose. `window` is
    the training window (units); `validation` lists every candidate's deviance."""

    base: BaseModel
    booster_text: str | None
    window: float
    leaves: int
    rounds: int
    end: np.datetime64
    validation: tuple[ValidationResult, ...] = ()

    @property
    def description(self) -> str:
        """What was chosen, for logs and reports: `pareto_nbd` or `bgnbd + 100 rounds`."""
        name = self.base.to_dict()["model"]
        if self.booster_text is None:
            return str(name)
        return f"{name} + boosting ({self.rounds} rounds of {self.leaves}-leaf trees)"

    def predict(self, purchases: PurchaseDays, horizon: float) -> PurchasePrediction:
        """Expected purchases over `horizon` units after `end` for everyone who bought by
        `end`: the base expectation times the booster's correction."""
        summary = summarize(purchases, self.end, unit_days=self.base.unit_days)
        prediction = predict_with_base(self.base, summary, horizon)
        if self.booster_text is None:
            return prediction
        import lightgbm

        booster = lightgbm.Booster(model_str=self.booster_text)
        features = purchase_features(purchases, summary, self.base, self.window)
        correction = booster.predict(features, raw_score=True)
        expected = prediction.expected_purchases * np.exp(correction)
        return PurchasePrediction(summary, expected, prediction.p_alive, horizon)

    def save(self, directory: Path) -> None:
        """Write `model.json` (base model, choices, validation) and, when there is one,
        `booster.txt` (LightGBM's text model) into `directory`; never pickle."""
        directory.mkdir(parents=True, exist_ok=True)
        description = {
            "model": "boosted_purchases",
            "base": self.base.to_dict(),
            "window": self.window,
            "leaves": self.leaves,
            "rounds": self.rounds,
            "end": str(self.end),
            "features": list(FEATURES),
            "validation": [asdict(result) for result in self.validation],
        }
        (directory / "model.json").write_text(json.dumps(description, indent=2), "utf-8")
        if self.booster_text is not None:
            (directory / "booster.txt").write_text(self.booster_text, "utf-8")

    @classmethod
    def load(cls, directory: Path) -> BoostedPurchaseModel:
        """Read a model `save` wrote; a file of another kind or features is `InvalidInput`."""
        data = json.loads((directory / "model.json").read_text("utf-8"))
        if data.get("model") != "boosted_purchases" or data.get("features") != list(FEATURES):
            raise InvalidInput(
                f"{directory} holds no boosted purchase model of this version",
                details={"field": "model"},
            )
        kind = data["base"].get("model")
        base: BaseModel = (
            BgNbdModel.from_dict(data["base"])
            if kind == "bgnbd"
            else ParetoNbdModel.from_dict(data["base"])
        )
        booster_file = directory / "booster.txt"
        return cls(
            base,
            booster_file.read_text("utf-8") if booster_file.exists() else None,
            float(data["window"]),
            int(data["leaves"]),
            int(data["rounds"]),
            as_day(data["end"]),
            tuple(ValidationResult(**result) for result in data["validation"]),
        )


def fit_boosted(
    purchases: PurchaseDays,
    *,
    horizon: float,
    end: np.datetime64 | str | None = None,
    unit_days: float = 7.0,
    bases: tuple[str, ...] = BASE_MODELS,
    seed: int = 0,
) -> BoostedPurchaseModel:
    """Choose and fit the purchase model for a `horizon` (units) after `end` (default: the
    last purchase day), by forward validation inside the observed period (module
    docstring). Same purchases and seed: the same model. When the history is too short or
    too thin for the validation rows, the first of `bases` is used alone; when even that
    cannot be fitted: `NotEnoughData`."""
    if horizon <= 0:
        raise InvalidInput("the horizon must be positive", details={"field": "horizon"})
    end_day = purchases.last_day if end is None else as_day(end)
    full = summarize(purchases, end_day, unit_days=unit_days)
    if len(full) == 0:
        raise NotEnoughData("no purchases on or before the end of observation")
    span_days = int((end_day - purchases.until(end_day).days.min()).astype(np.int64))
    window_days = round(min(horizon * unit_days, span_days / 3))
    window = max(window_days, 1) / unit_days
    results: list[ValidationResult] = []
    latest_rows: dict[str, TrainingRows] = {}
    if window_days >= 1:
        later_cut = end_day - np.timedelta64(window_days, "D")
        earlier_cut = later_cut - np.timedelta64(window_days, "D")
        for kind in bases:
            try:
                later = rows_at(purchases, kind, later_cut, window_days, unit_days)
            except NotEnoughData as reason:
                logger.info("no validation of %s: %s", kind, reason.reason)
                continue
            if len(later.labels) < MIN_VALIDATION_PEOPLE or later.labels.sum() <= 0:
                continue
            latest_rows[kind] = later
            try:
                earlier = rows_at(purchases, kind, earlier_cut, window_days, unit_days)
            except NotEnoughData as reason:
                logger.info("%s alone, no boosting: %s", kind, reason.reason)
                earlier = TrainingRows(later.features[:0], later.offsets[:0], later.labels[:0])
            results += validate_forward(earlier, later, kind, seed=seed)
    if not results:
        logger.warning("history too short for validation; using %s alone", bases[0])
        return BoostedPurchaseModel(fit_base(bases[0], full), None, window, 0, 0, end_day)
    best = min(results, key=lambda result: result.deviance)
    logger.info(
        "validation chose %s, %d leaves, %d rounds (deviance %.4f)",
        best.base,
        best.leaves,
        best.rounds,
        best.deviance,
    )
    booster_text = None
    if best.rounds > 0:
        rows = latest_rows[best.base]
        everyone = np.arange(len(rows.labels))
        booster = _train(rows, everyone, best.leaves, best.rounds, seed)
        booster_text = str(booster.model_to_string())
    base = fit_base(best.base, full)
    return BoostedPurchaseModel(
        base, booster_text, window, best.leaves, best.rounds, end_day, tuple(results)
    )
