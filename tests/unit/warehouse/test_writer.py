"""The warehouse copy behind the profile pipeline (its own consumer group, following
`profiles`), on a real embedded workspace and in server mode."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WRITE_KEY, drain
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.runtime import Workspace


@pytest.fixture(params=["embedded", "server"])
def workspace(request: pytest.FixtureRequest) -> Workspace:
    """Each test on the embedded stores and in server mode (PostgreSQL stores, Redis Streams
    log; skipped locally without the servers, a failure in CI)."""
    name = "workspace" if request.param == "embedded" else "server_workspace"
    opened: Workspace = request.getfixturevalue(name)
    return opened


def collect(workspace: Workspace, *events: dict[str, Any]) -> None:
    source = workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    result = workspace.collector.collect(source, list(events))
    assert result.accepted == len(events), result


def views(person: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "userId": person,
            "event": "Product Viewed",
            "messageId": f"{person}-{index}",
            "properties": {"product_id": f"p{index % 3}"},
        }
        for index in range(start, start + count)
    ]


def test_only_applied_events_are_copied_with_their_profile(workspace: Workspace) -> None:
    writer = workspace.warehouse_writer
    assert writer is not None and workspace.warehouse is not None
    collect(workspace, *views("ada", 5))
    assert writer.run_once().skipped == "empty"  # the processor has not run yet
    drain(workspace)
    assert writer.run_once().rows == 5
    profile_id = workspace.profiles.find(workspace.resolver.extract({"userId": "ada"})[0])
    rows = workspace.warehouse.query("SELECT DISTINCT profile_id, user_id FROM events")
    assert rows.to_pylist() == [{"profile_id": profile_id, "user_id": "ada"}]


def test_a_second_run_copies_nothing_twice(workspace: Workspace) -> None:
    writer = workspace.warehouse_writer
    assert writer is not None and workspace.warehouse is not None
    collect(workspace, *views("ada", 4))
    drain(workspace)
    writer.run_once()
    collect(workspace, *views("ada", 3, start=4))
    drain(workspace)
    assert writer.run_once().rows == 3
    assert writer.run_once().skipped == "empty"
    sample = workspace.metrics.registry.get_sample_value
    assert sample("touchpoint_warehouse_copied_events_total") == 7
    assert sample("touchpoint_warehouse_event_files") == len(workspace.warehouse.event_files())
    assert (sample("touchpoint_warehouse_last_copy_timestamp_seconds") or 0) > 0
    count = workspace.warehouse.query(
        "SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events"
    )
    assert count.to_pylist() == [{"n": 7, "d": 7}]


def test_a_copy_cut_short_before_its_manifest_change_is_redone_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the files are written and before the manifest names them: the files
    are never read, the next copy redoes the range once and deletes them."""
    writer, warehouse = workspace.warehouse_writer, workspace.warehouse
    assert writer is not None and warehouse is not None
    collect(workspace, *views("ada", 6), *views("bob", 6))
    drain(workspace)
    commit = warehouse._commit

    def crash(*args: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(warehouse, "_commit", crash)
    with pytest.raises(OSError):
        writer.run_once()
    leftovers = list(warehouse.events_dir.glob("date=*/*.parquet"))
    assert leftovers and warehouse.event_files() == []
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
    monkeypatch.setattr(warehouse, "_commit", commit)
    assert writer.run_once().rows == 12
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 12}]
    assert not any(path.exists() for path in leftovers)


def test_a_trickle_waits_for_enough_rows_or_enough_time(workspace: Workspace) -> None:
    writer = workspace.warehouse_writer
    assert writer is not None
    now = [workspace.clock.time() + 5]
    consumer = LogConsumer(workspace.log, writer, time=lambda: now[0])
    writer.flush_rows, writer.flush_interval = 10, 60.0
    collect(workspace, *views("ada", 3))
    assert consumer.run_once() == 0 and consumer.idle()  # the profiles have not run yet
    drain(workspace)
    assert consumer.run_once() == 0 and not consumer.idle()  # waiting: 3 rows, all young
    now[0] += 120  # the oldest pending entry is now old enough
    assert consumer.run_once() == 3 and writer.rows_written == 3
    collect(workspace, *views("bob", 12))
    drain(workspace)
    now[0] = workspace.clock.time()  # all of them young
    assert consumer.run_once() == 12  # enough rows: no need to wait
    assert workspace.log.lag("warehouse") == workspace.log.lag("profiles")
    assert workspace.warehouse is not None and len(workspace.warehouse.event_files()) == 2


def test_the_hosted_consumer_copies_behind_the_profiles(workspace: Workspace) -> None:
    consumer = workspace.loops.consumer("warehouse")
    assert consumer.follows == "profiles" and consumer.handler is workspace.warehouse_writer
    workspace.warehouse_writer.flush_rows = 5
    collect(workspace, *views("ada", 5))
    assert consumer.run_once() == 0  # nothing is applied yet
    drain(workspace)
    assert consumer.run_once() == 5
    assert workspace.warehouse is not None
    assert workspace.warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 5}]


def test_what_the_manifest_holds_is_never_copied_twice(workspace: Workspace) -> None:
    """A copy whose group commit was lost (a crash after the manifest change), or made by
    `touchpoint warehouse sync` meanwhile: the consumer skips what the manifest holds."""
    writer, warehouse = workspace.warehouse_writer, workspace.warehouse
    assert writer is not None and warehouse is not None
    writer.flush_rows = 1
    consumer = workspace.loops.consumer("warehouse")
    collect(workspace, *views("ada", 4))
    drain(workspace)
    entries = [
        entry
        for partition in range(workspace.log.partitions)
        for entry in workspace.log.read(partition, 0, 100)
    ]
    writer.handle(entries)  # copied; the consumer's commit never happened
    collect(workspace, *views("bob", 2))
    drain(workspace)
    assert writer.run_once().rows == 2  # the CLI's sync
    assert consumer.run_once() == 6  # handed over again, copied nothing new
    count = warehouse.query("SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events")
    assert count.to_pylist() == [{"n": 6, "d": 6}]
    assert consumer.idle()


def test_erasure_reaches_the_warehouse(workspace: Workspace) -> None:
    writer = workspace.warehouse_writer
    assert writer is not None and workspace.warehouse is not None
    collect(workspace, *views("ada", 3), *views("bob", 2))
    drain(workspace)
    writer.run_once()
    job = workspace.eraser.erase("user_id", "ada", actor="test")
    assert job.erased["warehouse"]["events"] == 3
    left = workspace.warehouse.query("SELECT DISTINCT user_id FROM events").to_pylist()
    assert left == [{"user_id": "bob"}]


def test_events_without_consent_arrive_anonymized(workspace: Workspace) -> None:
    writer = workspace.warehouse_writer
    assert writer is not None and workspace.warehouse is not None
    opt_out = {"consent": {"analytics": False}}
    collect(
        workspace,
        {"type": "track", "userId": "carol", "event": "Consent Updated", "properties": opt_out},
        {"type": "track", "userId": "carol", "event": "Product Viewed", "messageId": "viewed"},
    )
    drain(workspace)
    writer.run_once()
    viewed = workspace.warehouse.query(
        "SELECT user_id, anonymous_id, profile_id, event FROM events WHERE message_id = 'viewed'"
    ).to_pylist()
    assert viewed == [
        {"user_id": None, "anonymous_id": None, "profile_id": None, "event": "Product Viewed"}
    ]
