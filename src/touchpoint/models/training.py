"""`touchpoint train`: fit the workspace's models on the warehouse and put their results
into profiles.

One run: copy what the warehouse lacks, materialize the feature tables as of now, then
train each model (all of MODELS, or the ones asked) in turn. Each model:

- builds its training data from the warehouse (features as of earlier cutoffs for the
  supervised ones: a time-based split, so validation is always on a later period);
- registers a version with its training window, parameters and validation metrics, and
  the feature drift against the version that serves now (PSI and KS per feature);
- is promoted only if its validation metric is not worse than the serving version's by
  more than `models.tolerance` (see registry);
- once promoted, writes its output into profiles: segment families, scores or
  recommendations. A rejected version writes nothing: the serving one's output stands.

Too little data for a model is a `skipped` outcome with the reason (a new workspace
trains nothing and decisions keep their rules and popularity); a model that fails is
logged and reported as `failed`, and the others still train.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.outputs import OutputCounts, ProfileOutputs
from touchpoint.models.registry import ModelRegistry, ModelVersion
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.warehouse.features import (
    NUMERIC_PERSON_FEATURES,
    EventNames,
    materialize,
    person_features,
)

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.warehouse.store import Warehouse
    from touchpoint.warehouse.writer import WarehouseWriter

logger = logging.getLogger(__name__)

SAMPLE_FILE = "features_sample.parquet"
SAMPLE_ROWS = 5_000

Progress = Callable[[str, str], None]
"""`progress(model, step)`: told as each model goes through its steps."""


@dataclass(frozen=True)
class TrainOutcome:
    """What training one model did: `status` is `promoted`, `rejected` (the serving version
    stays), `skipped` (too little data: `reason` says why) or `failed` (logged)."""

    model: str
    status: str
    reason: str
    version: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "status": self.status,
            "reason": self.reason,
            "version": self.version,
            "metrics": self.metrics,
            "written": self.written,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class TrainingData:
    """What every model of one run reads: the cutoff and the person features as of it, and
    a cached function for the features as of earlier cutoffs."""

    as_of: datetime
    features: pd.DataFrame
    features_at: Callable[[datetime], pd.DataFrame]


@dataclass(frozen=True)
class Fitted:
    """A model's training result, before the registry: how to save it, its version record
    (number unset), the features it learned from (for drift), and how to write its output
    into profiles once promoted."""

    version: ModelVersion
    save: Callable[[Path], None]
    apply: Callable[[ModelVersion], dict[str, int]]
    features: pd.DataFrame | None = None


class Trainer:
    """Trains the workspace's models; see the module docstring."""

    def __init__(
        self,
        *,
        config: TouchpointConfig,
        warehouse: Warehouse,
        registry: ModelRegistry,
        profiles: ProfileStore,
        writer: WarehouseWriter | None = None,
        clock: Callable[[], datetime] = utcnow,
        seed: int = 0,
    ) -> None:
        from touchpoint.models.jobs import JOBS

        self.config = config
        self.warehouse = warehouse
        self.registry = registry
        self.profiles = profiles
        self.writer = writer
        self.outputs = ProfileOutputs(profiles, clock=clock)
        self._clock = clock
        self.seed = seed
        models = config.models
        self.names = EventNames(models.purchase_event, models.view_event, models.cart_event)
        self.jobs: dict[str, Callable[[Trainer, TrainingData], Fitted]] = dict(JOBS)
        self.features_at = lru_cache(maxsize=16)(self._features_at)

    def run(
        self,
        models: Sequence[str] | None = None,
        *,
        as_of: datetime | None = None,
        progress: Progress | None = None,
    ) -> list[TrainOutcome]:
        """Train `models` (default: every model the configuration enables) as of `as_of`
        (default now); one outcome per model, in order."""
        wanted = list(models) if models else list(self.config.models.train)
        unknown = [name for name in wanted if name not in self.jobs]
        if unknown:
            raise InvalidInput(
                f"unknown model {unknown[0]!r} (known: {', '.join(self.jobs)})",
                details={"field": "model"},
            )
        tell = progress or (lambda model, step: None)
        moment = as_of or self._clock()
        tell("warehouse", "copying applied events")
        if self.writer is not None:
            self.writer.run_once()
        tell("warehouse", "materializing feature tables")
        import pyarrow as pa

        people = self.features_at(moment)
        table = pa.Table.from_pandas(people, preserve_index=False)
        materialize(self.warehouse, as_of=moment, names=self.names, people=table)
        data = TrainingData(moment, people, self.features_at)
        return [self._train(name, data, tell) for name in wanted]

    def _features_at(self, as_of: datetime) -> pd.DataFrame:
        """Person features as of a cutoff (cached per trainer by `features_at`)."""
        return person_features(self.warehouse, as_of=as_of, names=self.names).to_pandas()

    def _train(self, name: str, data: TrainingData, tell: Progress) -> TrainOutcome:
        started = time.perf_counter()
        try:
            tell(name, "training")
            fitted = self.jobs[name](self, data)
            tell(name, "registering")
            version = fitted.version
            if fitted.features is not None:
                version = self._with_drift(version, fitted.features)
            stored = self.registry.register(
                version, lambda directory: self._save(directory, fitted)
            )
            verdict = self.registry.promote(
                name, stored.version, tolerance=self.config.models.tolerance
            )
            written: dict[str, int] = {}
            if verdict.promoted:
                tell(name, "writing to profiles")
                written = fitted.apply(verdict.version)
            status = "promoted" if verdict.promoted else "rejected"
            return TrainOutcome(
                name,
                status,
                verdict.reason,
                stored.version,
                dict(stored.metrics),
                written,
                time.perf_counter() - started,
            )
        except NotEnoughData as error:
            logger.info("model %s skipped: %s", name, error.reason)
            return TrainOutcome(
                name, "skipped", error.reason, seconds=time.perf_counter() - started
            )
        except Exception as error:
            logger.exception("model %s failed to train", name)
            reason = f"{type(error).__name__}: {error}"
            return TrainOutcome(name, "failed", reason, seconds=time.perf_counter() - started)

    def _save(self, directory: Path, fitted: Fitted) -> None:
        fitted.save(directory)
        if fitted.features is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            # Drift compares feature values only: the sample keeps no profile id, so a
            # person erased later is not left named in a model's files.
            numeric = [name for name in NUMERIC_PERSON_FEATURES if name in fitted.features]
            sample = fitted.features[numeric]
            if len(sample) > SAMPLE_ROWS:
                sample = sample.sample(SAMPLE_ROWS, random_state=self.seed)
            pq.write_table(
                pa.Table.from_pandas(sample, preserve_index=False), directory / SAMPLE_FILE
            )

    def _with_drift(self, version: ModelVersion, features: pd.DataFrame) -> ModelVersion:
        """The version with the drift of its training features against the serving
        version's (PSI and KS per numeric feature); unchanged for a first version."""
        from dataclasses import replace

        import pyarrow.parquet as pq

        from touchpoint.models.drift import feature_drift

        current = self.registry.current(version.model)
        if current is None:
            return version
        path = self.registry.path(current.model, current.version) / SAMPLE_FILE
        if not path.exists():
            return version
        reference = pq.read_table(path).to_pandas()
        columns = [
            name
            for name in NUMERIC_PERSON_FEATURES
            if name in features.columns and name in reference.columns
        ]
        drift = feature_drift(reference, features, columns)
        return replace(
            version,
            drift=[
                {
                    "feature": item.feature,
                    "psi": item.psi,
                    "ks_statistic": item.ks_statistic,
                    "ks_pvalue": item.ks_pvalue,
                    "against_version": current.version,
                }
                for item in drift
            ],
        )

    # -- helpers for the jobs ------------------------------------------------------------------

    def new_version(
        self,
        model: str,
        kind: str,
        data: TrainingData,
        *,
        window: dict[str, datetime] | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        metric: str | None = None,
        higher_is_better: bool = True,
        rows: int = 0,
    ) -> ModelVersion:
        """A version record for a job (numbered by the registry)."""
        span = {"as_of": isoformat(data.as_of)}
        span.update({key: isoformat(value) for key, value in (window or {}).items()})
        return ModelVersion(
            model=model,
            version=0,
            created_at=isoformat(self._clock()),
            kind=kind,
            window=span,
            params=params or {},
            metrics={key: float(value) for key, value in (metrics or {}).items()},
            metric=metric,
            higher_is_better=higher_is_better,
            rows=rows,
        )

    def segment_family(self, prefix: str, names: Sequence[str]) -> list[str]:
        """Every segment of a family: `names`, plus any segment with the family's prefix that
        has members now (a name an earlier version used)."""
        current = [name for name in self.profiles.segment_sizes() if name.startswith(prefix)]
        return sorted({*names, *current})

    @staticmethod
    def counts(written: OutputCounts) -> dict[str, int]:
        return {
            "profiles": written.profiles,
            "entered": written.entered,
            "exited": written.exited,
            "missing": written.missing,
        }
