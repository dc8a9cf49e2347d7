"""A full disk, for real: `touchpoint serve` on a small tmpfs fills it. While the disk is
full the server refuses new events (503) and loses none it acknowledged, `/healthz` says
the processor fails (503, with the reason), and once 16 MB are freed the workspace resumes
by itself: the processor catches up, `/healthz` is 200 again and new events are taken.
(With 8 MB freed it resumes, but catching up on the backlog fills the disk again.)

Mounting a tmpfs needs root (as CI runs here); elsewhere the test skips, saying so."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_CONFIG, WRITE_KEY, basic, write_config
from touchpoint.config.settings import load_settings
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow

DISK_MB = 40
FREED_BYTES = 16_000_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/healthz", timeout=10)


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_a_full_disk_fails_health_loses_nothing_and_recovers(
    small_disk: Path, tmp_path: Path
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * FREED_BYTES)
    data_dir = small_disk / "data"
    config = write_config(tmp_path, TEST_CONFIG)
    server = ServerProcess(data_dir, "--config", str(config)).start()
    acknowledged: set[str] = set()
    try:
        refused = batch = 0
        while refused < 3:
            users = [f"u{batch}-{n}" for n in range(100)]
            batch += 1
            events = [
                {"type": "identify", "userId": user, "traits": {"blob": os.urandom(1000).hex()}}
                for user in users
            ]
            response = httpx.post(
                f"{server.url}/v1/batch",
                json={"batch": events},
                headers=basic(WRITE_KEY),
                timeout=30,
            )
            if response.status_code == 200:
                assert response.json()["accepted"] == len(users)
                acknowledged.update(users)
            else:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "unavailable"
                refused += 1
        assert acknowledged, "the disk filled before anything was acknowledged"
        reported: dict[str, object] = {}

        def failing() -> bool:
            answer = _health(server)
            reported.update(answer.json())
            return answer.status_code == 503

        assert _wait_for(failing, 20), (
            "/healthz did not report the failing processor\n" + server.log_tail()
        )
        assert reported["status"] == "failing", reported
        error = reported["error"]
        assert isinstance(error, dict) and error["code"] == "processor_failing", reported
        assert "full" in error["message"], reported

        filler.unlink()
        assert _wait_for(
            lambda: _health(server).status_code == 200 and _health(server).json()["lag"] == 0,
            90,
        ), f"the workspace did not resume: {_health(server).json()}\n{server.log_tail()}"
        after = httpx.post(
            f"{server.url}/v1/batch",
            json={"batch": [{"type": "identify", "userId": "after-the-disk-full"}]},
            headers=basic(WRITE_KEY),
            timeout=30,
        )
        assert after.status_code == 200, after.text
        assert _wait_for(lambda: _health(server).json()["lag"] == 0, 30)
    finally:
        server.stop()
    workspace = Workspace.open(load_settings(config, data_dir, environ={}))
    try:
        missing = [
            user
            for user in sorted(acknowledged)
            if workspace.profiles.find(Identity("user_id", user)) is None
        ]
        assert missing == [], f"{len(missing)} acknowledged people lost, e.g. {missing[:3]}"
    finally:
        workspace.close()
