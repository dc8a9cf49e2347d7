"""Background jobs: the runner's timing and failure handling, and the workspace's schedule
(the rejected store's retention always, model training when `models.schedule` is set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_CONFIG, write_config
from touchpoint.config.settings import load_settings
from touchpoint.config.workspace import parse_config
from touchpoint.core.errors import DefinitionError
from touchpoint.jobs import JobRunner, PeriodicJob
from touchpoint.runtime import Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_jobs_run_when_due_and_a_failure_does_not_stop_the_others() -> None:
    clock = Clock()
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    jobs = [PeriodicJob("often", 10, lambda: ran.append("often")), PeriodicJob("rare", 60, broken)]
    runner = JobRunner(jobs, clock=clock)
    assert runner.run_due() == 2  # nothing ran yet: everything is due
    clock.now = 15
    assert runner.run_due() == 1 and ran[-1] == "often"
    clock.now = 61
    assert runner.run_due() == 2 and ran[-1] == "broken"
    clock.now = 75
    assert runner.run_due() == 1 and ran[-1] == "often"
    assert jobs[1].failures == 2 and jobs[0].runs == 4


def test_a_schedule_shorter_than_a_minute_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"models\.schedule\.every"):
        parse_config({"models": {"schedule": {"every": "30s"}}})
    with pytest.raises(DefinitionError, match="unknown model 'magic'"):
        parse_config({"models": {"train": ["magic"]}})


def open_workspace(tmp_path: Path, **models: object) -> Workspace:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path, {**TEST_CONFIG, "models": models})
    return Workspace.open(load_settings(config, tmp_path / "data", environ={}))


def test_the_workspace_schedules_training_only_when_configured(tmp_path: Path) -> None:
    plain = open_workspace(tmp_path / "plain")
    scheduled = open_workspace(tmp_path / "scheduled", schedule={"every": "1h"})
    try:
        assert [job.name for job in plain.start_jobs().jobs] == ["rejected"]
        jobs = scheduled.start_jobs().jobs
        assert [job.name for job in jobs] == ["rejected", "models"]
        assert jobs[1].interval == 3600
    finally:
        plain.close()
        scheduled.close()


def test_scheduled_training_takes_turns_between_processes(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path, schedule={"every": "1h"}, train=["rfm"])
    try:
        assert workspace.registry is not None
        with workspace.registry.exclusive("training"):
            assert workspace.train_on_schedule() == []  # another process holds the lock
        outcomes = workspace.train_on_schedule()
        assert [(o.model, o.status) for o in outcomes] == [("rfm", "skipped")]
    finally:
        workspace.close()


def test_a_serving_workspace_runs_the_consumers_and_the_rejected_store_s_retention(
    workspace: Workspace,
) -> None:
    workspace.start_background()
    try:
        consumers = workspace.loops.consumers()
        assert [consumer.group for consumer in consumers] == ["profiles", "outcomes", "warehouse"]
        assert all(consumer.running and consumer.coordinator for consumer in consumers)
        assert workspace.jobs is not None
        assert [job.name for job in workspace.jobs.jobs] == ["rejected"]
    finally:
        workspace.loops.stop()
    assert not workspace.loops.running
