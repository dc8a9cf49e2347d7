import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from touchpoint.cli.main import app
from touchpoint.config.settings import Settings
from touchpoint.core.logs import JsonFormatter

EXAMPLE = Path(__file__).parents[3] / "examples" / "touchpoint.yaml"
runner = CliRunner()


def test_the_example_workspace_is_valid() -> None:
    result = runner.invoke(app, ["config", "validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "9 features" in result.output


def test_an_invalid_config_names_the_path_and_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "touchpoint.yaml"
    path.write_text("segments:\n  - name: vip\n    condition: 'traits.plan === 1'\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert "segments[0].condition" in result.output


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_json_logs_carry_extra_fields_and_never_the_message_args_unformatted() -> None:
    record = logging.LogRecord("touchpoint.x", logging.WARNING, __file__, 1, "lag %d", (5,), None)
    record.partition = 3
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "lag 5"
    assert line["level"] == "warning" and line["logger"] == "touchpoint.x"
    assert line["partition"] == 3
    assert line["time"].endswith("Z")


def test_serve_prints_the_identity_secret_of_a_source_that_lets_pages_decide(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from touchpoint.cli.main import print_keys

    print_keys(settings, "http://127.0.0.1:8000")
    printed = capsys.readouterr().out
    site = settings.config.source_named("site")
    assert site is not None and site.identity_verification.secret is not None
    assert f"identity secret (site): {site.identity_verification.secret}" in printed
    assert "identity secret (web)" not in printed
