"""The models `touchpoint train` fits, one function each: training data from the
warehouse, the fitted model, its version record, and what it writes into profiles.

Segments (`rfm_*`, `cluster_*`, `lifecycle_*`, `value_*`) become batch segment families:
usable in conditions (`segments contains 'rfm_champions'`) like real-time ones. Scores
land in `profile.scores` (`score.propensity_30d > 0.6`). Recommendations are precomputed
into `profile.recommendations` for the people active recently, and computed on demand for
the others (models.serving).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from touchpoint.models.jobs.recommendations import train_recommendations
from touchpoint.models.jobs.scores import train_churn, train_lifetime, train_propensity_job
from touchpoint.models.jobs.segments import train_clusters, train_lifecycle, train_rfm

if TYPE_CHECKING:
    from touchpoint.models.training import Fitted, Trainer, TrainingData

JOBS: dict[str, Callable[[Trainer, TrainingData], Fitted]] = {
    "rfm": train_rfm,
    "clusters": train_clusters,
    "lifecycle": train_lifecycle,
    "propensity": train_propensity_job,
    "churn": train_churn,
    "lifetime": train_lifetime,
    "recommendations": train_recommendations,
}
