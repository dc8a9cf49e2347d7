"""The layers that docs/architecture.md lists are the ones `lint-imports` enforces."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [contract for contract in contracts if contract["type"] == "layers"]
    assert layers["containers"] == ["touchpoint"] and layers["exhaustive"] is True
    return [[name.strip().strip("()") for name in layer.split("|")] for layer in layers["layers"]]


def _documented_layers() -> list[list[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("- `")]
    return [re.findall(r"`([a-z_]+)`", row.split(":", 1)[0]) for row in rows]


def test_the_documented_layers_are_the_enforced_ones() -> None:
    assert _documented_layers() == _contract_layers()


def test_every_store_is_a_folder_with_its_interface_and_one_module_per_technology() -> None:
    """A backend module (`sqlite.py`, `postgres.py`, `redis.py`) sits beside its store's
    `base.py`, which holds the interface and the factory (`build_<kind>`)."""
    package = ROOT / "src" / "touchpoint"
    backends = [
        path
        for name in ("sqlite.py", "postgres.py", "redis.py")
        for path in package.rglob(name)
        if path.parent != package / "core"  # core's are the connection helpers, not stores
    ]
    assert len(backends) >= 15
    for backend in backends:
        base = backend.with_name("base.py")
        assert base.exists(), f"{backend.relative_to(package)} has no base.py beside it"
        assert "def build_" in base.read_text(encoding="utf-8"), f"{base} has no factory"
