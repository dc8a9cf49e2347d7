"""Model metrics for `/metrics`, read from the registry when Prometheus scrapes, so every
process (the API, a worker that did not train) reports the serving versions.

- `touchpoint_model_version{model}`: the serving version;
- `touchpoint_model_metric{model,metric}`: its validation metrics;
- `touchpoint_model_feature_psi{model,feature}` and `touchpoint_model_feature_ks{model,
  feature}` (statistic) / `touchpoint_model_feature_ks_pvalue`: the drift of its training
  features against the version it replaced, recorded at retraining.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from touchpoint.models.registry import ModelRegistry

logger = logging.getLogger(__name__)


class ModelCollector(Collector):
    """Exposes the serving versions' metrics and drift."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        version = GaugeMetricFamily(
            "touchpoint_model_version", "The serving version of each model.", labels=["model"]
        )
        metric = GaugeMetricFamily(
            "touchpoint_model_metric",
            "Validation metrics of each model's serving version.",
            labels=["model", "metric"],
        )
        psi = GaugeMetricFamily(
            "touchpoint_model_feature_psi",
            "Population stability index of a training feature against the previous version.",
            labels=["model", "feature"],
        )
        ks = GaugeMetricFamily(
            "touchpoint_model_feature_ks",
            "Two-sample KS statistic of a training feature against the previous version.",
            labels=["model", "feature"],
        )
        ks_pvalue = GaugeMetricFamily(
            "touchpoint_model_feature_ks_pvalue",
            "p-value of that KS test.",
            labels=["model", "feature"],
        )
        try:
            names = self._registry.models()
        except OSError:
            names = []
        for name in names:
            try:
                current = self._registry.current(name)
            except Exception:  # a half-written registry must not break /metrics
                logger.warning("cannot read the serving version of %s", name, exc_info=True)
                continue
            if current is None:
                continue
            version.add_metric([name], current.version)
            for key, value in sorted(current.metrics.items()):
                if isinstance(value, int | float) and math.isfinite(value):
                    metric.add_metric([name, key], float(value))
            for item in current.drift:
                feature = str(item.get("feature"))
                for family, key in ((psi, "psi"), (ks, "ks_statistic"), (ks_pvalue, "ks_pvalue")):
                    found = item.get(key)
                    if isinstance(found, int | float) and math.isfinite(found):
                        family.add_metric([name, feature], float(found))
        yield from (version, metric, psi, ks, ks_pvalue)
