"""Kill the server (SIGKILL) while clients send; every acknowledged event survives, once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_CONFIG, WRITE_KEY, basic, write_config
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow


def batches(client_index: int, count: int) -> list[list[dict]]:
    return [
        [
            {
                "type": "track",
                "messageId": f"c{client_index}-b{number}-e{index}",
                "anonymousId": f"visitor-{client_index}-{index % 7}",
                "event": "Product Viewed",
                "properties": {"product_id": f"p{index}"},
            }
            for index in range(50)
        ]
        for number in range(count)
    ]


def sender(
    url: str, work: list[list[dict]], acknowledged: list[str], stop: threading.Event
) -> None:
    with httpx.Client(timeout=5.0) as client:
        for batch in work:
            if stop.is_set():
                return
            try:
                response = client.post(
                    f"{url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
                )
            except httpx.HTTPError:
                return  # the server died mid-request: this batch was not acknowledged
            if response.status_code == 200:
                acknowledged.extend(event["messageId"] for event in batch)


def test_sigkill_while_sending_loses_no_acknowledged_event(tmp_path: Path) -> None:
    config = write_config(tmp_path, TEST_CONFIG)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, "--config", str(config)).start()
    work = [batches(client, 400) for client in range(4)]
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(server.url, part, acknowledged, stop))
        for part in work
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert acknowledged, "no batch was acknowledged before the kill"

    # Restart on the same data, and have every client resend everything (acknowledged or not).
    restarted = ServerProcess(data_dir, "--config", str(config)).start()
    try:
        with httpx.Client(timeout=10.0) as client:
            for part in work:
                for batch in part[:50]:
                    response = client.post(
                        f"{restarted.url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
                    )
                    assert response.status_code == 200
    finally:
        restarted.stop()

    log = SqliteEventLog(data_dir / "log.sqlite3", partitions=8, dedup_window=timedelta(hours=24))
    try:
        logged = Counter(
            entry.message_id
            for partition in range(log.partitions)
            for entry in log.read(partition, 0, limit=10_000_000)
        )
    finally:
        log.close()
    missing = [message_id for message_id in acknowledged if message_id not in logged]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    doubled = [message_id for message_id, count in logged.items() if count != 1]
    assert not doubled, f"{len(doubled)} events logged more than once, e.g. {doubled[:3]}"
