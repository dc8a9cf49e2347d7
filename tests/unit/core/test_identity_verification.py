"""Identity secrets: where a source's secret comes from, and what the signature is."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tests.conftest import write_config
from touchpoint.config.settings import IDENTITY_SECRETS, KEYS_FILE, load_settings
from touchpoint.config.workspace import parse_config
from touchpoint.core.errors import DefinitionError
from touchpoint.core.identity_verification import user_hash, verify_user_hash

SITE = {"name": "site", "write_key": "wk_site_0123456", "allow_client_decisions": True}
SERVER = {"name": "server", "write_key": "wk_server_01234"}


def settings_for(tmp_path: Path, *sources: dict, environ: dict[str, str] | None = None) -> object:
    path = write_config(tmp_path, {"secret_key": "s" * 20, "sources": list(sources)})
    return load_settings(path, tmp_path / "data", environ=environ or {})


def secret_of(settings: object, name: str) -> str | None:
    source = settings.config.source_named(name)  # type: ignore[attr-defined]
    assert source is not None
    secret: str | None = source.identity_verification.secret
    return secret


def test_the_signature_is_lowercase_hex_hmac_sha256_and_checked_in_either_case() -> None:
    expected = hmac.new(b"a-site-secret-0123", "usér-42".encode(), hashlib.sha256).hexdigest()
    assert user_hash("a-site-secret-0123", "usér-42") == expected
    assert verify_user_hash("a-site-secret-0123", "usér-42", expected.upper())
    for wrong in (None, 42, "", expected[:-1], "é" * 64, user_hash("other-secret-0123", "u")):
        assert not verify_user_hash("a-site-secret-0123", "usér-42", wrong)


def test_a_client_source_gets_a_generated_secret_kept_across_restarts(tmp_path: Path) -> None:
    first = settings_for(tmp_path, SITE, SERVER)
    second = settings_for(tmp_path, SITE, SERVER)
    secret = secret_of(first, "site")
    assert secret is not None and len(secret) >= 32
    assert secret_of(second, "site") == secret
    assert secret_of(first, "server") is None  # nothing of it checks a signature
    keys_file = tmp_path / "data" / KEYS_FILE
    assert json.loads(keys_file.read_text())[IDENTITY_SECRETS] == {"site": secret}
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert secret not in (tmp_path / "touchpoint.yaml").read_text()


def test_a_source_added_later_gets_its_secret_and_the_others_keep_theirs(tmp_path: Path) -> None:
    first = settings_for(tmp_path, SITE)
    app = {
        "name": "app",
        "write_key": "wk_app_012345678",
        "identity_verification": {"events": True},
    }
    second = settings_for(tmp_path, SITE, app)
    assert secret_of(second, "site") == secret_of(first, "site")
    assert secret_of(second, "app") not in (None, secret_of(first, "site"))


def test_the_secret_may_come_from_the_environment_variable_the_source_names(
    tmp_path: Path,
) -> None:
    site = {**SITE, "identity_verification": {"secret_env": "SITE_IDENTITY_SECRET"}}
    settings = settings_for(tmp_path, site, environ={"SITE_IDENTITY_SECRET": "from-the-env-0123"})
    assert secret_of(settings, "site") == "from-the-env-0123"
    assert not (tmp_path / "data" / KEYS_FILE).exists() or IDENTITY_SECRETS not in json.loads(
        (tmp_path / "data" / KEYS_FILE).read_text()
    )


def test_an_unset_environment_variable_is_refused_naming_the_path(tmp_path: Path) -> None:
    site = {**SITE, "identity_verification": {"secret_env": "SITE_IDENTITY_SECRET"}}
    with pytest.raises(DefinitionError) as caught:
        settings_for(tmp_path, site)
    assert caught.value.path == "sources[0].identity_verification.secret_env"
    assert "SITE_IDENTITY_SECRET" in caught.value.reason


def test_event_verification_follows_client_decisions_unless_set() -> None:
    config = parse_config(
        {
            "sources": [
                SITE,
                SERVER,
                {
                    **SITE,
                    "name": "open",
                    "write_key": "wk_open_0123456",
                    "identity_verification": {"events": False},
                },
                {
                    **SERVER,
                    "name": "app",
                    "write_key": "wk_app_01234567",
                    "identity_verification": {"events": True},
                },
            ]
        }
    )
    verifies = {source.name: source.verifies_events for source in config.sources}
    assert verifies == {"site": True, "server": False, "open": False, "app": True}


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_config({"sources": [{**SITE, "identity_verification": {"secret": "short"}}]})
    assert caught.value.path == "sources[0].identity_verification.secret"
