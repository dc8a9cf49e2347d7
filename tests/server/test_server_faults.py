"""Server mode under faults, with real processes and servers: a worker SIGKILLed mid-batch,
an API process SIGKILLed while clients send, Redis restarted under ingestion, PostgreSQL
connections dropped under processing. Nothing acknowledged is lost; nothing is applied
twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import servers
from tests.conftest import WRITE_KEY, basic, server_config, write_config
from touchpoint.config.settings import Settings, load_settings
from touchpoint.log.leases.redis import RedisLeases
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace
from touchpoint.testing import RedisServer, ServerProcess, WorkerProcess

pytestmark = pytest.mark.slow

PEOPLE = 60
GROUP = "profiles"


def _settings(tmp_path: Path, schema: str, prefix: str, **overrides: object) -> Settings:
    data = server_config(schema, prefix, stream={"lease_ttl": "2s"}, **overrides)
    path = write_config(tmp_path, data)
    return load_settings(path, tmp_path / "data", environ={})


@pytest.fixture
def settings(tmp_path: Path, postgres_schema: str, redis_prefix: str) -> Settings:
    return _settings(tmp_path, postgres_schema, redis_prefix)


@pytest.fixture
def observer(settings: Settings) -> Iterator[Workspace]:
    """The test's own view of the stores (it sends directly and reads profiles back)."""
    workspace = Workspace.open(settings)
    yield workspace
    workspace.close()


def _orders(start: int, count: int) -> list[dict]:
    return [
        {
            "type": "track",
            "messageId": f"m-{number}",
            "userId": f"person-{number % PEOPLE}",
            "event": "Order Completed",
            "properties": {"revenue": 1, "order": number},
        }
        for number in range(start, start + count)
    ]


def _send(workspace: Workspace, total: int, batch: int = 500) -> None:
    source = workspace.settings.config.sources[0]
    for start in range(0, total, batch):
        result = workspace.collector.collect(source, _orders(start, min(batch, total - start)))
        assert result.accepted == min(batch, total - start)


def _lag(workspace: Workspace) -> int:
    return sum(workspace.log.lag(GROUP).values())


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _revenue(workspace: Workspace, people: int = PEOPLE) -> dict[int, float]:
    totals = {}
    for person in range(people):
        profile_id = workspace.profiles.find(Identity("user_id", f"person-{person}"))
        profile = workspace.profiles.get(profile_id) if profile_id else None
        totals[person] = float(profile.features["revenue"]) if profile else 0.0
    return totals


def _expected(total: int) -> dict[int, float]:
    return {person: float(len(range(person, total, PEOPLE))) for person in range(PEOPLE)}


def test_sigkill_a_worker_mid_batch_loses_and_doubles_nothing(
    settings: Settings, observer: Workspace
) -> None:
    total = 12_000
    _send(observer, total)
    config = str(settings.config_path)
    workers = [WorkerProcess(settings.data_dir, "--config", config).start() for _ in range(2)]
    try:
        _wait(lambda: _lag(observer) < total * 0.8, 60, "the workers to start processing")
        workers[0].kill()  # mid-batch: the workers spend nearly all their time in batches
        _wait(lambda: _lag(observer) == 0, 90, "the survivor to process everything")
        assert workers[1].alive, workers[1].log_tail()
    finally:
        for worker in workers:
            worker.stop()
    assert _revenue(observer) == _expected(total)


def test_postgres_connections_dropped_under_processing_are_retried_without_half_updates(
    settings: Settings, observer: Workspace
) -> None:
    total = 6_000
    _send(observer, total)
    worker = WorkerProcess(settings.data_dir, "--config", str(settings.config_path)).start()
    application = f"touchpoint:{settings.config.postgres.schema_name}"
    dropped = 0
    try:
        # Once it holds its partitions (past its start, whose own failure is a clear exit,
        # not something to retry), the worker is processing.
        assert observer.services.redis is not None
        leases = RedisLeases(observer.services.redis)
        _wait(lambda: bool(leases.owners(GROUP)), 30, "the worker to join its group")
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as admin:
            # Drop the worker's connections for a while (every retry of a batch dies too),
            # then let it recover and finish.
            until = time.monotonic() + 4.0
            while _lag(observer) > 0 and time.monotonic() < until:
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s "
                    "AND state IN ('active', 'idle in transaction')",
                    (application,),
                ).fetchall()
                dropped += len(rows)
                time.sleep(0.05)
        assert dropped, "no connection was dropped while the worker processed"
        _wait(lambda: _lag(observer) == 0, 90, "the worker to recover and finish")
        assert worker.alive, worker.log_tail()
    finally:
        worker.stop()
    assert _revenue(observer) == _expected(total)


def _sender(url: str, start: int, acknowledged: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=5.0) as client:
        number = start
        while not stop.is_set():
            batch = _orders(number, 50)
            number += 50
            try:
                response = client.post(
                    f"{url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
                )
            except httpx.HTTPError:
                return  # the server died mid-request: not acknowledged
            if response.status_code == 200:
                acknowledged.extend(event["messageId"] for event in batch)


def _applied_message_ids(workspace: Workspace) -> list[str]:
    found = []
    for person in range(PEOPLE):
        profile_id = workspace.profiles.find(Identity("user_id", f"person-{person}"))
        cursor = None
        while profile_id is not None:
            page = workspace.profiles.events(profile_id, cursor=cursor, limit=500)
            found.extend(event.message_id for event in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return found


def test_sigkill_an_api_process_while_clients_send_keeps_every_acknowledged_event(
    settings: Settings, observer: Workspace
) -> None:
    config = str(settings.config_path)
    server = ServerProcess(settings.data_dir, "--config", config).start()
    acknowledged: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(target=_sender, args=(server.url, index * 1_000_000, acknowledged, stop))
        for index in range(3)
    ]
    for thread in senders:
        thread.start()
    _wait(lambda: len(acknowledged) >= 3_000, 30, "clients to get acknowledgements")
    server.kill()
    stop.set()
    for thread in senders:
        thread.join(10)
    restarted = ServerProcess(settings.data_dir, "--config", config).start()
    try:
        _wait(lambda: _lag(observer) == 0, 60, "the restarted server to process the log")
    finally:
        restarted.stop()
    applied = _applied_message_ids(observer)
    assert len(applied) == len(set(applied)), "an event was applied twice"
    missing = set(acknowledged) - set(applied)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"


def test_ingestion_answers_503_while_redis_is_down_and_recovers_by_itself(
    tmp_path: Path, postgres_schema: str
) -> None:
    redis = RedisServer(tmp_path / "redis")
    data = server_config(postgres_schema, "faults")
    data["redis"] = {"url": redis.url, "prefix": "faults", "socket_timeout": "1s"}
    config = write_config(tmp_path, data)
    server = ServerProcess(tmp_path / "data", "--config", str(config))
    try:
        redis.start()
        server.start()
        with httpx.Client(timeout=10.0) as client:

            def send(start: int) -> httpx.Response:
                return client.post(
                    f"{server.url}/v1/batch",
                    json={"batch": _orders(start, 20)},
                    headers=basic(WRITE_KEY),
                )

            assert send(0).status_code == 200
            redis.kill()
            refused = send(20)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"].isdigit()
            assert refused.json()["error"]["code"] == "unavailable"
            redis.start()
            _wait(lambda: send(40).status_code == 200, 20, "ingestion to recover")
            observer = Workspace.open(load_settings(config, tmp_path / "data", environ={}))
            try:
                _wait(lambda: _lag(observer) == 0, 30, "the processor to recover")
                applied = set(_applied_message_ids(observer))
            finally:
                observer.close()
            assert {f"m-{n}" for n in range(20)} <= applied
            assert not {f"m-{n}" for n in range(20, 40)} & applied  # refused: never stored
    finally:
        server.stop()
        redis.stop()
