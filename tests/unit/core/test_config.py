from pathlib import Path

import pytest

from touchpoint.config.settings import KEYS_FILE, load_settings
from touchpoint.config.workspace import apply_environment, load_config_file, parse_config
from touchpoint.core.errors import DefinitionError


def refused(data: dict) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse_config(data)
    return caught.value


def test_empty_config_is_valid_with_default_identity_rules() -> None:
    config = parse_config({})
    assert [kind.name for kind in config.identity.kinds] == ["user_id", "email", "anonymous_id"]
    assert config.identity.kinds[0].limit == 1
    assert "undefined" in config.identity.blocked_values


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"sources": [{"name": "web", "write_key": "short"}]}, "sources[0].write_key"),
        ({"features": [{"name": "x", "type": "count"}]}, "features[0]"),
        (
            {"features": [{"name": "x", "type": "count", "event": "A", "window": "7 days"}]},
            "features[0].window",
        ),
        ({"features": [{"name": "Bad Name", "type": "count", "event": "A"}]}, "features[0].name"),
        ({"collect": {"dedup_window": "forever"}}, "collect.dedup_window"),
        ({"log": {"partitions": 0}}, "log.partitions"),
        ({"unknown_section": 1}, "unknown_section"),
        (
            {"segments": [{"name": "a", "condition": {"field": "x", "bogus": 1}}]},
            "segments[0].condition",
        ),
    ],
)
def test_errors_name_the_path(data: dict, path: str) -> None:
    assert refused(data).path.startswith(path)


def test_duplicate_names_are_refused() -> None:
    error = refused(
        {"segments": [{"name": "a", "condition": True}, {"name": "a", "condition": False}]}
    )
    assert "repeated: a" in error.reason


def test_environment_overrides_keys() -> None:
    config = parse_config({"sources": [{"name": "web", "write_key": "wk_from_file"}]})
    env = {"TOUCHPOINT_WRITE_KEY": "wk_from_environment", "TOUCHPOINT_SECRET_KEY": "s" * 20}
    overridden = apply_environment(config, env)
    assert overridden.sources[0].write_key == "wk_from_environment"
    assert overridden.secret_key == "s" * 20


def test_load_config_file_reports_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "touchpoint.yaml"
    path.write_text("sources: [unclosed\n")
    with pytest.raises(DefinitionError) as caught:
        load_config_file(path)
    assert "YAML" in caught.value.reason


def test_default_workspace_generates_keys_once(tmp_path: Path) -> None:
    first = load_settings(None, tmp_path, environ={})
    second = load_settings(None, tmp_path, environ={})
    assert first.config.sources[0].write_key == second.config.sources[0].write_key
    assert first.secret_key == second.secret_key
    assert (tmp_path / KEYS_FILE).stat().st_mode & 0o777 == 0o600
    assert first.config.features and first.config.segments


def test_settings_take_the_environment(tmp_path: Path) -> None:
    env = {
        "TOUCHPOINT_DATA_DIR": str(tmp_path / "data"),
        "TOUCHPOINT_WRITE_KEY": "wk_environment_key",
        "TOUCHPOINT_SECRET_KEY": "sk_environment_secret_key",
    }
    settings = load_settings(environ=env)
    assert settings.data_dir == tmp_path / "data"
    assert settings.config.sources[0].write_key == "wk_environment_key"
    assert settings.secret_key == "sk_environment_secret_key"
