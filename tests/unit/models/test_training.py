"""`touchpoint train` end to end on an embedded workspace: simulated shop history through
the collector, the processor and the warehouse, then every model in turn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import TEST_CONFIG, drain, write_config
from touchpoint.core.errors import InvalidInput
from touchpoint.core.settings import load_settings
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import simulate_visitors
from touchpoint.models.registry import ModelRegistry
from touchpoint.models.training import Trainer, TrainOutcome
from touchpoint.runtime import Workspace

NOW = datetime.now(UTC).replace(microsecond=0)
SEGMENT_MODELS = ["rfm", "clusters", "lifecycle"]
SCORE_MODELS = ["propensity", "churn"]


def open_workspace(directory: Path) -> Workspace:
    config = write_config(directory, TEST_CONFIG)
    return Workspace.open(load_settings(config, directory / "data", environ={}))


def trainer(workspace: Workspace) -> Trainer:
    assert workspace.warehouse is not None
    return Trainer(
        config=workspace.settings.config,
        warehouse=workspace.warehouse,
        registry=ModelRegistry(workspace.settings.data_dir / "models"),
        profiles=workspace.profiles,
        writer=workspace.warehouse_writer,
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    workspace = open_workspace(tmp_path_factory.mktemp("shop"))
    messages = list(
        simulate_visitors(
            1300, seed=3, catalog=build_catalog(), start=NOW - timedelta(days=150), days=150
        )
    )
    source = workspace.settings.config.sources[0]
    for start in range(0, len(messages), 1000):
        workspace.collector.collect(source, messages[start : start + 1000])
    drain(workspace)
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def first_run(shop: Workspace) -> dict[str, TrainOutcome]:
    steps: list[tuple[str, str]] = []
    outcomes = trainer(shop).run(
        [*SEGMENT_MODELS, *SCORE_MODELS], progress=lambda m, s: steps.append((m, s))
    )
    assert ("warehouse", "copying applied events") in steps
    assert ("propensity", "writing to profiles") in steps
    return {outcome.model: outcome for outcome in outcomes}


def test_a_new_workspace_skips_every_model_with_a_reason(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path)
    try:
        outcomes = trainer(workspace).run([*SEGMENT_MODELS, *SCORE_MODELS])
    finally:
        workspace.close()
    assert {outcome.status for outcome in outcomes} == {"skipped"}
    assert all("people in the warehouse" in outcome.reason for outcome in outcomes)


def test_every_model_is_promoted_on_a_first_run(first_run: dict[str, TrainOutcome]) -> None:
    for name, outcome in first_run.items():
        assert outcome.status == "promoted", (name, outcome.reason)
        assert outcome.version == 1 and outcome.written["profiles"] > 0
    assert 0.5 < first_run["propensity"].metrics["auc"] <= 1.0
    assert first_run["clusters"].metrics["k"] >= 2


def test_segments_and_scores_land_in_profiles(
    shop: Workspace, first_run: dict[str, TrainOutcome]
) -> None:
    sizes = shop.profiles.segment_sizes()
    assert any(name.startswith("rfm_") for name in sizes)
    assert any(name.startswith("cluster_") for name in sizes)
    assert any(name.startswith("lifecycle_") for name in sizes)
    rfm_members = sum(size for name, size in sizes.items() if name.startswith("rfm_"))
    assert rfm_members == first_run["rfm"].written["entered"]  # one rfm segment per person
    page = shop.profiles.segment_members("rfm_no_orders", limit=1)
    assert page.items
    profile = shop.profiles.get(page.items[0][0])
    assert profile is not None and "propensity_30d" in profile.scores
    assert 0.0 <= profile.scores["propensity_30d"] <= 1.0
    assert "churn_30d" not in profile.scores  # churn scores buyers only


def test_a_second_run_records_drift_against_the_serving_version(
    shop: Workspace, first_run: dict[str, TrainOutcome]
) -> None:
    registry = ModelRegistry(shop.settings.data_dir / "models")
    outcomes = trainer(shop).run(["propensity"])
    assert outcomes[0].version == 2
    second = registry.get("propensity", 2)
    assert second.drift and {"feature", "psi", "ks_statistic", "ks_pvalue"} <= set(second.drift[0])
    assert second.drift[0]["against_version"] == 1
    # The same data: nothing drifted, and the validation metric is the same.
    assert max(item["psi"] for item in second.drift) < 0.1
    assert outcomes[0].status == "promoted"


def test_an_unknown_model_is_refused(shop: Workspace) -> None:
    with pytest.raises(InvalidInput, match="unknown model 'magic'"):
        trainer(shop).run(["magic"])
