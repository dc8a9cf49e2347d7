"""`touchpoint train` end to end on an embedded workspace: simulated shop history through
the collector, the processor and the warehouse, then every model in turn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import TEST_CONFIG, drain, write_config
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import Clock
from touchpoint.core.errors import InvalidInput
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import simulate_visitors
from touchpoint.models.registry import ModelRegistry
from touchpoint.models.training import Trainer, TrainOutcome
from touchpoint.runtime import Workspace

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # fixed: the same data and cutoffs every run
SEGMENT_MODELS = ["rfm", "clusters", "lifecycle"]
SCORE_MODELS = ["propensity", "churn", "lifetime"]


def open_workspace(directory: Path) -> Workspace:
    config = write_config(directory, TEST_CONFIG)
    # The workspace's clock starts at NOW, the date the simulated data and cutoffs are
    # fixed to: the wall clock would put receipts, features and segments months later.
    return Workspace.open(
        load_settings(config, directory / "data", environ={}), clock=Clock.starting_at(NOW)
    )


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
        [*SEGMENT_MODELS, *SCORE_MODELS], as_of=NOW, progress=lambda m, s: steps.append((m, s))
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
    reasons = {outcome.model: outcome.reason for outcome in outcomes}
    assert reasons.pop("lifetime") == "no 'Order Completed' events yet"
    assert all("people in the warehouse" in reason for reason in reasons.values())


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
    assert "expected_purchases_30d" not in profile.scores  # lifetime value: buyers only
    buyer = shop.profiles.segment_members("rfm_champions", limit=1).items or (
        shop.profiles.segment_members("rfm_loyal", limit=1).items
    )
    scored = shop.profiles.get(buyer[0][0])
    assert scored is not None
    assert {"churn_30d", "expected_purchases_30d", "p_active", "expected_value_30d"} <= set(
        scored.scores
    )
    assert first_run["lifetime"].metrics["mae"] >= 0


def test_a_second_run_records_drift_against_the_serving_version(
    shop: Workspace, first_run: dict[str, TrainOutcome]
) -> None:
    registry = ModelRegistry(shop.settings.data_dir / "models")
    outcomes = trainer(shop).run(["propensity"], as_of=NOW)
    assert outcomes[0].version == 2
    second = registry.get("propensity", 2)
    assert second.drift and {"feature", "psi", "ks_statistic", "ks_pvalue"} <= set(second.drift[0])
    assert second.drift[0]["against_version"] == 1
    # The same data: nothing drifted, and the validation metric is the same.
    assert max(item["psi"] for item in second.drift) < 0.1
    assert outcomes[0].status == "promoted"
    # /metrics reads the serving version, its metrics and its drift from the registry.
    sample = shop.metrics.registry.get_sample_value
    assert sample("touchpoint_model_version", {"model": "propensity"}) == 2
    assert sample("touchpoint_model_metric", {"model": "propensity", "metric": "auc"}) == (
        pytest.approx(second.metrics["auc"])
    )
    feature = second.drift[0]["feature"]
    labels = {"model": "propensity", "feature": feature}
    assert sample("touchpoint_model_feature_psi", labels) == pytest.approx(second.drift[0]["psi"])
    assert sample("touchpoint_model_feature_ks", labels) is not None


def test_an_unknown_model_is_refused(shop: Workspace) -> None:
    with pytest.raises(InvalidInput, match="unknown model 'magic'"):
        trainer(shop).run(["magic"])


RECS_DEFINITIONS = {
    "placements": [{"name": "recs", "fallback": "recs_default"}],
    "content": [
        {"id": "recs_default", "placements": ["recs"], "payload": {"items": []}},
        {
            "id": "recs_for_you",
            "placements": ["recs"],
            "priority": 10,
            "recommendations": {"k": 4},
            "template": "{% for item in items %}<i>{{ item.item_id }}</i>{% endfor %}",
        },
    ],
}


def apply_recs(workspace: Workspace) -> None:
    from touchpoint.definitions.model import parse_definitions

    workspace.definitions.apply(parse_definitions(RECS_DEFINITIONS), actor="test")
    workspace.decider.refresh()


def test_decide_fills_a_placement_from_the_trained_recommender(shop: Workspace) -> None:
    from touchpoint.decide.results import DecideRequest

    outcome = trainer(shop).run(["recommendations"], as_of=NOW)[0]
    assert outcome.status == "promoted", outcome.reason
    assert outcome.metrics["ndcg@10"] > 0 and outcome.written["profiles"] > 0
    apply_recs(shop)
    page = shop.profiles.profile_ids(limit=2000)
    precomputed = next(
        profile
        for profile_id in page.items
        if (profile := shop.profiles.get(profile_id)) is not None and profile.recommendations
    )
    anonymous = next(i.value for i in precomputed.identities if i.kind == "anonymous_id")
    result = shop.decider.decide(DecideRequest({"anonymous_id": anonymous}, ["recs"]))
    shown = result.placements["recs"]
    assert shown.content_id == "recs_for_you"
    assert shown.payload is not None
    assert shown.payload["recommender"]["source"] == "precomputed"
    expected = [item["item_id"] for item in precomputed.recommendations["items"][:4]]
    assert [item["item_id"] for item in shown.payload["items"]] == expected
    assert shown.html == "".join(f"<i>{item}</i>" for item in expected)
    stranger = shop.decider.decide(DecideRequest({"anonymous_id": "never-seen"}, ["recs"]))
    assert stranger.placements["recs"].payload["recommender"]["source"] == "popular"


def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(shop: Workspace) -> None:
    from touchpoint.models.recommend.catalog import load_recommender

    registry = ModelRegistry(shop.settings.data_dir / "models")
    if registry.current("recommendations") is None:  # whichever test of the module ran first
        trainer(shop).run(["recommendations"], as_of=NOW)
    newest = trainer(shop).run(["recommendations"], as_of=NOW)[0]
    assert newest.version is not None and newest.version >= 2
    registry.promote("recommendations", newest.version, force=True)
    serving = registry.current("recommendations")
    assert serving is not None and serving.version == newest.version
    for path in registry.path("recommendations", serving.version).iterdir():
        if path.suffix == ".npz":
            path.write_bytes(b"broken")
    loaded = registry.load("recommendations", load_recommender)
    assert loaded is not None and loaded[0].version == serving.version - 1


def test_without_a_model_decisions_fill_from_popular_items(tmp_path: Path) -> None:
    from touchpoint.decide.results import DecideRequest

    workspace = open_workspace(tmp_path)
    try:
        source = workspace.settings.config.sources[0]
        views = [
            {"type": "track", "userId": f"u{n}", "event": "Product Viewed",
             "properties": {"product_id": f"p{n % 3}"}}
            for n in range(9)
        ]  # fmt: skip
        workspace.collector.collect(source, views)
        drain(workspace)
        outcomes = trainer(workspace).run(["recommendations"])
        assert outcomes[0].status == "skipped"  # too little data to train
        apply_recs(workspace)
        result = workspace.decider.decide(DecideRequest({"user_id": "u1"}, ["recs"]))
        shown = result.placements["recs"]
        assert shown.payload is not None and shown.payload["recommender"]["source"] == "popular"
        assert [item["item_id"] for item in shown.payload["items"]][:1] == ["p0"]
    finally:
        workspace.close()


def test_batch_segments_are_listed_beside_the_realtime_ones(
    shop: Workspace, first_run: dict[str, TrainOutcome]
) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import SECRET_KEY, bearer
    from touchpoint.api.app import create_app

    with TestClient(create_app(shop.settings, workspace=shop)) as client:
        listed = client.get("/v1/segments", headers=bearer(SECRET_KEY)).json()["segments"]
        kinds = {segment["name"]: segment for segment in listed}
        assert kinds["buyers"]["kind"] == "realtime"
        rfm = [segment for segment in listed if segment["name"].startswith("rfm_")]
        assert rfm and all(s["kind"] == "batch" and s["model"] == "rfm" for s in rfm)
        members = client.get(f"/v1/segments/{rfm[0]['name']}/members", headers=bearer(SECRET_KEY))
        assert members.status_code == 200 and members.json()["members"]
        missing = client.get("/v1/segments/rfm_nobody/members", headers=bearer(SECRET_KEY))
        assert missing.status_code == 404
