"""Model outputs written into profiles: scores, batch segment families, recommendations."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WRITE_KEY, drain
from touchpoint.core.conditions import compile_condition
from touchpoint.models.outputs import ProfileOutputs
from touchpoint.profiles.model import Identity
from touchpoint.profiles.view import profile_document
from touchpoint.runtime import Workspace

RFM = ("rfm_champions", "rfm_at_risk", "rfm_lost")


@pytest.fixture(params=["embedded", "server"])
def workspace(request: pytest.FixtureRequest) -> Workspace:
    """Each test on the embedded stores and in server mode (PostgreSQL stores, Redis Streams
    log; skipped locally without the servers, a failure in CI)."""
    name = "workspace" if request.param == "embedded" else "server_workspace"
    opened: Workspace = request.getfixturevalue(name)
    return opened


def people(workspace: Workspace, *names: str) -> dict[str, str]:
    source = workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    events: list[dict[str, Any]] = [
        {"type": "track", "userId": name, "event": "Product Viewed"} for name in names
    ]
    workspace.collector.collect(source, events)
    drain(workspace)
    found = {name: workspace.profiles.find(Identity("user_id", name)) for name in names}
    return {name: profile_id for name, profile_id in found.items() if profile_id}


def test_scores_are_set_and_usable_in_conditions(workspace: Workspace) -> None:
    ids = people(workspace, "ada", "bob")
    outputs = ProfileOutputs(workspace.profiles, batch=1)
    counts = outputs.write_scores(
        {ids["ada"]: {"propensity_30d": 0.81}, ids["bob"]: {"propensity_30d": 0.2}}
    )
    assert counts.profiles == 2 and counts.missing == 0
    ada = workspace.profiles.get(ids["ada"])
    assert ada is not None and ada.scores == {"propensity_30d": 0.81}
    condition = compile_condition("score.propensity_30d > 0.6")
    document = profile_document(ada, workspace.features, workspace.clock.now())
    assert condition(document, workspace.clock.now())
    again = outputs.write_scores({ids["ada"]: {"propensity_30d": 0.81}, "gone": {"x": 1.0}})
    assert (again.profiles, again.missing) == (0, 1)


def test_a_segment_family_moves_people_between_its_segments(workspace: Workspace) -> None:
    ids = people(workspace, "ada", "bob", "cy")
    outputs = ProfileOutputs(workspace.profiles)
    first = outputs.write_segments(
        RFM, {ids["ada"]: "rfm_champions", ids["bob"]: "rfm_at_risk", ids["cy"]: "rfm_lost"}
    )
    assert (first.entered, first.exited) == (3, 0)
    second = outputs.write_segments(RFM, {ids["ada"]: "rfm_at_risk", ids["bob"]: "rfm_at_risk"})
    assert (second.entered, second.exited) == (1, 2)  # ada moved, cy left the family
    sizes = workspace.profiles.segment_sizes()
    assert sizes.get("rfm_at_risk") == 2 and "rfm_champions" not in sizes
    assert "rfm_lost" not in sizes
    changes = [change for _, change in workspace.profiles.segment_changes()]
    assert any(c.segment == "rfm_lost" and c.change == "exit" for c in changes)


def test_batch_segments_survive_the_stream_processor(workspace: Workspace) -> None:
    """Real-time evaluation only changes the segments it owns."""
    ids = people(workspace, "ada")
    ProfileOutputs(workspace.profiles).write_segments(RFM, {ids["ada"]: "rfm_champions"})
    people(workspace, "ada")  # another event: segments re-evaluated
    ada = workspace.profiles.get(ids["ada"])
    assert ada is not None and "rfm_champions" in ada.segments


def test_recommendations_are_stored_with_their_version(workspace: Workspace) -> None:
    ids = people(workspace, "ada")
    outputs = ProfileOutputs(workspace.profiles)
    outputs.write_recommendations(
        {ids["ada"]: [("shoe", 0.9), ("hat", 0.5)]}, model="recommendations", version=3
    )
    ada = workspace.profiles.get(ids["ada"])
    assert ada is not None
    assert ada.recommendations["version"] == 3
    assert [item["item_id"] for item in ada.recommendations["items"]] == ["shoe", "hat"]
    document = profile_document(ada, workspace.features, workspace.clock.now())
    assert document["recommendations"] == ["shoe", "hat"]


def test_an_unknown_segment_for_the_family_is_refused(workspace: Workspace) -> None:
    ids = people(workspace, "ada")
    try:
        ProfileOutputs(workspace.profiles).write_segments(RFM, {ids["ada"]: "vip"})
    except ValueError as error:
        assert "vip" in str(error)
    else:
        raise AssertionError("expected a ValueError")


def test_a_non_finite_score_is_left_out(workspace: Workspace) -> None:
    ids = people(workspace, "ada")
    outputs = ProfileOutputs(workspace.profiles)
    outputs.write_scores({ids["ada"]: {"p_active": 0.5, "clv": 3.0}})
    outputs.write_scores({ids["ada"]: {"p_active": float("nan"), "clv": 4.0}})
    ada = workspace.profiles.get(ids["ada"])
    assert ada is not None and ada.scores == {"clv": 4.0}
