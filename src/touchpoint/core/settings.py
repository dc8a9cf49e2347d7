"""Runtime settings: the workspace config plus where data lives and the keys in force.

Keys come from, in order: the environment (`TOUCHPOINT_WRITE_KEY`,
`TOUCHPOINT_SECRET_KEY`, `TOUCHPOINT_HASH_SECRET`), the config file, and finally a
`workspace-keys.json` generated once in the data directory (mode 0600), so a
workspace started with no configuration at all keeps the same keys across
restarts. Keys are never logged.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from touchpoint.core.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_SOURCE,
    TouchpointConfig,
    apply_environment,
    load_config_file,
    parse_config,
)

KEYS_FILE = "workspace-keys.json"
DEFAULT_WORKSPACE = Path(__file__).with_name("default_workspace.yaml")


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to open the workspace. Pass it explicitly; never global."""

    config: TouchpointConfig
    data_dir: Path
    config_path: Path | None = None
    enable_noop_endpoint: bool = False
    run_processor: bool = True
    enable_demo_page: bool = False

    @property
    def secret_key(self) -> str:
        assert self.config.secret_key is not None
        return self.config.secret_key

    @property
    def hash_secret(self) -> str:
        assert self.config.identity.hash_secret is not None
        return self.config.identity.hash_secret


def _generated_keys(data_dir: Path) -> dict[str, str]:
    """Load the workspace's generated keys, creating them on first use."""
    path = data_dir / KEYS_FILE
    if path.exists():
        loaded: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return loaded
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = {
        "write_key": "wk_" + secrets.token_urlsafe(18),
        "secret_key": "sk_" + secrets.token_urlsafe(30),
        "hash_secret": secrets.token_urlsafe(32),
    }
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(keys, handle)
    os.replace(temporary, path)
    return keys


def load_settings(
    config_path: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    enable_noop_endpoint: bool = False,
    run_processor: bool = True,
    enable_demo_page: bool = False,
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
    return Settings(
        config=config,
        data_dir=directory,
        config_path=path,
        enable_noop_endpoint=enable_noop_endpoint,
        run_processor=run_processor,
        enable_demo_page=enable_demo_page,
    )
