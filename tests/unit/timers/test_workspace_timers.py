"""The durable timers in a running workspace: the timer runner is one of the loops a
serving process or a worker hosts, beside the log's consumers, on the workspace clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from tests.conftest import TEST_START
from touchpoint.config.settings import Settings
from touchpoint.core.clock import ManualClock
from touchpoint.runtime import Workspace
from touchpoint.timers.base import Timer


@dataclass
class Reminder:
    """A handler that records the keys it fired."""

    kind: str = "reminder"
    fired: list[str] = field(default_factory=list)

    def fire(self, timer: Timer) -> None:
        self.fired.append(timer.key)


@pytest.fixture
def manual() -> ManualClock:
    return ManualClock(TEST_START)


@pytest.fixture
def running(settings: Settings, manual: ManualClock) -> Iterator[Workspace]:
    workspace = Workspace.open(settings, clock=manual)
    yield workspace
    workspace.close()


def wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_a_serving_workspace_fires_due_timers_once_on_its_clock(
    running: Workspace, manual: ManualClock
) -> None:
    reminder = Reminder()
    running.timer_runner.register(reminder)
    assert running.timer_runner in list(running.loops)
    running.timers.schedule("now", "reminder", manual.now(), {"n": 1})
    running.timers.schedule("tomorrow", "reminder", manual.now() + timedelta(days=1), {"n": 2})
    running.start_background()
    assert wait_for(lambda: reminder.fired == ["now"])
    time.sleep(0.3)  # a day has not passed on the workspace clock, whatever the wall says
    assert reminder.fired == ["now"]
    manual.advance(timedelta(days=1, seconds=1))
    assert wait_for(lambda: reminder.fired == ["now", "tomorrow"])
    stored = running.timers.get("tomorrow")
    assert stored is not None and stored.state == "fired"
    assert running.timer_runner.wait_idle(5)
    assert reminder.fired == ["now", "tomorrow"]


def test_stopping_the_workspace_stops_the_timer_runner(running: Workspace) -> None:
    running.start_background()
    assert running.timer_runner.running
    running.close()
    assert not running.timer_runner.running
