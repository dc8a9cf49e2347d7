"""The workspace's one clock reaches every part that stamps or measures time: a workspace
on a clock set years ahead stamps everything it writes at that time, and windows measured
from "now" follow it, whatever the wall clock says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import TEST_CONFIG, drain, write_config
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import ManualClock, isoformat
from touchpoint.decide.results import DecideRequest
from touchpoint.runtime import Workspace

FAR = datetime(2031, 3, 1, 9, 30, tzinfo=UTC)


def test_every_part_of_a_workspace_reads_its_clock(tmp_path: Path) -> None:
    clock = ManualClock(FAR)
    settings = load_settings(write_config(tmp_path, TEST_CONFIG), tmp_path / "data", environ={})
    workspace = Workspace.open(settings, clock=clock)
    try:
        source = workspace.settings.config.sources[0]
        views = [
            {"type": "track", "userId": "u1", "event": "Product Viewed"},
            {"type": "track", "userId": "u1", "event": "Product Viewed"},
        ]
        workspace.collector.commit(workspace.collector.prepare(source, views))
        drain(workspace)
        profile = workspace.export_person("user_id", "u1", actor="test")["profile"]
        assert profile["last_seen"] == isoformat(FAR)  # receivedAt is the clock's time
        assert profile["features"]["views_7d"] == 2
        assert "browsers" in profile["segments"]

        decision = workspace.decider.decide(DecideRequest({"user_id": "u1"}, ("home_hero",)))
        assert decision.placements["home_hero"].content_id == "hero_browser"
        (record,) = workspace.decisions.get(decision.decision_id)
        assert record.at == isoformat(FAR)

        version = workspace.definitions.current()
        assert version is not None and version.applied_at == isoformat(FAR)

        clock.advance(timedelta(days=8))  # the views leave the 7-day window
        later = workspace.decider.decide(DecideRequest({"user_id": "u1"}, ("home_hero",)))
        assert later.placements["home_hero"].content_id == "hero_default"

        job = workspace.eraser.erase("user_id", "u1", actor="test")
        assert job.requested_at == isoformat(FAR + timedelta(days=8))
        entry = workspace.audit.list().items[0]
        assert entry.at == isoformat(FAR + timedelta(days=8))
    finally:
        workspace.close()
