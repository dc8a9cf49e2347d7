"""Embedded `touchpoint serve` (the default: SQLite files, no server configured) never
imports a server client: the process runs with `psycopg`, `psycopg_pool` and `redis`
made unimportable, and collects, decides, looks a profile up and stops cleanly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, basic, bearer, write_config
from touchpoint import testing
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow

# Any import of these fails in the server process (None in sys.modules: "import halted").
BLOCK_CLIENTS = (
    "import sys\n"
    "for name in ('psycopg', 'psycopg_pool', 'redis', 'hiredis'):\n"
    "    sys.modules[name] = None\n"
    "from touchpoint.cli.main import main\n"
    "main()\n"
)


def test_embedded_serve_runs_without_any_server_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        testing, "_touchpoint_command", lambda *args: [sys.executable, "-c", BLOCK_CLIENTS, *args]
    )
    config = write_config(tmp_path, TEST_CONFIG)
    server = ServerProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        event = {"type": "track", "userId": "u1", "event": "Order Completed"}
        event["properties"] = {"revenue": 5}
        collected = httpx.post(
            f"{server.url}/v1/batch", json={"batch": [event]}, headers=basic(WRITE_KEY)
        )
        assert collected.status_code == 200 and collected.json()["accepted"] == 1
        profile = httpx.get(f"{server.url}/v1/profiles/user_id/u1", headers=bearer(SECRET_KEY))
        deadline = time.monotonic() + 30
        while profile.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.2)  # the serve's own processor applies the event
            profile = httpx.get(f"{server.url}/v1/profiles/user_id/u1", headers=bearer(SECRET_KEY))
        assert profile.status_code == 200, profile.text
        assert profile.json()["features"]["revenue"] == 5
        decided = httpx.post(
            f"{server.url}/v1/decide",
            json={"user_id": "u1", "placements": ["home_hero"]},
            headers=bearer(SECRET_KEY),
        )
        assert decided.status_code == 200, decided.text
    finally:
        server.stop()
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "import of" not in log and "ModuleNotFoundError" not in log, log
    assert "Traceback" not in log, log
