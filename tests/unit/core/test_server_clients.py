"""Server clients are imported only when a server is configured: an embedded workspace,
its app and its requests load neither `psycopg` nor `redis`, and a configured server whose
client is missing fails at start with the exact install line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, write_config
from touchpoint.config.services import Services
from touchpoint.config.settings import load_settings
from touchpoint.core.errors import ServiceUnavailableAtStart
from touchpoint.core.servers import POSTGRES_INSTALL, REDIS_INSTALL

SERVER_CLIENTS = ("psycopg", "psycopg_pool", "redis", "hiredis")

# Run in a fresh interpreter: the test process itself has imported every backend.
# Run in a fresh interpreter: the test process itself has imported every backend (and
# tests.conftest imports the server fixtures), so the script imports neither.
EMBEDDED_SESSION = """
import base64, json, sys
from datetime import UTC, datetime
from pathlib import Path

import touchpoint
from fastapi.testclient import TestClient

from touchpoint.api.app import create_app
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import Clock
from touchpoint.runtime import Workspace

config, data_dir, write_key, secret_key, *clients = sys.argv[1:]
basic = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
admin = {"Authorization": f"Bearer {secret_key}"}
settings = load_settings(Path(config), Path(data_dir), environ={})
workspace = Workspace.open(settings, clock=Clock.starting_at(datetime(2026, 11, 21, tzinfo=UTC)))
statuses = []
with TestClient(create_app(settings, workspace=workspace)) as client:
    event = {"type": "track", "userId": "u1", "event": "Order Completed",
             "properties": {"revenue": 5}, "timestamp": "2026-11-20T10:00:00Z"}
    statuses.append(client.post("/v1/batch", json={"batch": [event]}, headers=basic).status_code)
    while workspace.processor.run_once():
        pass
    decide = {"user_id": "u1", "placements": ["home_hero"]}
    statuses.append(client.post("/v1/decide", json=decide, headers=admin).status_code)
    statuses.append(client.get("/v1/profiles/user_id/u1", headers=admin).status_code)
workspace.close()
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(clients))
print(json.dumps({"statuses": statuses, "loaded": loaded}))
"""


def test_an_embedded_workspace_and_its_requests_load_no_server_client(tmp_path: Path) -> None:
    config = write_config(tmp_path, TEST_CONFIG)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            EMBEDDED_SESSION,
            str(config),
            str(tmp_path / "data"),
            WRITE_KEY,
            SECRET_KEY,
            *SERVER_CLIENTS,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == [200, 200, 200]
    assert outcome["loaded"] == []


def test_the_check_sees_a_client_loaded(tmp_path: Path) -> None:
    """The same check, with a server configured, does see the clients (so the test above
    cannot pass by looking in the wrong place)."""
    script = (
        "import sys, touchpoint.core.postgres, touchpoint.core.redis; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *SERVER_CLIENTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "psycopg" in result.stdout and "redis" in result.stdout


@pytest.mark.parametrize(
    ("section", "blocked", "install"),
    [
        ({"postgres": {"url": "postgresql://127.0.0.1:1/none"}}, "psycopg", POSTGRES_INSTALL),
        ({"postgres": {"url": "postgresql://127.0.0.1:1/none"}}, "psycopg_pool", POSTGRES_INSTALL),
        ({"redis": {"url": "redis://127.0.0.1:1/0"}}, "redis", REDIS_INSTALL),
    ],
)
def test_a_configured_server_without_its_client_names_the_install_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    section: dict[str, dict[str, str]],
    blocked: str,
    install: str,
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # as if it were not installed
    config = write_config(tmp_path, {**TEST_CONFIG, **section})
    settings = load_settings(config, tmp_path / "data", environ={})
    with pytest.raises(ServiceUnavailableAtStart) as raised:
        Services.open(settings.config)
    message = str(raised.value)
    assert install in message and blocked in message
    assert "not installed" in message
