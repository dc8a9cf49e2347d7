"""Score jobs: purchase propensity and churn (LightGBM), expected purchases and lifetime
value (BG/NBD or Pareto/NBD with Gamma-Gamma), written to `profile.scores`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from touchpoint.models.errors import NotEnoughData
from touchpoint.models.jobs.common import people_of
from touchpoint.models.registry import ModelVersion

if TYPE_CHECKING:
    from touchpoint.models.training import Fitted, Trainer, TrainingData


def _classifier(trainer: Trainer, data: TrainingData, target: str) -> Fitted:
    """Purchase propensity or churn over the models' horizon: LightGBM trained at
    `as_of - 2h` and validated at `as_of - h` (h the horizon), calibrated; the score
    `<target>_<h>d` for everyone in the feature table as of now."""
    import numpy as np

    from touchpoint.models.labels import (
        churn_labels,
        churn_population,
        purchase_labels,
        time_split,
    )
    from touchpoint.models.propensity import PropensityModel, train_propensity
    from touchpoint.models.training import Fitted

    days = trainer.config.models.horizon_days
    window = timedelta(days=days)
    frame = people_of(data)
    if target == "purchase":
        labels, population, score = purchase_labels(data.features_at), None, f"propensity_{days}d"
    else:
        labels = churn_labels(data.features_at)
        population, score = churn_population(), f"churn_{days}d"
    split = time_split(
        data.features_at, labels, end=data.as_of, horizon=window, population=population
    )
    model = train_propensity(split.train, split.validation, target=target, seed=trainer.seed)
    assert model.report is not None
    report = model.report
    metrics = {
        "auc": report.auc,
        "brier": report.brier,
        "brier_base_rate": report.brier_base_rate,
        "log_loss": report.log_loss,
        "expected_calibration_error": report.expected_calibration_error,
        "train_rows": float(report.train_rows),
        "validation_rows": float(report.validation_rows),
        "validation_positives": float(report.validation_positives),
    }
    scored = frame
    if population is not None:
        scored = frame[np.asarray(population(frame), dtype=bool)]
    version = trainer.new_version(
        "propensity" if target == "purchase" else "churn",
        "lightgbm",
        data,
        window={
            "train_as_of": data.as_of - 2 * window,
            "validation_as_of": data.as_of - window,
        },
        params={**dict(model.params), "horizon_days": days, "score": score},
        metrics=metrics,
        metric="auc",
        rows=report.train_rows,
    )

    def apply(stored: ModelVersion) -> dict[str, int]:
        loaded = PropensityModel.load(trainer.registry.path(stored.model, stored.version))
        values = loaded.score(scored) if len(scored) else np.zeros(0)
        scores = {
            str(pid): {score: float(value)}
            for pid, value in zip(scored["profile_id"], values, strict=True)
        }
        return trainer.counts(trainer.outputs.write_scores(scores))

    return Fitted(version, model.save, apply, frame)


def train_propensity_job(trainer: Trainer, data: TrainingData) -> Fitted:
    """Purchase propensity: the probability of an order within the horizon."""
    return _classifier(trainer, data, "purchase")


def train_churn(trainer: Trainer, data: TrainingData) -> Fitted:
    """Churn: the probability that a buyer places no order within the horizon."""
    return _classifier(trainer, data, "churn")


def train_lifetime(trainer: Trainer, data: TrainingData) -> Fitted:
    """Expected purchases, probability of being active and expected spend over the horizon
    (BG/NBD or Pareto/NBD with a boosted correction, chosen by forward validation; Gamma-
    Gamma for spend). Validated by fitting on the purchases up to one horizon before the
    cutoff and comparing with the purchase days that followed (MAE per person)."""
    import numpy as np

    from touchpoint.models.lifetime.batch import UNIT_DAYS, average_values
    from touchpoint.models.lifetime.boosted import fit_boosted
    from touchpoint.models.lifetime.summary import as_day, count_purchase_days, purchase_days
    from touchpoint.models.training import Fitted

    days = trainer.config.models.horizon_days
    frame = trainer.warehouse.frame(
        "SELECT profile_id AS person_id, timestamp AS date, coalesce(value, 0.0) AS amount "
        "FROM events WHERE event = $1 AND profile_id IS NOT NULL AND timestamp < $2 "
        "ORDER BY person_id, date, amount",
        [trainer.config.models.purchase_event, data.as_of],
    )
    if len(frame) == 0:
        raise NotEnoughData(f"no {trainer.config.models.purchase_event!r} events yet")
    frame["amount"] = frame["amount"].clip(lower=0.0)
    purchases = purchase_days(frame)
    end = as_day(data.as_of.strftime("%Y-%m-%d"))
    cut = end - np.timedelta64(days, "D")
    horizon = days / UNIT_DAYS
    earlier = purchases.until(cut)
    if len(earlier.days) == 0:
        raise NotEnoughData(f"no purchases before {cut}, one horizon ({days} days) back")
    checked = fit_boosted(earlier, horizon=horizon, end=cut, seed=trainer.seed)
    predicted = checked.predict(earlier, horizon)
    actual = count_purchase_days(purchases, predicted.person_ids, after=cut, until=end)
    expected = predicted.expected_purchases
    metrics = {
        "mae": float(np.mean(np.abs(expected - actual))),
        "predicted_total": float(expected.sum()),
        "actual_total": float(actual.sum()),
        "validation_people": float(len(actual)),
    }
    model = fit_boosted(purchases, horizon=horizon, end=end, seed=trainer.seed)
    prediction = model.predict(purchases, horizon)
    values, spend_model = average_values(prediction.summary)
    value = prediction.expected_purchases * values
    version = trainer.new_version(
        "lifetime",
        model.description,
        data,
        window={"validation_cut": _datetime(cut)},
        params={"horizon_days": days, "spend_model": spend_model, "unit_days": UNIT_DAYS},
        metrics=metrics,
        metric="mae",
        higher_is_better=False,
        rows=len(frame),
    )
    scores = {
        str(pid): {
            f"expected_purchases_{days}d": float(purchases_expected),
            "p_active": float(alive),
            f"expected_value_{days}d": float(spend),
        }
        for pid, purchases_expected, alive, spend in zip(
            prediction.person_ids,
            prediction.expected_purchases,
            prediction.p_alive,
            value,
            strict=True,
        )
    }

    def apply(_: ModelVersion) -> dict[str, int]:
        return trainer.counts(trainer.outputs.write_scores(scores))

    return Fitted(version, model.save, apply)


def _datetime(day: Any) -> datetime:
    return datetime.fromisoformat(str(day)).replace(tzinfo=UTC)
