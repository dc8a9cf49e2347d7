"""`touchpoint serve --workers N` in server mode: N API processes on one port, each with a
processor that takes its share of the partitions; and `touchpoint migrate`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import (
    SECRET_KEY,
    WRITE_KEY,
    basic,
    bearer,
    server_config,
    write_config,
)
from touchpoint.cli.main import app
from touchpoint.core.redis import RedisService
from touchpoint.log.leases.redis import RedisLeases
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow


def test_serve_with_two_workers_shares_the_partitions_and_serves_profiles(
    tmp_path: Path, postgres_schema: str, redis_prefix: str, redis_service: RedisService
) -> None:
    data = server_config(postgres_schema, redis_prefix, stream={"lease_ttl": "2s"})
    config = write_config(tmp_path, data)
    server = ServerProcess(tmp_path / "data", "--config", str(config), "--workers", "2").start()
    try:
        leases = RedisLeases(redis_service)
        deadline = time.monotonic() + 30
        # Settled: both processes hold leases and every partition is held (mid-handover a
        # partition released by one is not yet taken by the other).
        while True:
            owners = leases.owners("profiles")
            if len(set(owners.values())) == 2 and sorted(owners) == list(range(8)):
                break
            assert time.monotonic() < deadline, f"owners: {owners}"
            time.sleep(0.2)
        batch = [
            {"type": "identify", "userId": f"u{n}", "traits": {"plan": "pro"}} for n in range(40)
        ]
        with httpx.Client(timeout=10) as client:
            response = client.post(
                f"{server.url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
            )
            assert response.status_code == 200, response.text
            deadline = time.monotonic() + 20
            for n in range(40):
                while True:
                    found = client.get(
                        f"{server.url}/v1/profiles/user_id/u{n}", headers=bearer(SECRET_KEY)
                    )
                    if found.status_code == 200:
                        assert found.json()["traits"]["plan"] == "pro"
                        break
                    assert time.monotonic() < deadline, f"u{n} never applied"
                    time.sleep(0.1)
    finally:
        server.stop()


def test_migrate_brings_a_fresh_schema_up_to_date_then_has_nothing_to_do(
    tmp_path: Path, postgres_schema: str, redis_prefix: str
) -> None:
    config = write_config(tmp_path, server_config(postgres_schema, redis_prefix))
    arguments = ["migrate", "--config", str(config), "--data-dir", str(tmp_path / "data")]
    first = CliRunner().invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert "applied profiles 1" in first.output
    assert f"schema {postgres_schema} is up to date" in first.output
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "(0 applied)" in again.output
