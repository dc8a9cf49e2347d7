"""Plain `touchpoint serve` as production runs it: its background jobs run (the warehouse
copy), and SIGTERM (what systemd, Docker and Kubernetes send) closes the workspace as
Ctrl-C does, leaving no WAL file behind."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_CONFIG, WRITE_KEY, basic, write_config
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow

FAST_WAREHOUSE = {"warehouse": {"flush_interval": "1s", "sync_interval": "1s"}}


def _send(server: ServerProcess, count: int) -> None:
    events = [
        {"type": "track", "anonymousId": f"anon-{n}", "event": "Product Viewed"}
        for n in range(count)
    ]
    response = httpx.post(
        f"{server.url}/v1/batch", json={"batch": events}, headers=basic(WRITE_KEY)
    )
    assert response.status_code == 200 and response.json()["accepted"] == count


def test_plain_serve_runs_its_background_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path, {**TEST_CONFIG, **FAST_WAREHOUSE})
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, "--config", str(config)).start()
    try:
        _send(server, 25)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(
            (data_dir / "warehouse" / "events").glob("date=*/*.parquet")
        ):
            time.sleep(0.2)
        assert list((data_dir / "warehouse" / "events").glob("date=*/*.parquet")), (
            "serve never copied its events to the warehouse: its background jobs do not run\n"
            + server.log_tail()
        )
    finally:
        server.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stop_signal_closes_the_workspace(tmp_path: Path, signum: signal.Signals) -> None:
    config = write_config(tmp_path, TEST_CONFIG)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, "--config", str(config)).start()
    try:
        _send(server, 10)
        assert server.process is not None
        server.process.send_signal(signum)
        code = server.process.wait(30)
    finally:
        server.stop()  # a no-op once it has exited
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the process ends by it
    # (as systemd and Kubernetes expect); Ctrl-C ends with 0.
    assert code in (0, -signal.SIGTERM), server.log_tail()
    leftovers = sorted(path.name for path in data_dir.rglob("*-wal"))
    assert leftovers == [], f"the workspace was not closed: {leftovers}\n{server.log_tail()}"
