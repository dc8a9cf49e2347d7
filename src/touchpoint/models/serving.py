"""Recommendations at decision time: the decision engine's RecommendationSource.

For one person, in order:

1. their precomputed list (`profile.recommendations`, written by the training job for
   active profiles) when the `recommendations` model is asked;
2. otherwise the serving version of the model, computed on demand: for a person the model
   knows, from their interactions, re-ranked by the items of their current session; for
   one it does not know, from the session alone;
3. otherwise the most popular items (the item feature table), so a new workspace, or a
   model that failed to load, still fills a placement.

Items are decorated with the catalog's attributes (`touchpoint import items`). The model
is loaded from the registry and reloaded when a new version is promoted (checked every
`check_interval` seconds, off the lock of requests that need not wait); a version that
fails to load leaves the previous one serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.models.recommend.source import RecommendedItems
from touchpoint.models.registry import ModelRegistry

if TYPE_CHECKING:
    from touchpoint.models.recommend.base import Recommender
    from touchpoint.warehouse.store import Warehouse

logger = logging.getLogger(__name__)

Loader = Callable[[Path], "Recommender"]

RECOMMENDATIONS_MODEL = "recommendations"
"""The registry name of the recommender `touchpoint train` fits, whose lists it precomputes
into profiles."""


class _Loaded:
    """One model's serving version, as loaded."""

    __slots__ = ("checked_at", "model", "stamp", "version")

    def __init__(self) -> None:
        self.model: Recommender | None = None
        self.version: int | None = None
        self.stamp: float | None = None  # mtime of registry.json when loaded
        self.checked_at = float("-inf")


class RecommendationService:
    """See the module docstring. Thread-safe; `recent_feature` names the profile feature that
    holds the person's recent item ids, newest first (a `last_distinct` feature)."""

    def __init__(
        self,
        registry: ModelRegistry,
        loader: Loader,
        *,
        warehouse: Warehouse | None = None,
        recent_feature: str | None = None,
        check_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.loader = loader
        self.warehouse = warehouse
        self.recent_feature = recent_feature
        self.check_interval = check_interval
        self._clock = clock
        self._models: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._catalog: dict[str, dict[str, Any]] = {}
        self._catalog_stamp: float | None = None
        self._popular: list[tuple[str, float]] = []
        self._popular_stamp: float | None = None

    # -- the protocol ---------------------------------------------------------------------

    def recommend(
        self, *, profile_id: str | None, document: Mapping[str, Any], model: str, k: int
    ) -> RecommendedItems | None:
        """Up to `k` items for the person; see the module docstring for the order."""
        loaded = self._model(model)
        stored = document.get("recommendations") or []
        if stored and model == RECOMMENDATIONS_MODEL:
            ids = [str(item) for item in stored[:k]]
            return self._decorate([(item, None) for item in ids], "precomputed", model, loaded)
        recent = self._recent(document)
        if loaded.model is not None:
            scored = loaded.model.recommend(profile_id or "", k, recent=recent)
            if scored:
                knows = getattr(loaded.model, "knows", None)
                known = bool(profile_id) and (knows is None or bool(knows(profile_id)))
                source = "model" if known else ("session" if recent else "popular")
                pairs = [(entry.item_id, entry.score) for entry in scored]
                return self._decorate(pairs, source, model, loaded)
        popular = self._popular_items()
        if not popular:
            return None
        seen = set(recent)
        pairs = [(item, score) for item, score in popular if item not in seen][:k]
        return self._decorate(pairs, "popular", model, loaded)

    # -- the model ------------------------------------------------------------------------

    def _model(self, name: str) -> _Loaded:
        loaded = self._models.get(name)
        if loaded is None:
            with self._lock:
                loaded = self._models.setdefault(name, _Loaded())
        now = self._clock()
        if now - loaded.checked_at >= self.check_interval and self._lock.acquire(blocking=False):
            try:
                loaded.checked_at = now
                self._refresh(name, loaded)
            finally:
                self._lock.release()
        return loaded

    def _refresh(self, name: str, loaded: _Loaded) -> None:
        """Load the serving version if the registry moved since the last load."""
        state = self.registry.root / name / "registry.json"
        try:
            stamp = state.stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == loaded.stamp:
            return
        found = self.registry.load(name, self.loader)
        loaded.stamp = stamp
        if found is None:
            logger.warning("no version of %s could be loaded; recommending popular items", name)
            return
        version, model = found
        if version.version != loaded.version:
            logger.info("serving %s version %d", name, version.version)
        loaded.model, loaded.version = model, version.version

    def _recent(self, document: Mapping[str, Any]) -> list[str]:
        if self.recent_feature is None:
            return []
        value = (document.get("features") or {}).get(self.recent_feature)
        if isinstance(value, list):
            return [str(item) for item in value if item is not None]
        return []

    # -- the catalog and popularity ----------------------------------------------------------

    def _decorate(
        self,
        pairs: Sequence[tuple[str, float | None]],
        source: str,
        model: str,
        loaded: _Loaded,
    ) -> RecommendedItems:
        catalog = self._items()
        items = []
        for item_id, score in pairs:
            entry: dict[str, Any] = dict(catalog.get(item_id, {}))
            entry["item_id"] = item_id
            if score is not None:
                entry["score"] = round(float(score), 6)
            items.append(entry)
        version = loaded.version if source != "popular" else None
        return RecommendedItems(items, source=source, model=model, version=version)

    def _items(self) -> dict[str, dict[str, Any]]:
        """The item catalog by id, re-read when its file changes."""
        if self.warehouse is None:
            return {}
        path = self.warehouse.items_path
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp != self._catalog_stamp:
            catalog: dict[str, dict[str, Any]] = {}
            if stamp is not None:
                import pyarrow.parquet as pq

                for row in pq.read_table(path).to_pylist():
                    item_id = row.pop("item_id", None)
                    if item_id is not None:
                        catalog[str(item_id)] = {
                            key: value for key, value in row.items() if value is not None
                        }
            self._catalog, self._catalog_stamp = catalog, stamp
        return self._catalog

    def _popular_items(self) -> list[tuple[str, float]]:
        """Items by interactions over the last 7 days, then 30, then ever (the item feature
        table), re-read when the table changes."""
        if self.warehouse is None:
            return []
        path = self.warehouse.features_dir / "item_features.parquet"
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp != self._popular_stamp:
            popular: list[tuple[str, float]] = []
            if stamp is not None:
                import pyarrow.parquet as pq

                rows = pq.read_table(
                    path,
                    columns=[
                        "item_id",
                        "interactions_7d",
                        "interactions_30d",
                        "interactions_total",
                    ],
                ).to_pylist()
                rows.sort(
                    key=lambda row: (
                        -(row["interactions_7d"] or 0),
                        -(row["interactions_30d"] or 0),
                        -(row["interactions_total"] or 0),
                        str(row["item_id"]),
                    )
                )
                popular = [
                    (str(row["item_id"]), float(row["interactions_7d"] or 0)) for row in rows[:200]
                ]
            self._popular, self._popular_stamp = popular, stamp
        return self._popular
