"""Purchase propensity and churn: LightGBM on the person feature table, calibrated.

Both are the same model on different labels: "orders in the next `horizon`" (propensity)
and "no order, or no activity at all, in the next `horizon`" among people active before
the cutoff (churn). The split is by time, never by row:

- `time_split(features_at, labels_at, end=..., horizon=...)`: the training frame is the
  feature table as of `end - 2 * horizon` labelled with what happened in the following
  horizon, the validation frame the table as of `end - horizon` labelled with the last
  horizon. `purchase_labels`, `churn_labels` and `churn_population` build the labels and
  the churn population from two snapshots of the feature table, so `features_at` alone is
  enough.
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
  training base rate predicted for everyone.

Too few positives or negatives (below `min_class_count` in either frame) is `NotEnoughData`.
Saved as LightGBM's text model plus JSON (calibration, features, report), never pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData

if TYPE_CHECKING:
    import lightgbm

logger = logging.getLogger(__name__)

DEFAULT_PROPENSITY_FEATURES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "average_order_value",
    "days_since_last_order",
    "orders_30d",
    "orders_90d",
    "revenue_30d",
    "revenue_90d",
    "events_7d",
    "events_30d",
    "views_7d",
    "views_30d",
    "cart_adds_30d",
    "distinct_items_30d",
    "active_days_30d",
)
MODEL_FILE = "model.txt"
METADATA_FILE = "propensity.json"
FORMAT_VERSION = 1

FeaturesAt = Callable[[datetime], pd.DataFrame]
LabelsAt = Callable[[datetime, timedelta], pd.Series]
Population = Callable[[pd.DataFrame], npt.NDArray[np.bool_]]
ChurnBasis = Literal["orders", "activity"]


@dataclass(frozen=True)
class LabelledFrame:
    """Feature rows and their 0/1 labels, row for row, as of one cutoff."""

    features: pd.DataFrame
    labels: npt.NDArray[np.int8]
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.features):
            raise InvalidInput(
                f"{len(self.labels)} labels for {len(self.features)} rows",
                details={"field": "labels"},
            )

    @classmethod
    def from_labels(
        cls,
        features: pd.DataFrame,
        labels: pd.Series,
        *,
        id_column: str = "profile_id",
        as_of: datetime | None = None,
    ) -> LabelledFrame:
        """Align labels indexed by person id with the feature rows; a person absent from
        `labels` is a negative (a labels function may list only the positives)."""
        if id_column not in features.columns:
            raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
        if labels.index.has_duplicates:
            raise InvalidInput("labels list a person twice", details={"field": "labels"})
        aligned = labels.reindex(features[id_column].to_numpy()).fillna(0)
        values = pd.to_numeric(aligned, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isin(values, (0.0, 1.0)).all():
            raise InvalidInput("labels must be 0/1 or booleans", details={"field": "labels"})
        return cls(features.reset_index(drop=True), values.astype(np.int8), as_of)


@dataclass(frozen=True)
class TimeSplit:
    """Training and validation frames at two cutoffs one horizon apart."""

    train: LabelledFrame
    validation: LabelledFrame
    horizon: timedelta


def time_split(
    features_at: FeaturesAt,
    labels_at: LabelsAt,
    *,
    end: datetime,
    horizon: timedelta,
    population: Population | None = None,
    id_column: str = "profile_id",
) -> TimeSplit:
    """Train at `end - 2 * horizon`, validate at `end - horizon`, each labelled with the
    horizon after its cutoff; `population` keeps only the rows it accepts (the churn
    population). `features_at` is called for each cutoff (and by snapshot labels again):
    wrap it in `functools.lru_cache` when it is expensive."""
    if horizon <= timedelta(0):
        raise InvalidInput("horizon must be positive", details={"field": "horizon"})
    frames = []
    for as_of in (end - 2 * horizon, end - horizon):
        features = features_at(as_of)
        if population is not None:
            features = features[np.asarray(population(features), dtype=bool)]
        labels = labels_at(as_of, horizon)
        frames.append(LabelledFrame.from_labels(features, labels, id_column=id_column, as_of=as_of))
    return TimeSplit(train=frames[0], validation=frames[1], horizon=horizon)


def purchase_labels(
    features_at: FeaturesAt, *, id_column: str = "profile_id", frequency: str = "frequency"
) -> LabelsAt:
    """Labels from two snapshots: 1 when a person's order count grew between `as_of` and
    `as_of + horizon`."""

    def labels_at(as_of: datetime, horizon: timedelta) -> pd.Series:
        before = _by_person(features_at(as_of), id_column, frequency)
        after = _by_person(features_at(as_of + horizon), id_column, frequency)
        grown = after.fillna(0) - before.reindex(after.index).fillna(0)
        return (grown > 0).astype(np.int8)

    return labels_at


def churn_labels(
    features_at: FeaturesAt,
    *,
    basis: ChurnBasis = "orders",
    id_column: str = "profile_id",
    frequency: str = "frequency",
    recency_days: str = "recency_days",
) -> LabelsAt:
    """Labels from two snapshots: 1 when a person placed no order (`basis="orders"`) or had
    no event at all (`basis="activity"`) between `as_of` and `as_of + horizon`."""
    ordered = purchase_labels(features_at, id_column=id_column, frequency=frequency)

    def labels_at(as_of: datetime, horizon: timedelta) -> pd.Series:
        if basis == "orders":
            return (1 - ordered(as_of, horizon)).astype(np.int8)
        after = _by_person(features_at(as_of + horizon), id_column, recency_days)
        active = after <= horizon / timedelta(days=1)
        return (~active).astype(np.int8)

    return labels_at


def churn_population(
    *,
    basis: ChurnBasis = "orders",
    active_within_days: float | None = None,
    frequency: str = "frequency",
    days_since_last_order: str = "days_since_last_order",
    recency_days: str = "recency_days",
) -> Population:
    """Who can churn: buyers (`basis="orders"`) or everyone seen (`"activity"`), optionally
    only those whose last order (or event) is within `active_within_days` of the cutoff."""

    def accepts(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(frame), dtype=bool)
        if basis == "orders":
            keep &= np.nan_to_num(_column(frame, frequency), nan=0.0) > 0
        if active_within_days is not None:
            days = _column(frame, days_since_last_order if basis == "orders" else recency_days)
            keep &= np.nan_to_num(days, nan=np.inf) <= active_within_days
        return keep

    return accepts


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
class Calibration:
    """Raw LightGBM scores (log-odds) to probabilities: isotonic (`knots_x` -> `knots_y`,
    linear between knots, flat beyond) or Platt (`sigmoid(slope * score + intercept)`),
    clipped to [`floor`, 1 - `floor`] so no probability is exactly 0 or 1."""

    method: Literal["isotonic", "platt"]
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0
    floor: float = 1e-4

    def apply(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of raw scores."""
        if self.method == "isotonic":
            probabilities = np.interp(scores, self.knots_x, self.knots_y)
        else:
            probabilities = _sigmoid(self.slope * scores + self.intercept)
        return np.clip(probabilities, self.floor, 1.0 - self.floor)


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of predicted probability on validation: its range, rows, mean prediction and
    the observed positive rate."""

    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


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
    feature names it reads; `predict` returns calibrated probabilities."""

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

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of every row (missing feature values are allowed)."""
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
    calibration = _fit_calibration(out_of_fold, y_train, knobs)

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


def reliability_table(
    probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], bins: int = 10
) -> tuple[tuple[ReliabilityBin, ...], float]:
    """Equal-width bins of predicted probability (empty bins left out) and the expected
    calibration error: the row-weighted mean gap between mean prediction and observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    positions = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    table = []
    error = 0.0
    for index in range(bins):
        inside = positions == index
        count = int(inside.sum())
        if count == 0:
            continue
        predicted = float(probabilities[inside].mean())
        observed = float(labels[inside].mean())
        error += count / len(labels) * abs(predicted - observed)
        table.append(
            ReliabilityBin(
                round(float(edges[index]), 10),
                round(float(edges[index + 1]), 10),
                count,
                predicted,
                observed,
            )
        )
    return tuple(table), error


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
    from sklearn.metrics import roc_auc_score

    calibrated = model.calibration.apply(raw)
    uncalibrated = _sigmoid(raw)
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
        auc=float(roc_auc_score(y_valid, calibrated)),
        auc_uncalibrated=float(roc_auc_score(y_valid, raw)),
        brier=_brier(calibrated, y_valid),
        brier_uncalibrated=_brier(uncalibrated, y_valid),
        brier_base_rate=_brier(base_rate, y_valid),
        log_loss=_log_loss(calibrated, y_valid),
        log_loss_uncalibrated=_log_loss(uncalibrated, y_valid),
        log_loss_base_rate=_log_loss(base_rate, y_valid),
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


def _fit_calibration(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], knobs: PropensityParams
) -> Calibration:
    if knobs.calibration == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        isotonic.fit(scores, labels.astype(np.float64))
        return Calibration(
            method="isotonic",
            knots_x=tuple(float(v) for v in isotonic.X_thresholds_),
            knots_y=tuple(float(v) for v in isotonic.y_thresholds_),
            floor=knobs.probability_floor,
        )
    slope, intercept = _platt(scores, labels)
    return Calibration(
        method="platt", slope=slope, intercept=intercept, floor=knobs.probability_floor
    )


def _platt(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling by Newton's method on the log loss, with Platt's smoothed targets
    ((positives + 1) / (positives + 2) and 1 / (negatives + 2)) so it never overfits to 0/1."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    design = np.column_stack([scores, np.ones(len(scores))])
    weights = np.zeros(2)
    for _ in range(100):
        predicted = _sigmoid(design @ weights)
        gradient = design.T @ (predicted - targets)
        curvature = design.T @ (design * (predicted * (1 - predicted))[:, None])
        step = np.linalg.solve(curvature + 1e-9 * np.eye(2), gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(weights[0]), float(weights[1])


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


def _column(frame: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    if column not in frame.columns:
        raise InvalidInput(f"column {column!r} is missing", details={"field": column})
    series = frame[column]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise InvalidInput(
            f"column {column!r} must be numeric, not {series.dtype}", details={"field": column}
        )
    values: npt.NDArray[np.float64] = series.astype("float64").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return values


def _by_person(frame: pd.DataFrame, id_column: str, column: str) -> pd.Series:
    """One numeric column of a snapshot as float64, indexed by person id."""
    if id_column not in frame.columns:
        raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
    return pd.Series(_column(frame, column), index=frame[id_column].to_numpy())


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> npt.NDArray[np.float64]:
    if not names:
        raise InvalidInput("at least one feature is needed", details={"field": "features"})
    return np.column_stack([_column(frame, name) for name in names])


def _raw_scores(
    booster: lightgbm.Booster, matrix: npt.NDArray[np.float64], threads: int
) -> npt.NDArray[np.float64]:
    scores = booster.predict(matrix, raw_score=True, num_threads=threads)
    return np.asarray(scores, dtype=np.float64)


def _sigmoid(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * values)), dtype=np.float64)


def _brier(probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    return float(np.mean((probabilities - labels) ** 2))


def _log_loss(probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    clipped = np.clip(probabilities, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
