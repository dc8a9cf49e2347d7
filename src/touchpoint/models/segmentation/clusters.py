"""Clustering segments: K-Means over standardized behaviour features, each cluster described.

`fit_clusters` turns a person feature table into groups nobody had to write rules for:

1. Features: the numeric behaviour columns (`DEFAULT_CLUSTER_FEATURES`). Counts, days and
   money are heavy-tailed (a few people with hundreds of orders would otherwise own a
   cluster each), so the columns in `log_features` go through `log1p` first; they must not
   be negative. Constant columns carry no information and are dropped (and recorded); no
   varying column left, or fewer rows than `min_rows`, is `NotEnoughData`.
2. Every feature is standardized (mean 0, standard deviation 1 over the fitted rows).
3. K-Means (scikit-learn, `seed`) for every k in `k_values`; the k with the highest
   silhouette wins (ties to the smaller k). On large inputs k is chosen on a sample of
   `selection_sample` rows and the silhouette on `silhouette_sample` of those (both drawn
   with the seed); the chosen k is then fitted on every row.
4. Clusters are numbered 1..k by size (largest first) so numbers and names are stable
   across runs. Each is described by its distinguishing features: those whose cluster
   mean lies at least `min_deviation` standard deviations (on the transformed scale) from
   the overall mean, largest first, with a direction: "high frequency, low recency_days".
   When none is that far (a dominant cluster sits near the overall mean), the single most
   distinct feature describes it. Its name comes from the first of them:
   `cluster_1_high_frequency` (`cluster_3_average` only when the center is the mean).

The fitted `ClusterModel` assigns new rows to the nearest center and saves as JSON + `.npz`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.frames import numeric_column

logger = logging.getLogger(__name__)

DEFAULT_CLUSTER_FEATURES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "orders_90d",
    "revenue_90d",
    "events_30d",
    "views_30d",
    "cart_adds_30d",
    "distinct_items_30d",
    "active_days_30d",
)
MODEL_FILE = "clusters.json"
ARRAYS_FILE = "clusters.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class FeatureDeviation:
    """How far a cluster's mean of one feature lies from the overall mean, in standard
    deviations of the (log-transformed where applicable) feature; positive is higher."""

    feature: str
    deviation: float

    @property
    def direction(self) -> Literal["high", "low"]:
        """`high` when the cluster is above the overall mean, else `low`."""
        return "high" if self.deviation > 0 else "low"

    @property
    def label(self) -> str:
        """Readable form, e.g. `high frequency`."""
        return f"{self.direction} {self.feature}"


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    """One cluster: its number (1 is the largest), name, size at fit time and the features
    that set it apart (largest deviation first)."""

    number: int
    name: str
    size: int
    share: float
    distinguishing: tuple[FeatureDeviation, ...]

    @property
    def description(self) -> str:
        """The distinguishing features as text: `high frequency, low recency_days`."""
        if not self.distinguishing:
            return "close to average on every feature"
        return ", ".join(deviation.label for deviation in self.distinguishing)


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A fitted clustering: the feature transform (log1p, then standardization), the
    centers in standardized space (row i is cluster number i + 1) and the descriptions.
    `assign` gives new rows the number of their nearest center. (Compared by identity: it
    holds arrays.)"""

    feature_names: tuple[str, ...]
    log_features: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    centers: npt.NDArray[np.float64]
    clusters: tuple[ClusterDescription, ...]
    silhouettes: tuple[tuple[int, float], ...]
    dropped_features: tuple[str, ...] = ()
    seed: int = 0

    @property
    def k(self) -> int:
        """The number of clusters."""
        return len(self.clusters)

    @property
    def names(self) -> tuple[str, ...]:
        """Cluster names in number order."""
        return tuple(cluster.name for cluster in self.clusters)

    def transform(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The standardized feature matrix of a frame (rows x `feature_names`)."""
        matrix = _feature_matrix(frame, self.feature_names, self.log_features)
        return (matrix - self.mean) / self.scale

    def assign(self, frame: pd.DataFrame) -> npt.NDArray[np.int64]:
        """The cluster number (1..k) of every row: its nearest center."""
        return _nearest(self.transform(frame), self.centers) + 1

    def segments(self, frame: pd.DataFrame, *, id_column: str = "profile_id") -> pd.DataFrame:
        """Membership for profiles: the id column, `cluster` (number) and `segment` (name),
        on the input's index."""
        if id_column not in frame.columns:
            raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
        numbers = self.assign(frame)
        names = np.array(self.names, dtype=object)
        return pd.DataFrame(
            {
                id_column: frame[id_column].to_numpy(),
                "cluster": numbers,
                "segment": names[numbers - 1],
            },
            index=frame.index,
        )

    def save(self, directory: Path) -> None:
        """Write `clusters.json` (features, descriptions, silhouettes) and `clusters.npz`
        (mean, scale, centers) into `directory`, creating it."""
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "format_version": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "log_features": list(self.log_features),
            "dropped_features": list(self.dropped_features),
            "seed": self.seed,
            "silhouettes": [[k, score] for k, score in self.silhouettes],
            "clusters": [
                {
                    "number": cluster.number,
                    "name": cluster.name,
                    "size": cluster.size,
                    "share": cluster.share,
                    "distinguishing": [
                        {"feature": item.feature, "deviation": item.deviation}
                        for item in cluster.distinguishing
                    ],
                }
                for cluster in self.clusters
            ],
        }
        (directory / MODEL_FILE).write_text(json.dumps(document, indent=2) + "\n")
        np.savez(directory / ARRAYS_FILE, mean=self.mean, scale=self.scale, centers=self.centers)

    @classmethod
    def load(cls, directory: Path) -> ClusterModel:
        """Read a model written by `save`; it assigns exactly as the saved one."""
        document = json.loads((directory / MODEL_FILE).read_text())
        if document.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(
                f"unsupported cluster model format {document.get('format_version')!r}",
                details={"field": "format_version"},
            )
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
            mean, scale, centers = arrays["mean"], arrays["scale"], arrays["centers"]
        clusters = tuple(
            ClusterDescription(
                number=int(item["number"]),
                name=str(item["name"]),
                size=int(item["size"]),
                share=float(item["share"]),
                distinguishing=tuple(
                    FeatureDeviation(str(entry["feature"]), float(entry["deviation"]))
                    for entry in item["distinguishing"]
                ),
            )
            for item in document["clusters"]
        )
        return cls(
            feature_names=tuple(document["feature_names"]),
            log_features=tuple(document["log_features"]),
            mean=mean.astype(np.float64),
            scale=scale.astype(np.float64),
            centers=centers.astype(np.float64),
            clusters=clusters,
            silhouettes=tuple((int(k), float(score)) for k, score in document["silhouettes"]),
            dropped_features=tuple(document["dropped_features"]),
            seed=int(document["seed"]),
        )


def fit_clusters(
    frame: pd.DataFrame,
    *,
    features: Sequence[str] = DEFAULT_CLUSTER_FEATURES,
    log_features: Sequence[str] = DEFAULT_CLUSTER_FEATURES,
    k_values: Sequence[int] = range(2, 9),
    seed: int = 0,
    silhouette_sample: int = 5_000,
    selection_sample: int = 20_000,
    min_rows: int = 20,
    min_deviation: float = 0.5,
    describe_top: int = 3,
    n_init: int = 4,
) -> ClusterModel:
    """Fit K-Means segments on a person feature table (see the module docstring).

    Raises `InvalidInput` for a missing, non-numeric or incomplete feature column (or a
    negative value in a log feature) and `NotEnoughData` when there are fewer than
    `min_rows` rows, no varying feature, or too few distinct rows for the smallest k.
    """
    if not features:
        raise InvalidInput("at least one feature is needed", details={"field": "features"})
    if not k_values or min(k_values) < 2:
        raise InvalidInput("every k must be at least 2", details={"field": "k_values"})
    if len(frame) < min_rows:
        raise NotEnoughData(f"clustering needs at least {min_rows} rows, got {len(frame)}")
    logged = tuple(name for name in features if name in set(log_features))
    matrix = _feature_matrix(frame, tuple(features), logged)

    varying = np.ptp(matrix, axis=0) > 0
    dropped = tuple(name for name, keep in zip(features, varying, strict=True) if not keep)
    if dropped:
        logger.info("clustering drops constant feature(s): %s", ", ".join(dropped))
    if not varying.any():
        raise NotEnoughData(f"every feature is constant: {', '.join(features)}")
    kept = tuple(name for name, keep in zip(features, varying, strict=True) if keep)
    matrix = matrix[:, varying]

    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    standardized = (matrix - mean) / scale
    distinct_rows = len(np.unique(standardized, axis=0))
    candidates = sorted({k for k in k_values if k < distinct_rows})
    if not candidates:
        raise NotEnoughData(
            f"{distinct_rows} distinct rows cannot make {min(k_values)} clusters and a "
            "silhouette (needs more distinct rows than clusters)"
        )

    silhouettes, chosen_k, labels = _choose_k(
        standardized,
        candidates,
        seed=seed,
        n_init=n_init,
        selection_sample=selection_sample,
        silhouette_sample=silhouette_sample,
    )
    centers, sizes = _ordered_centers(standardized, labels, chosen_k)
    clusters = tuple(
        _describe(
            number,
            centers[number - 1],
            int(sizes[number - 1]),
            len(frame),
            kept,
            min_deviation=min_deviation,
            describe_top=describe_top,
        )
        for number in range(1, chosen_k + 1)
    )
    logger.info(
        "clustering chose k=%d (silhouette %.3f) over %d rows",
        chosen_k,
        dict(silhouettes)[chosen_k],
        len(frame),
    )
    return ClusterModel(
        feature_names=kept,
        log_features=tuple(name for name in logged if name in kept),
        mean=mean,
        scale=scale,
        centers=centers,
        clusters=clusters,
        silhouettes=silhouettes,
        dropped_features=dropped,
        seed=seed,
    )


def _choose_k(
    standardized: npt.NDArray[np.float64],
    candidates: Sequence[int],
    *,
    seed: int,
    n_init: int,
    selection_sample: int,
    silhouette_sample: int,
) -> tuple[tuple[tuple[int, float], ...], int, npt.NDArray[np.int64]]:
    """Silhouette of K-Means for each candidate k, computed on a seeded sample of at most
    `selection_sample` rows; the best k (ties to the smaller) is then fitted on every row.
    Returns the silhouettes, the chosen k and every row's label."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows = len(standardized)
    selection = standardized
    if rows > selection_sample:
        picked = np.random.default_rng(seed).choice(rows, selection_sample, replace=False)
        selection = standardized[np.sort(picked)]
    sample = silhouette_sample if len(selection) > silhouette_sample else None
    silhouettes: list[tuple[int, float]] = []
    best: tuple[float, int, npt.NDArray[np.int64]] | None = None
    for k in candidates:
        labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(selection)
        score = float(silhouette_score(selection, labels, sample_size=sample, random_state=seed))
        silhouettes.append((k, score))
        logger.debug("k=%d silhouette %.4f", k, score)
        if best is None or score > best[0]:
            best = (score, k, labels.astype(np.int64))
    assert best is not None
    _, chosen_k, labels = best
    if selection is not standardized:
        final = KMeans(n_clusters=chosen_k, n_init=n_init, random_state=seed)
        labels = final.fit_predict(standardized).astype(np.int64)
    return tuple(silhouettes), chosen_k, labels


def _feature_matrix(
    frame: pd.DataFrame, features: tuple[str, ...], log_features: tuple[str, ...]
) -> npt.NDArray[np.float64]:
    columns = []
    for name in features:
        values = numeric_column(frame, name)
        missing = int(np.count_nonzero(~np.isfinite(values)))
        if missing:
            raise InvalidInput(
                f"column {name!r} has {missing} missing or infinite value(s)",
                details={"field": name},
            )
        if name in log_features:
            if (values < 0).any():
                raise InvalidInput(
                    f"column {name!r} has negative values and cannot be log-transformed",
                    details={"field": name},
                )
            values = np.log1p(values)
        columns.append(values)
    return np.column_stack(columns) if columns else np.zeros((len(frame), 0))


def _nearest(
    points: npt.NDArray[np.float64], centers: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    nearest = np.zeros(len(points), dtype=np.int64)
    chunk = 65_536  # bounds the rows x clusters x features temporary
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        distances = ((block[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        nearest[start : start + chunk] = np.argmin(distances, axis=1)
    return nearest


def _ordered_centers(
    standardized: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Cluster means ordered by size (largest first; ties by the center's coordinates)."""
    sizes = np.bincount(labels, minlength=k)
    means = np.vstack([standardized[labels == label].mean(axis=0) for label in range(k)])
    order = sorted(range(k), key=lambda label: (-sizes[label], tuple(means[label])))
    return means[order], sizes[order].astype(np.int64)


def _describe(
    number: int,
    center: npt.NDArray[np.float64],
    size: int,
    rows: int,
    features: tuple[str, ...],
    *,
    min_deviation: float,
    describe_top: int,
) -> ClusterDescription:
    """A cluster's description from its center (standardized, so coordinates are deviations
    from the overall mean in standard deviations)."""
    order = sorted(range(len(features)), key=lambda j: (-abs(center[j]), features[j]))
    # The features at least `min_deviation` away; when none is (a dominant cluster sits near
    # the overall mean), the single most distinct one, so every name says something.
    chosen = [j for j in order if abs(center[j]) >= min_deviation][:describe_top]
    if not chosen and order and center[order[0]] != 0:
        chosen = [order[0]]
    top = tuple(FeatureDeviation(features[j], round(float(center[j]), 6)) for j in chosen)
    suffix = f"{top[0].direction}_{top[0].feature}" if top else "average"
    return ClusterDescription(
        number=number,
        name=f"cluster_{number}_{suffix}",
        size=size,
        share=size / rows,
        distinguishing=top,
    )
