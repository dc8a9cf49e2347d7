"""Purchase propensity and churn: LightGBM on the person feature table, calibrated.

Both are the same model on different labels: "orders in the next `horizon`" (propensity)
and "no order, or no activity at all, in the next `horizon`" among people active before
the cutoff (churn). The split is by time, never by row:

- `time_split` and the label builders (`touchpoint.models.labels`): train on the feature
  table as of `end - 2 * horizon`, validate on it as of `end - horizon`, each labelled with
  the horizon after its cutoff.
- `train_propensity(train, validation)`: LightGBM (deterministic: `seed`,
  `deterministic=True`, `force_row_wise=True`, `num_threads` <= 2), early stopping on a
  stratified slice of the training frame.
- Calibration is cross-fitted on the training frame: the frame is cut into
  `calibration_folds` stratified folds, a model fitted on the others scores each fold, and
  isotonic regression (or Platt scaling) maps those out-of-fold scores to the observed
  outcomes; the final model, fitted on the whole training frame, uses that map. Why: the
  validation frame stays untouched and every one of its rows reports (calibrating on it
  would make its calibration figures flatter themselves, and halving it would halve the
  report), while every training row serves calibration with a score from a model that
  did not see it. The cost: the map is learned at the earlier cutoff, so a change in the
  base rate between cutoffs shows as calibration error in the report, as it would in use.
- The report (validation only): AUC, Brier score, log loss, expected calibration error and
  a reliability table, beside the same figures for the uncalibrated model and for the
  training base rate predicted for everyone. The map and the figures are in
  `touchpoint.models.calibration`.

This module holds what is LightGBM-specific.

Too few positives or negatives (below `min_class_count` in either frame) is `NotEnoughData`.
Saved as LightGBM's text model plus JSON (calibration, features, report), never pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.calibration import (
    Calibration,
    ReliabilityBin,
    auc,
    brier_score,
    fit_calibration,
    log_loss,
    reliability_table,
    sigmoid,
)
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.frames import numeric_column
from touchpoint.models.labels import LabelledFrame, TimeSplit
from touchpoint.warehouse.features import NUMERIC_PERSON_FEATURES

if TYPE_CHECKING:
    import lightgbm


logger = logging.getLogger(__name__)

# Every numeric column of the person feature table (warehouse.features).
DEFAULT_PROPENSITY_FEATURES: tuple[str, ...] = NUMERIC_PERSON_FEATURES
MODEL_FILE = "model.txt"
METADATA_FILE = "propensity.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PropensityParams:
    """Training knobs; the defaults suit feature tables from hundreds to millions of rows."""

    num_leaves: int = 15
    learning_rate: float = 0.05
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    min_child_samples: int = 20
    l2_regularization: float = 1.0
    early_stopping_share: float = 0.2
    calibration: Literal["isotonic", "platt"] = "isotonic"
    calibration_folds: int = 3
    num_threads: int = 2
    min_class_count: int = 20
    reliability_bins: int = 10
    probability_floor: float = 1e-4


@dataclass(frozen=True)
class PropensityReport:
    """Validation figures of a trained model, beside the uncalibrated model's and those of
    predicting the training base rate for everyone (`*_base_rate`)."""

    target: str
    train_rows: int
    train_positives: int
    validation_rows: int
    validation_positives: int
    train_as_of: str | None
    validation_as_of: str | None
    best_iteration: int
    calibration: str
    auc: float
    auc_uncalibrated: float
    brier: float
    brier_uncalibrated: float
    brier_base_rate: float
    log_loss: float
    log_loss_uncalibrated: float
    log_loss_base_rate: float
    expected_calibration_error: float
    expected_calibration_error_uncalibrated: float
    reliability: tuple[ReliabilityBin, ...]
    feature_importance: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what the registry stores as metrics)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PropensityReport:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["reliability"] = tuple(ReliabilityBin(**item) for item in data["reliability"])
        values["feature_importance"] = tuple(
            (str(name), float(gain)) for name, gain in data["feature_importance"]
        )
        return cls(**values)


@dataclass(frozen=True)
class PropensityModel:
    """A trained propensity or churn model: LightGBM's text model, the calibration and the
    feature names it reads; `score` returns calibrated probabilities. A `Scorer`
    (`touchpoint.models.scorer`): `fit` is `train_propensity` on a `TimeSplit`."""

    target: str
    feature_names: tuple[str, ...]
    model_text: str
    calibration: Calibration
    report: PropensityReport | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    _booster: lightgbm.Booster = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import lightgbm

        object.__setattr__(self, "_booster", lightgbm.Booster(model_str=self.model_text))

    def predict_raw(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Uncalibrated scores (log-odds) of every row."""
        threads = int(self.params.get("num_threads", 2))
        return _raw_scores(self._booster, _matrix(frame, self.feature_names), threads)

    @classmethod
    def fit(
        cls,
        data: TimeSplit,
        /,
        *,
        seed: int = 0,
        target: str = "purchase",
        features: Sequence[str] = DEFAULT_PROPENSITY_FEATURES,
        params: PropensityParams | None = None,
    ) -> PropensityModel:
        """`train_propensity` on the split's training and validation frames."""
        return train_propensity(
            data.train, data.validation, target=target, features=features, params=params, seed=seed
        )

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of every row (reads `feature_names`; missing feature
        values are allowed)."""
        return self.calibration.apply(self.predict_raw(frame))

    def save(self, directory: Path) -> None:
        """Write `model.txt` (LightGBM) and `propensity.json` into `directory`, creating it."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_text(self.model_text)
        document = {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "feature_names": list(self.feature_names),
            "calibration": asdict(self.calibration),
            "params": dict(self.params),
            "report": self.report.to_dict() if self.report is not None else None,
        }
        (directory / METADATA_FILE).write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> PropensityModel:
        """Read a model written by `save`; it predicts exactly as the saved one."""
        document = json.loads((directory / METADATA_FILE).read_text())
        if document.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(
                f"unsupported propensity model format {document.get('format_version')!r}",
                details={"field": "format_version"},
            )
        calibration = dict(document["calibration"])
        calibration["knots_x"] = tuple(calibration["knots_x"])
        calibration["knots_y"] = tuple(calibration["knots_y"])
        report = document.get("report")
        return cls(
            target=document["target"],
            feature_names=tuple(document["feature_names"]),
            model_text=(directory / MODEL_FILE).read_text(),
            calibration=Calibration(**calibration),
            report=PropensityReport.from_dict(report) if report else None,
            params=document["params"],
        )


def train_propensity(
    train: LabelledFrame,
    validation: LabelledFrame,
    *,
    target: str = "purchase",
    features: Sequence[str] = DEFAULT_PROPENSITY_FEATURES,
    params: PropensityParams | None = None,
    seed: int = 0,
) -> PropensityModel:
    """Fit, calibrate (cross-fitted on `train`) and report on `validation`; see the module
    docstring. `NotEnoughData` when either frame has fewer than `min_class_count` positives
    or negatives."""
    knobs = params or PropensityParams()
    if not 1 <= knobs.num_threads <= 2:
        raise InvalidInput("num_threads must be 1 or 2", details={"field": "num_threads"})
    if knobs.calibration_folds < 2:
        raise InvalidInput("calibration_folds must be at least 2", details={"field": "folds"})
    names = tuple(features)
    x_train, y_train = _matrix(train.features, names), train.labels.astype(np.int8)
    x_valid, y_valid = _matrix(validation.features, names), validation.labels.astype(np.int8)
    _check_classes(y_train, "training", target, knobs.min_class_count)
    _check_classes(y_valid, "validation", target, knobs.min_class_count)

    rng = np.random.default_rng(seed)
    folds = _stratified_folds(y_train, knobs.calibration_folds, rng)
    out_of_fold = np.zeros(len(y_train))
    for fold in range(knobs.calibration_folds):
        inside = folds != fold
        booster = _fit_booster(x_train[inside], y_train[inside], knobs, seed, rng, names)
        out_of_fold[~inside] = _raw_scores(booster, x_train[~inside], knobs.num_threads)
    calibration = fit_calibration(
        out_of_fold, y_train, method=knobs.calibration, floor=knobs.probability_floor
    )

    final = _fit_booster(x_train, y_train, knobs, seed, rng, names)
    best_iteration = int(final.best_iteration or final.current_iteration())
    model = PropensityModel(
        target=target,
        feature_names=names,
        model_text=final.model_to_string(num_iteration=best_iteration),
        calibration=calibration,
        params=asdict(knobs) | {"seed": seed},
    )
    raw = _raw_scores(model._booster, x_valid, knobs.num_threads)
    report = _report(
        model, raw, y_valid, y_train, train, validation, best_iteration, knobs, final, names
    )
    logger.info(
        "%s model: validation AUC %.3f, Brier %.4f (base rate %.4f), ECE %.4f",
        target,
        report.auc,
        report.brier,
        report.brier_base_rate,
        report.expected_calibration_error,
    )
    return replace(model, report=report)


def _report(
    model: PropensityModel,
    raw: npt.NDArray[np.float64],
    y_valid: npt.NDArray[np.int8],
    y_train: npt.NDArray[np.int8],
    train: LabelledFrame,
    validation: LabelledFrame,
    best_iteration: int,
    knobs: PropensityParams,
    booster: lightgbm.Booster,
    names: tuple[str, ...],
) -> PropensityReport:
    calibrated = model.calibration.apply(raw)
    uncalibrated = sigmoid(raw)
    base_rate = np.full(len(y_valid), float(y_train.mean()))
    reliability, ece = reliability_table(calibrated, y_valid, knobs.reliability_bins)
    _, ece_uncalibrated = reliability_table(uncalibrated, y_valid, knobs.reliability_bins)
    gains = booster.feature_importance(importance_type="gain", iteration=best_iteration)
    importance = sorted(zip(names, (float(g) for g in gains), strict=True), key=lambda p: -p[1])
    return PropensityReport(
        target=model.target,
        train_rows=len(y_train),
        train_positives=int(y_train.sum()),
        validation_rows=len(y_valid),
        validation_positives=int(y_valid.sum()),
        train_as_of=train.as_of.isoformat() if train.as_of else None,
        validation_as_of=validation.as_of.isoformat() if validation.as_of else None,
        best_iteration=best_iteration,
        calibration=knobs.calibration,
        auc=auc(calibrated, y_valid),
        auc_uncalibrated=auc(raw, y_valid),
        brier=brier_score(calibrated, y_valid),
        brier_uncalibrated=brier_score(uncalibrated, y_valid),
        brier_base_rate=brier_score(base_rate, y_valid),
        log_loss=log_loss(calibrated, y_valid),
        log_loss_uncalibrated=log_loss(uncalibrated, y_valid),
        log_loss_base_rate=log_loss(base_rate, y_valid),
        expected_calibration_error=ece,
        expected_calibration_error_uncalibrated=ece_uncalibrated,
        reliability=reliability,
        feature_importance=tuple(importance),
    )


def _fit_booster(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int8],
    knobs: PropensityParams,
    seed: int,
    rng: np.random.Generator,
    names: tuple[str, ...],
) -> lightgbm.Booster:
    """LightGBM on `x`, early-stopped on a stratified `early_stopping_share` slice of it."""
    import lightgbm

    stopping = _stratified_folds(y, 2, rng, first_share=knobs.early_stopping_share) == 0
    settings = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": knobs.learning_rate,
        "num_leaves": knobs.num_leaves,
        "min_data_in_leaf": knobs.min_child_samples,
        "lambda_l2": knobs.l2_regularization,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": knobs.num_threads,
        "verbosity": -1,
    }
    fit_set = lightgbm.Dataset(
        x[~stopping], label=y[~stopping], feature_name=list(names), params={"verbosity": -1}
    )
    stop_set = lightgbm.Dataset(x[stopping], label=y[stopping], reference=fit_set)
    return lightgbm.train(
        settings,
        fit_set,
        num_boost_round=knobs.max_rounds,
        valid_sets=[stop_set],
        callbacks=[lightgbm.early_stopping(knobs.early_stopping_rounds, verbose=False)],
    )


def _stratified_folds(
    labels: npt.NDArray[np.int8],
    folds: int,
    rng: np.random.Generator,
    *,
    first_share: float | None = None,
) -> npt.NDArray[np.int64]:
    """A fold number per row, each class spread evenly (or, with `first_share`, fold 0
    taking that share of each class and fold 1 the rest)."""
    assignment = np.zeros(len(labels), dtype=np.int64)
    for value in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == value))
        if first_share is None:
            assignment[rows] = np.arange(len(rows)) % folds
        else:
            cut = max(1, round(len(rows) * first_share))
            assignment[rows] = np.where(np.arange(len(rows)) < cut, 0, 1)
    return assignment


def _check_classes(labels: npt.NDArray[np.int8], frame: str, target: str, minimum: int) -> None:
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives < minimum or negatives < minimum:
        raise NotEnoughData(
            f"{target}: the {frame} frame has {positives} positive and {negatives} negative "
            f"rows; at least {minimum} of each are needed"
        )


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> npt.NDArray[np.float64]:
    if not names:
        raise InvalidInput("at least one feature is needed", details={"field": "features"})
    return np.column_stack([numeric_column(frame, name) for name in names])


def _raw_scores(
    booster: lightgbm.Booster, matrix: npt.NDArray[np.float64], threads: int
) -> npt.NDArray[np.float64]:
    scores = booster.predict(matrix, raw_score=True, num_threads=threads)
    return np.asarray(scores, dtype=np.float64)
