"""Two processors of one group share the log's partitions: every event is applied once, one
person's events in order, and a processor that dies hands its partitions (and what it had
read but not committed) over to the survivor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_CONFIG, write_config
from touchpoint.config.settings import Settings, load_settings
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

PEOPLE = 24
# Long enough that a batch on a loaded machine (PostgreSQL, two test processes) never
# outlasts a member's lease, short enough that the expiry test waits little.
LEASE = 1.5


def _config(**overrides: object) -> dict:
    return {**TEST_CONFIG, "stream": {"lease_ttl": f"{int(LEASE * 1000)}ms"}, **overrides}


@pytest.fixture(params=["embedded", "server"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "embedded":
        data = _config()
    else:
        from tests.conftest import server_config

        schema = request.getfixturevalue("postgres_schema")
        prefix = request.getfixturevalue("redis_prefix")
        data = {**server_config(schema, prefix), "stream": _config()["stream"]}
    path = write_config(tmp_path, data)
    return load_settings(path, tmp_path / "data", environ={})


@pytest.fixture
def pair(settings: Settings) -> Iterator[tuple[Workspace, Workspace]]:
    """Two processes' workspaces on the same stores, each processor a member of the group."""
    first, second = Workspace.open(settings), Workspace.open(settings)
    yield first, second
    second.close()
    first.close()


def _send(workspace: Workspace, start: int, count: int) -> None:
    source = workspace.settings.config.sources[0]
    messages = [
        {
            "type": "track",
            "messageId": f"m-{number}",
            "userId": f"person-{number % PEOPLE}",
            "event": "Order Completed",
            "properties": {"revenue": 1, "order": number},
        }
        for number in range(start, start + count)
    ]
    result = workspace.collector.collect(source, messages)
    assert result.accepted == count


def _revenue(workspace: Workspace) -> dict[int, float]:
    totals = {}
    for person in range(PEOPLE):
        profile_id = workspace.profiles.find(Identity("user_id", f"person-{person}"))
        profile = workspace.profiles.get(profile_id) if profile_id else None
        totals[person] = float(profile.features["revenue"]) if profile else 0.0
    return totals


def _expected(total: int) -> dict[int, float]:
    return {person: float(len(range(person, total, PEOPLE))) for person in range(PEOPLE)}


def _drain(*workspaces: Workspace) -> None:
    for _ in range(200):
        if not sum(workspace.processor.run_once() for workspace in workspaces):
            return
    raise AssertionError("the processors did not drain the log")


def test_two_members_split_the_partitions_and_apply_each_event_once(
    pair: tuple[Workspace, Workspace],
) -> None:
    first, second = pair
    a, b = (
        first.share_partitions(member="a")["profiles"],
        second.share_partitions(member="b")["profiles"],
    )
    for member in (a, b, a, b):  # b joins, a sees b and hands half over, b takes it
        member.refresh(force=True)
    _send(first, 0, 400)
    _drain(first, second)
    assert first.processor.partitions and second.processor.partitions
    assert not set(first.processor.partitions) & set(second.processor.partitions)
    assert set(first.processor.partitions) | set(second.processor.partitions) == set(
        range(first.log.partitions)
    )
    assert first.pipeline.processed + second.pipeline.processed == 400
    assert _revenue(first) == _expected(400)


def test_a_dead_member_s_partitions_and_uncommitted_reads_move_to_the_survivor(
    pair: tuple[Workspace, Workspace],
) -> None:
    first, second = pair
    a, b = (
        first.share_partitions(member="a")["profiles"],
        second.share_partitions(member="b")["profiles"],
    )
    for member in (a, b, a, b):
        member.refresh(force=True)
    _send(first, 0, 200)
    # b reads its partitions' entries and dies before committing: no heartbeat, no leave.
    for partition in second.processor.partitions:
        assert second.log.poll(second.processor.group, "b", partition, 1000)
    _drain(first)  # a applies only its own partitions
    assert first.pipeline.processed < 200
    time.sleep(LEASE + 0.1)  # b's leases expire
    a.refresh(force=True)
    assert set(first.processor.partitions) | set(a.owned) == set(range(first.log.partitions))
    _drain(first)
    assert first.pipeline.processed == 200
    assert _revenue(first) == _expected(200)


def test_a_lone_processor_first_takes_over_what_an_earlier_consumer_left_uncommitted(
    pair: tuple[Workspace, Workspace],
) -> None:
    first, second = pair
    _send(first, 0, 100)
    for partition in range(first.log.partitions):  # a consumer reads, then is killed
        first.log.poll(first.processor.group, "killed", partition, 1000)
    _drain(second)
    assert second.pipeline.processed == 100
    assert _revenue(second) == _expected(100)
