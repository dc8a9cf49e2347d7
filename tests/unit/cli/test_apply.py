"""`touchpoint apply FILE`: the diff, dry run, confirmation, invalid files, the audit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import TEST_CONFIG, write_config
from touchpoint.audit.sqlite import SqliteAuditLog
from touchpoint.cli.main import app
from touchpoint.definitions.store.base import DEFAULT_DEFINITIONS_FILE
from touchpoint.definitions.store.sqlite import SqliteDefinitionStore

runner = CliRunner()


def config(**changes: Any) -> dict[str, Any]:
    """TEST_CONFIG with `hero_buyer`'s fields changed."""
    data = copy.deepcopy(TEST_CONFIG)
    data["content"][1].update(changes)
    return data


def run(tmp_path: Path, data: dict[str, Any], *args: str, stdin: str | None = None) -> Any:
    path = write_config(tmp_path, data)
    return runner.invoke(
        app, ["apply", str(path), "--data-dir", str(tmp_path / "data"), *args], input=stdin
    )


def stored_version(tmp_path: Path) -> int:
    store = SqliteDefinitionStore(tmp_path / "data" / DEFAULT_DEFINITIONS_FILE)
    try:
        return store.latest_version()
    finally:
        store.close()


def test_a_dry_run_shows_the_diff_and_creates_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, config(), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "No definitions applied yet" in result.output
    assert "+ home_hero" in result.output and "+ hero_buyer" in result.output
    assert "Dry run: nothing applied." in result.output
    assert not (tmp_path / "data" / DEFAULT_DEFINITIONS_FILE).exists()


def test_yes_applies_and_a_second_run_has_no_changes(tmp_path: Path) -> None:
    first = run(tmp_path, config(), "--yes")
    assert first.exit_code == 0, first.output
    assert "Applied definitions version 1." in first.output
    second = run(tmp_path, config(), "--yes")
    assert second.exit_code == 0
    assert "No changes." in second.output and "Applied" not in second.output
    assert stored_version(tmp_path) == 1


def test_a_change_lists_the_changed_fields_and_is_audited(tmp_path: Path) -> None:
    run(tmp_path, config(), "--yes")
    dry = run(tmp_path, config(priority=99, tags=["vip"]), "--dry-run")
    assert "~ hero_buyer: priority, tags" in dry.output
    assert "Current version 1" in dry.output
    assert stored_version(tmp_path) == 1
    applied = run(tmp_path, config(priority=99, tags=["vip"]), "-y")
    assert "Applied definitions version 2." in applied.output
    audit = SqliteAuditLog(tmp_path / "data" / "audit.sqlite3")
    try:
        entries = audit.list(action="definitions.apply").items
    finally:
        audit.close()
    assert [entry.details["version"] for entry in entries] == [2, 1]
    assert entries[0].actor.startswith("cli:")
    assert entries[0].details["diff"]["content"]["changed"] == {"hero_buyer": ["priority", "tags"]}


def test_without_a_terminal_and_without_yes_it_refuses(tmp_path: Path) -> None:
    result = run(tmp_path, config())
    assert result.exit_code == 1
    assert "pass --yes" in result.output
    assert stored_version(tmp_path) == 0


@pytest.mark.parametrize(("answer", "code", "version"), [("y\n", 0, 1), ("n\n", 1, 0)])
def test_at_a_terminal_it_asks_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, version: int
) -> None:
    monkeypatch.setattr("touchpoint.cli.apply.stdin_is_terminal", lambda: True)
    result = run(tmp_path, config(), stdin=answer)
    assert result.exit_code == code, result.output
    assert "Apply these changes?" in result.output
    assert stored_version(tmp_path) == version


def test_an_invalid_file_names_the_path_exits_2_and_stores_nothing(tmp_path: Path) -> None:
    run(tmp_path, config(), "--yes")
    result = run(tmp_path, config(template="{% if %}"), "--yes")
    assert result.exit_code == 2
    assert "content[1].template" in result.stderr
    assert stored_version(tmp_path) == 1


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["apply", str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path), "--yes"]
    )
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_a_file_without_definitions_says_so(tmp_path: Path) -> None:
    data = {
        key: value for key, value in TEST_CONFIG.items() if key not in {"placements", "content"}
    }
    result = run(tmp_path, data, "--yes")
    assert result.exit_code == 0
    assert "declares no placements or content" in result.output
    assert "No changes." in result.output
