"""A real-time session re-rank: what the person is looking at now moves the picks.

`SessionRerank(base, similarity)` wraps a fitted-together pair of recommenders. Without
`recent` it answers exactly as `base`. With `recent` (item ids of the current session,
newest first) it:

1. takes `base`'s top `candidates` for the person (recent items passed on, so models that
   fold a history in use them too);
2. scores items by likeness to the session: each recent item at position p (0 = newest)
   adds `decay`**p times `similarity.similar(item)`'s score to its neighbours;
3. ranks the union of both lists by (1 - mix)·base + mix·session, each min-max scaled
   to 0..1 over its own list (an item missing from a list gets 0 there).

A person unknown to `base` at fit time is ranked from the session alone (falling back to
`base`, i.e. popularity, when no recent item is known). Items the person took in training
(when `base` can tell: `seen_items`), recent items, `exclude` and items `filter` rejects
are never picked. `similarity` can be any recommender with a meaningful `similar`:
`CoOccurrence` (people who took this also took), `ContentBased` (cold items too), or `EASE`
itself (its weight matrix); it defaults to `base`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.base import ItemFilter, Recommender, Scored
from touchpoint.models.recommend.scoring import read_model_file, write_model_file

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.interactions import Interactions


class SessionRerank:
    """Re-ranks a base recommender's picks with the session's recent items; see the module
    docstring."""

    name = "session"

    def __init__(
        self,
        base: Recommender,
        similarity: Recommender | None = None,
        *,
        candidates: int = 100,
        decay: float = 0.7,
        mix: float = 0.5,
        seed: int = 0,
    ) -> None:
        if candidates < 1:
            raise InvalidInput("candidates must be >= 1", details={"field": "candidates"})
        if not 0 < decay <= 1:
            raise InvalidInput("decay must be in (0, 1]", details={"field": "decay"})
        if not 0 <= mix <= 1:
            raise InvalidInput("mix must be in [0, 1]", details={"field": "mix"})
        self.base = base
        self.similarity = similarity if similarity is not None else base
        self.candidates = candidates
        self.decay = decay
        self.mix = mix
        self.seed = seed

    def fit(self, interactions: Interactions, items: pd.DataFrame | None = None) -> Self:
        """Fit `base`, and `similarity` when it is a different model."""
        self.base.fit(interactions, items)
        if self.similarity is not self.base:
            self.similarity.fit(interactions, items)
        return self

    def recommend(
        self,
        person: str,
        k: int,
        *,
        exclude: Collection[str] = (),
        filter: ItemFilter | None = None,
        recent: Sequence[str] = (),
    ) -> list[Scored]:
        """`base`'s picks re-ranked by the session (see the module docstring)."""
        if not recent:
            return self.base.recommend(person, k, exclude=exclude, filter=filter)
        knows = getattr(self.base, "knows", None)
        known = bool(knows(person)) if callable(knows) else True
        seen_items = getattr(self.base, "seen_items", None)
        seen: Collection[str] = seen_items(person) if callable(seen_items) else ()
        blocked = set(exclude) | set(recent) | set(seen)
        session = self._session_scores(recent, blocked, filter)
        if not known and session:
            return _best(session, k)
        picks = self.base.recommend(
            person, self.candidates, exclude=blocked, filter=filter, recent=recent
        )
        if not session:
            return picks[:k]
        base_scaled = _scaled({pick.item_id: pick.score for pick in picks})
        session_scaled = _scaled(session)
        combined = {
            item: (1 - self.mix) * base_scaled.get(item, 0.0)
            + self.mix * session_scaled.get(item, 0.0)
            for item in base_scaled.keys() | session_scaled.keys()
        }
        return _best(combined, k)

    def _session_scores(
        self, recent: Sequence[str], blocked: set[str], filter: ItemFilter | None
    ) -> dict[str, float]:
        scores: dict[str, float] = {}
        for position, item in enumerate(dict.fromkeys(recent)):
            weight = self.decay**position
            for neighbour in self.similarity.similar(item, self.candidates):
                if neighbour.item_id in blocked:
                    continue
                if filter is not None and not filter(neighbour.item_id):
                    continue
                scores[neighbour.item_id] = (
                    scores.get(neighbour.item_id, 0.0) + weight * neighbour.score
                )
        return scores

    def recommend_many(self, people: Sequence[str], k: int) -> dict[str, list[Scored]]:
        """Batch picks have no session: exactly `base`'s."""
        return self.base.recommend_many(people, k)

    def similar(self, item: str, k: int) -> list[Scored]:
        """`similarity`'s neighbours of an item."""
        return self.similarity.similar(item, k)

    def forget(self, people: Collection[str]) -> int:
        """Forget these people in the base model (and the similarity model, if another);
        how many the base knew (see `ScoringRecommender.forget`)."""
        forgotten = self.base.forget(people)
        if self.similarity is not self.base:
            self.similarity.forget(people)
        return forgotten

    def save(self, directory: Path) -> None:
        """`model.json` with the re-rank's parameters; `base/` (and `similarity/` when it is
        a different model) saved by their own `save`."""
        shared = self.similarity is self.base
        write_model_file(
            directory,
            self.name,
            {
                "candidates": self.candidates,
                "decay": self.decay,
                "mix": self.mix,
                "seed": self.seed,
            },
            base="base",
            similarity="base" if shared else "similarity",
        )
        self.base.save(directory / "base")
        if not shared:
            self.similarity.save(directory / "similarity")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """The saved re-rank with its saved models."""
        from touchpoint.models.recommend.catalog import load_recommender

        body = read_model_file(directory)
        if body["class"] != cls.name:
            raise InvalidInput(
                f"{directory} holds a {body['class']!r} model, not {cls.name!r}",
                details={"field": "class"},
            )
        base = load_recommender(directory / str(body.get("base", "base")))
        similarity_folder = str(body.get("similarity", "base"))
        similarity = (
            base if similarity_folder == "base" else load_recommender(directory / similarity_folder)
        )
        params: dict[str, Any] = body.get("params", {})
        return cls(base, similarity, **params)


def _scaled(scores: dict[str, float]) -> dict[str, float]:
    """Min-max to 0..1 (all 1 when every score is equal)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {item: (score - low) / span if span > 0 else 1.0 for item, score in scores.items()}


def _best(scores: dict[str, float], k: int) -> list[Scored]:
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    return [Scored(item, float(score)) for item, score in ranked[: max(0, k)]]
