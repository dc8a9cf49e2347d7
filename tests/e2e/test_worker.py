"""`touchpoint worker` as its own process: the API only logs, the worker builds profiles."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, basic, bearer, write_config
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow


def test_a_separate_worker_process_applies_what_the_api_logged(tmp_path: Path) -> None:
    config = write_config(tmp_path, TEST_CONFIG)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, "--config", str(config), "--no-processor").start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        events = [
            {
                "type": "identify",
                "userId": "w-user",
                "anonymousId": "w-anon",
                "traits": {"plan": "pro"},
            },
            {
                "type": "track",
                "anonymousId": "w-anon",
                "event": "Product Viewed",
                "properties": {"product_id": "p1"},
            },
        ]
        response = httpx.post(
            f"{server.url}/v1/batch", json={"batch": events}, headers=basic(WRITE_KEY)
        )
        assert response.json()["accepted"] == 2
        time.sleep(0.3)
        assert httpx.get(f"{server.url}/healthz").json()["lag"] == 2  # nobody processes yet

        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "touchpoint",
                "worker",
                "--config",
                str(config),
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        profile: dict = {}
        while time.monotonic() < deadline:
            found = httpx.get(
                f"{server.url}/v1/profiles/anonymous_id/w-anon", headers=bearer(SECRET_KEY)
            )
            if found.status_code == 200 and found.json()["features"]["recent_products"]:
                profile = found.json()
                break
            time.sleep(0.1)
        assert profile, "the worker never applied the events"
        assert profile["identities"]["user_id"] == ["w-user"]
        assert profile["traits"]["plan"] == "pro"
        assert httpx.get(f"{server.url}/healthz").json()["lag"] == 0

        worker.terminate()
        assert worker.wait(15) == 0, "the worker did not stop cleanly on SIGTERM"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.stop()
