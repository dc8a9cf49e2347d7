"""The `timers` section of `touchpoint.yaml` chooses the timer store's backend like every store."""

from __future__ import annotations

import pytest

from touchpoint.config.services import Services
from touchpoint.config.workspace import parse_config
from touchpoint.core.errors import DefinitionError, ServiceUnavailableAtStart


def test_the_timers_store_follows_the_postgres_url_by_default() -> None:
    embedded = parse_config({})
    assert embedded.timers.type == "auto" and embedded.store_type(embedded.timers) == "sqlite"
    server = parse_config({"postgres": {"url": "postgresql://db/x"}})
    assert server.store_type(server.timers) == "postgres"
    pinned = parse_config({"postgres": {"url": "postgresql://db/x"}, "timers": {"type": "sqlite"}})
    assert pinned.store_type(pinned.timers) == "sqlite"


def test_a_bad_timers_type_names_its_path() -> None:
    with pytest.raises(DefinitionError, match=r"timers\.type"):
        parse_config({"timers": {"type": "mysql"}})


def test_postgres_timers_without_a_url_are_refused_at_start() -> None:
    config = parse_config({"timers": {"type": "postgres"}})
    with pytest.raises(ServiceUnavailableAtStart, match=r"timers\.type is postgres"):
        Services.open(config)
    with pytest.raises(ServiceUnavailableAtStart, match=r"timers\.type is postgres"):
        Services().postgres_for(config.timers, "timers")
    assert Services().postgres_for(parse_config({}).timers, "timers") is None
