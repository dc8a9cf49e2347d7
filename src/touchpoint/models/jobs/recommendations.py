"""The recommendations job: the workspace recommender, validated by nDCG@10, its top items
precomputed into the profiles of people active recently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from touchpoint.models.errors import NotEnoughData
from touchpoint.models.registry import ModelVersion

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.training import Fitted, Trainer, TrainingData


MIN_INTERACTIONS = 50


def _interactions_frame(trainer: Trainer, data: TrainingData) -> pd.DataFrame:
    """Every interaction before the cutoff with its weight from `models.interaction_weights`
    (interactions with other events are left out)."""
    import pandas as pd

    weights = trainer.config.models.interaction_weights
    frame = trainer.warehouse.frame(
        "SELECT profile_id AS person_id, item_id, event, timestamp FROM interactions "
        "WHERE timestamp < $1 ORDER BY person_id, timestamp, item_id, event",
        [data.as_of],
    )
    frame = frame[frame["event"].isin(list(weights))]
    frame = frame.assign(weight=frame["event"].map(weights).astype("float64"))
    return pd.DataFrame(frame[["person_id", "item_id", "weight", "timestamp"]])


def train_recommendations(trainer: Trainer, data: TrainingData) -> Fitted:
    """The workspace recommender (`models.recommender.algorithm`, default the benchmark's
    best), validated by nDCG@10 on a per-person holdout of 20% of each person's
    interactions, then refit on all of them; its top `k` precomputed for every profile
    active within `active_days`."""
    from touchpoint.models.evaluation import evaluate, split_per_person
    from touchpoint.models.interactions import Interactions
    from touchpoint.models.recommend.catalog import DEFAULT_RECOMMENDER, build_recommender
    from touchpoint.models.serving import RECOMMENDATIONS_MODEL
    from touchpoint.models.training import Fitted

    settings = trainer.config.models.recommender
    frame = _interactions_frame(trainer, data)
    people, items = frame["person_id"].nunique(), frame["item_id"].nunique()
    if len(frame) < MIN_INTERACTIONS or people < 10 or items < 5:
        raise NotEnoughData(
            f"{len(frame)} interactions of {people} people with {items} items before "
            f"{data.as_of:%Y-%m-%d %H:%M}; at least {MIN_INTERACTIONS} interactions, 10 people "
            "and 5 items are needed"
        )
    catalog = trainer.warehouse.frame("SELECT * FROM items")
    catalog = catalog if len(catalog) else None
    name = settings.algorithm or DEFAULT_RECOMMENDER
    train, test = split_per_person(frame, 0.8, seed=trainer.seed)
    validation_model = build_recommender(name, seed=trainer.seed)
    train_interactions = Interactions.from_frame(train)
    validation_model.fit(train_interactions, catalog)
    metrics = evaluate(validation_model, train_interactions, test, k=10)
    model = build_recommender(name, seed=trainer.seed).fit(Interactions.from_frame(frame), catalog)
    active = data.features
    active = active[active["recency_days"] <= settings.active_days]
    version = trainer.new_version(
        RECOMMENDATIONS_MODEL,
        name,
        data,
        window={"start": frame["timestamp"].min().to_pydatetime()},
        params={
            "algorithm": name,
            "k": settings.k,
            "weights": trainer.config.models.interaction_weights,
        },
        metrics={**metrics, "people": float(people), "items": float(items)},
        metric="ndcg@10",
        rows=len(frame),
    )

    def apply(stored: ModelVersion) -> dict[str, int]:
        ids = [str(pid) for pid in active["profile_id"]]
        picks = model.recommend_many(ids, settings.k)
        lists = {
            pid: [(pick.item_id, pick.score) for pick in picks.get(pid, [])]
            for pid in ids
            if picks.get(pid)
        }
        written = trainer.outputs.write_recommendations(
            lists, model=stored.model, version=stored.version
        )
        return trainer.counts(written)

    return Fitted(version, model.save, apply)
