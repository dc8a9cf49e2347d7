"""Runtime settings: the workspace config plus where data lives and the keys in force.

Keys come from, in order: the environment (`TOUCHPOINT_WRITE_KEY`,
`TOUCHPOINT_SECRET_KEY`, `TOUCHPOINT_HASH_SECRET`), the config file, and finally a
`workspace-keys.json` generated once in the data directory (mode 0600), so a
workspace started with no configuration at all keeps the same keys across
restarts. Sources that check identity signatures get their secret the same way: from
the config, from the environment variable the source names, or generated into that file
(see `IdentityVerificationConfig`). Keys are never logged.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from touchpoint.config.workspace import (
    DEFAULT_DATA_DIR,
    DEFAULT_SOURCE,
    TouchpointConfig,
    apply_environment,
    load_config_file,
    parse_config,
)
from touchpoint.core.errors import DefinitionError
from touchpoint.core.files import file_lock

KEYS_FILE = "workspace-keys.json"
IDENTITY_SECRETS = "identity_secrets"  # in KEYS_FILE: source name -> generated identity secret
DEFAULT_WORKSPACE = Path(__file__).with_name("default_workspace.yaml")


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to open the workspace. Pass it explicitly; never global."""

    config: TouchpointConfig
    data_dir: Path
    config_path: Path | None = None
    enable_noop_endpoint: bool = False
    run_processor: bool = True

    @property
    def secret_key(self) -> str:
        assert self.config.secret_key is not None
        return self.config.secret_key

    @property
    def hash_secret(self) -> str:
        assert self.config.identity.hash_secret is not None
        return self.config.identity.hash_secret


def _write_keys(path: Path, keys: Mapping[str, Any]) -> None:
    """Replace the keys file atomically, readable by its owner only."""
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(keys, handle)
    os.replace(temporary, path)


def _generated_keys(data_dir: Path, identity_sources: Sequence[str] = ()) -> dict[str, Any]:
    """Load the workspace's generated keys, creating them on first use, with an identity
    secret for each of `identity_sources` (added to the file when one is new). Processes
    starting together take a lock, so they all keep the same keys."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEYS_FILE
    with file_lock(data_dir / (KEYS_FILE + ".lock")):
        keys: dict[str, Any] = {}
        if path.exists():
            keys = json.loads(path.read_text(encoding="utf-8"))
        changed = not keys
        if not keys:
            keys = {
                "write_key": "wk_" + secrets.token_urlsafe(18),
                "secret_key": "sk_" + secrets.token_urlsafe(30),
                "hash_secret": secrets.token_urlsafe(32),
            }
        identity = dict(keys.get(IDENTITY_SECRETS, {}))
        for name in identity_sources:
            if name not in identity:
                identity[name] = secrets.token_urlsafe(32)
                changed = True
        if identity:
            keys[IDENTITY_SECRETS] = identity
        if changed:
            _write_keys(path, keys)
    return keys


def _identity_secrets(
    config: TouchpointConfig, env: Mapping[str, str], data_dir: Path
) -> TouchpointConfig:
    """The config with an identity secret on every source that checks signatures: its own,
    the environment variable it names (DefinitionError if unset), or a generated one."""
    missing = [
        source.name
        for source in config.sources
        if source.needs_identity_secret
        and source.identity_verification.secret is None
        and source.identity_verification.secret_env is None
    ]
    generated = _generated_keys(data_dir, missing)[IDENTITY_SECRETS] if missing else {}
    data = config.model_dump(by_alias=True)
    changed = False
    for index, source in enumerate(config.sources):
        verification = source.identity_verification
        if not source.needs_identity_secret or verification.secret is not None:
            continue
        if verification.secret_env is not None:
            secret = env.get(verification.secret_env)
            if not secret:
                raise DefinitionError(
                    f"sources[{index}].identity_verification.secret_env",
                    f"the environment variable {verification.secret_env} is not set",
                )
        else:
            secret = generated[source.name]
        data["sources"][index]["identity_verification"]["secret"] = secret
        changed = True
    return parse_config(data) if changed else config


def load_settings(
    config_path: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    enable_noop_endpoint: bool = False,
    run_processor: bool = True,
) -> Settings:
    """Resolve the settings of a process: config file (or the default workspace), data
    directory, environment overrides, then generated keys for whatever is still missing."""
    env = dict(os.environ if environ is None else environ)
    directory = Path(data_dir or env.get("TOUCHPOINT_DATA_DIR") or DEFAULT_DATA_DIR)
    path_text = config_path or env.get("TOUCHPOINT_CONFIG")
    path = Path(path_text) if path_text else None
    config = load_config_file(path if path else DEFAULT_WORKSPACE)
    config = apply_environment(config, env)
    needs_keys = (
        not config.sources or config.secret_key is None or config.identity.hash_secret is None
    )
    if needs_keys:
        keys = _generated_keys(directory)
        data = config.model_dump(by_alias=True)
        if not data["sources"]:
            data["sources"] = [{"name": DEFAULT_SOURCE, "write_key": keys["write_key"]}]
        data["secret_key"] = data["secret_key"] or keys["secret_key"]
        data["identity"]["hash_secret"] = data["identity"]["hash_secret"] or keys["hash_secret"]
        config = parse_config(data)
    config = _identity_secrets(config, env, directory)
    return Settings(
        config=config,
        data_dir=directory,
        config_path=path,
        enable_noop_endpoint=enable_noop_endpoint,
        run_processor=run_processor,
    )
