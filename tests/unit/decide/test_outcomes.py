"""The outcome joiner: which events are outcomes, which placement they are about, idempotence.

Real stores throughout: events go through a real SQLite event log and come back as log
entries (as the `outcomes` consumer hands them over), decisions and outcomes live in a
real SQLite decision log, conversion events come from a real definition store, profiles
from a real SQLite profile store.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from touchpoint.config.workspace import parse_config
from touchpoint.decide.decision_log.base import DecisionLog, DecisionRecord, Outcome
from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog
from touchpoint.decide.outcomes import OutcomeHandler
from touchpoint.definitions.model import parse_definitions
from touchpoint.definitions.store.sqlite import SqliteDefinitionStore
from touchpoint.log.base import LogEntry, LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.sqlite import SqliteProfileStore

T1 = "2026-02-01T10:00:00.000Z"
T2 = "2026-02-01T10:05:00.000Z"
DEFINITIONS = {
    "placements": [
        {"name": "home_hero", "fallback": "hero_default", "conversion_events": ["Order Completed"]},
        {"name": "product_recs", "fallback": "recs_default", "conversion_events": ["Added"]},
        {"name": "email_banner", "fallback": "banner"},
    ],
    "content": [
        {"id": "hero_default", "placements": ["home_hero"], "payload": {}},
        {"id": "hero_sale", "placements": ["home_hero"], "payload": {}},
        {"id": "recs_default", "placements": ["product_recs"], "payload": {}},
        {"id": "banner", "placements": ["email_banner"], "payload": {}},
    ],
}


class CountingDecisionLog(SqliteDecisionLog):
    """The real SQLite log, counting the calls the sink makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gets: list[str] = []
        self.outcome_calls = 0

    def get(self, decision_id: str) -> list[DecisionRecord]:
        self.gets.append(decision_id)
        return super().get(decision_id)

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        self.outcome_calls += 1
        return super().record_outcomes(outcomes)


@dataclass
class Setup:
    log: SqliteEventLog
    decisions: CountingDecisionLog
    definitions: SqliteDefinitionStore
    profiles: SqliteProfileStore
    sink: OutcomeHandler

    def person(self, profile_id: str, anonymous_id: str) -> None:
        """A profile holding `anonymous_id` (what the profile pipeline would have made)."""
        with self.profiles.transaction() as writer:
            writer.create(Profile(profile_id=profile_id, created_at=T1))
            writer.link(profile_id, Identity("anonymous_id", anonymous_id), message_id="m", at=T1)

    def applied(self, *bodies: dict[str, Any], anonymized: bool = False) -> list[LogEntry]:
        """The events appended to the log and read back, as the consumer hands them over
        (anonymized as the profile pipeline rewrites an event without consent)."""
        if anonymized:
            bodies = tuple({**body, "anonymized": True} for body in bodies)
        records = [
            LogRecord(key="person", message_id=body["messageId"], payload=orjson.dumps(body))
            for body in bodies
        ]
        self.log.append(records)
        wanted = {record.message_id for record in records}
        entries = [
            entry
            for partition in range(self.log.partitions)
            for entry in self.log.read(partition, 0, 100_000)
            if entry.message_id in wanted
        ]
        order = {body["messageId"]: index for index, body in enumerate(bodies)}
        entries.sort(key=lambda entry: order[entry.message_id])
        return entries

    def decide(self, decision_id: str, *shown: tuple[str, str | None]) -> None:
        self.decisions.record(
            [
                DecisionRecord(
                    decision_id=decision_id,
                    placement=placement,
                    content_id=content_id,
                    profile_id="p1",
                    subject="anonymous_id:a1",
                    policy="priority",
                    definitions_version=1,
                    reason="eligible",
                    propensity=1.0,
                    at=T1,
                )
                for placement, content_id in shown
            ]
        )


def make_setup(tmp_path: Path, definitions_data: dict[str, Any] | None, partitions: int) -> Setup:
    log = SqliteEventLog(
        tmp_path / "log.sqlite3", partitions=partitions, dedup_window=timedelta(hours=1)
    )
    decisions = CountingDecisionLog(tmp_path / "decisions.sqlite3")
    definitions = SqliteDefinitionStore(tmp_path / "definitions.sqlite3")
    if definitions_data is not None:
        definitions.apply(parse_definitions(definitions_data), actor="test")
    profiles = SqliteProfileStore(tmp_path / "profiles.sqlite3")
    resolver = IdentityResolver(parse_config({}).identity)
    handler = OutcomeHandler(decisions, definitions, profiles, resolver)
    return Setup(log, decisions, definitions, profiles, handler)


def close(setup: Setup) -> None:
    for store in (setup.log, setup.decisions, setup.definitions, setup.profiles):
        store.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    opened = make_setup(tmp_path, DEFINITIONS, partitions=2)
    yield opened
    close(opened)


_ids = itertools.count()


def track(name: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "track",
        "messageId": f"m{next(_ids):06d}",  # sorts in creation order
        "anonymousId": "a1",
        "event": name,
        "properties": properties,
        "timestamp": T2,
        "receivedAt": T2,
    }
    body.update(extra)
    return body


def stored(decisions: DecisionLog, decision_id: str) -> list[tuple[Any, ...]]:
    return [
        (item.kind, item.event, item.placement, item.content_id, item.value)
        for item in decisions.outcomes(decision_id)
    ]


def test_views_and_clicks_are_joined_to_the_placement_they_name(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"), ("product_recs", "recs_default"))
    setup.sink.handle(
        setup.applied(
            track("Decision Viewed", {"decision_id": "d1", "placement": "home_hero"}),
            track("Decision Clicked", {"decision_id": "d1", "content_id": "recs_default"}),
            track("Decision Viewed", {"decision_id": "d1"}),
            track("Decision Viewed", {"decision_id": "d1", "placement": "elsewhere"}),
        )
    )
    assert sorted(stored(setup.decisions, "d1"), key=str) == sorted(
        [
            ("view", "Decision Viewed", "home_hero", "hero_sale", None),
            ("click", "Decision Clicked", "product_recs", "recs_default", None),
            ("view", "Decision Viewed", None, None, None),
            ("view", "Decision Viewed", None, None, None),
        ],
        key=str,
    )


def test_a_single_placement_decision_takes_outcomes_that_name_no_placement(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    setup.person("p7", "a7")
    batch = setup.applied(track("Decision Clicked", {"decision_id": "d1"}, anonymousId="a7"))
    setup.sink.handle(batch)
    [got] = setup.decisions.outcomes("d1")
    assert (got.kind, got.placement, got.content_id) == ("click", "home_hero", "hero_sale")
    assert got.message_id == batch[0].message_id
    assert (got.profile_id, got.at, got.value) == ("p7", T2, None)
    setup.sink.handle(setup.applied(track("Decision Viewed", {"decision_id": "d1"})))
    found = {item.kind: item.profile_id for item in setup.decisions.outcomes("d1")}
    assert found == {"click": "p7", "view": None}  # a1 belongs to no profile


def test_conversions_are_the_events_a_placement_of_the_decision_declares(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"), ("product_recs", "recs_default"))
    setup.sink.handle(
        setup.applied(
            # Declared by home_hero only: that placement's, even without naming it.
            track("Order Completed", {"decision_id": "d1", "revenue": 80}),
            track("Order Completed", {"decision_id": "d1", "value": 12.5, "revenue": 80}),
            track("Added", {"decision_id": "d1", "placement": "product_recs", "value": "7"}),
            track("Order Completed", {"decision_id": "d1", "revenue": True}),
            # Names a placement that does not declare it: not a conversion.
            track("Added", {"decision_id": "d1", "placement": "home_hero"}),
            # Declared by no placement of the decision.
            track("Signed Up", {"decision_id": "d1"}),
        )
    )
    assert stored(setup.decisions, "d1") == [
        ("conversion", "Order Completed", "home_hero", "hero_sale", 80.0),
        ("conversion", "Order Completed", "home_hero", "hero_sale", 12.5),
        ("conversion", "Added", "product_recs", "recs_default", None),
        ("conversion", "Order Completed", "home_hero", "hero_sale", None),
    ]


def test_a_conversion_declared_by_several_placements_without_a_hint_is_decision_level(
    tmp_path: Path,
) -> None:
    both = {**DEFINITIONS, "placements": [dict(p) for p in DEFINITIONS["placements"]]}
    both["placements"][1]["conversion_events"] = ["Order Completed"]
    setup = make_setup(tmp_path, both, partitions=1)
    try:
        setup.decide("d1", ("home_hero", "hero_sale"), ("product_recs", "recs_default"))
        setup.sink.handle(setup.applied(track("Order Completed", {"decision_id": "d1"})))
        stored_now = stored(setup.decisions, "d1")
        assert stored_now == [("conversion", "Order Completed", None, None, None)]
    finally:
        close(setup)


def test_new_definitions_are_picked_up_when_their_version_moves(setup: Setup) -> None:
    setup.decide("d1", ("email_banner", "banner"))
    setup.sink.handle(setup.applied(track("Newsletter Opened", {"decision_id": "d1"})))
    assert setup.decisions.outcomes("d1") == []
    changed = {**DEFINITIONS, "placements": [dict(p) for p in DEFINITIONS["placements"]]}
    changed["placements"][2]["conversion_events"] = ["Newsletter Opened"]
    setup.definitions.apply(parse_definitions(changed), actor="test")
    setup.sink.handle(setup.applied(track("Newsletter Opened", {"decision_id": "d1"})))
    assert stored(setup.decisions, "d1") == [
        ("conversion", "Newsletter Opened", "email_banner", "banner", None)
    ]


@pytest.mark.parametrize(
    "body",
    [
        track("Decision Viewed", {}),
        track("Decision Viewed", {"decision_id": ""}),
        track("Decision Viewed", {"decision_id": 42}),
        track("Decision Viewed", {"decision_id": None}),
        track("Product Viewed", {"decision_id": "d1"}),  # declared by no placement at all
        {**track("Decision Viewed", {"decision_id": "d1"}), "type": "page", "name": "Home"},
        {**track("Decision Viewed", {"decision_id": "d1"}), "event": None},
        {**track("Decision Viewed", {}), "properties": "not an object"},
        {
            "type": "identify",
            "messageId": "identify-1",
            "userId": "u1",
            "traits": {"decision_id": "d1"},
        },
    ],
)
def test_events_that_are_not_outcomes_are_ignored(setup: Setup, body: dict[str, Any]) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    setup.sink.handle(setup.applied(body))
    assert setup.decisions.outcomes("d1") == []
    assert setup.decisions.outcome_calls == 0 and setup.decisions.gets == []


def test_unknown_decisions_are_ignored_and_counted(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    setup.sink.handle(
        setup.applied(
            track("Decision Viewed", {"decision_id": "never-made"}),
            track("Decision Clicked", {"decision_id": "never-made"}),
            track("Decision Viewed", {"decision_id": "d1"}),
        )
    )
    assert setup.sink.unknown_decisions == 2
    assert [item.kind for item in setup.decisions.outcomes("d1")] == ["view"]
    setup.decisions.erase(profile_ids=["p1"], subjects=[])
    setup.sink.handle(setup.applied(track("Decision Clicked", {"decision_id": "d1"})))
    assert setup.sink.unknown_decisions == 3  # an erased decision is unknown too
    assert setup.decisions.outcomes("d1") == []


def test_anonymized_events_are_not_joined_to_a_person_s_decision(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    setup.sink.handle(
        setup.applied(track("Decision Viewed", {"decision_id": "d1"}), anonymized=True)
    )
    assert setup.decisions.outcomes("d1") == []
    assert setup.sink.skipped_anonymized == 1


def test_a_batch_is_one_write_with_one_lookup_per_decision_and_idempotent(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    setup.decide("d2", ("home_hero", "hero_default"))
    batch = setup.applied(
        track("Page Viewed", {"path": "/"}),
        track("Decision Viewed", {"decision_id": "d1"}),
        track("Decision Viewed", {"decision_id": "d2"}),
        track("Decision Clicked", {"decision_id": "d1"}),
        track("Order Completed", {"decision_id": "d1", "revenue": 10}),
    )
    setup.sink.handle(batch)
    assert sorted(setup.decisions.gets) == ["d1", "d2"]
    assert setup.decisions.outcome_calls == 1
    assert setup.sink.recorded == 4
    setup.sink.handle(batch)  # the consumer hands a batch over again after a crash
    assert setup.sink.recorded == 4
    assert len(setup.decisions.outcomes("d1")) == 3 and len(setup.decisions.outcomes("d2")) == 1


def test_the_outcome_time_falls_back_to_arrival_then_to_the_log(setup: Setup) -> None:
    setup.decide("d1", ("home_hero", "hero_sale"))
    no_timestamp = track("Decision Viewed", {"decision_id": "d1"})
    del no_timestamp["timestamp"]
    no_times = track("Decision Clicked", {"decision_id": "d1"})
    del no_times["timestamp"], no_times["receivedAt"]
    batch = setup.applied(no_timestamp, no_times)
    setup.sink.handle(batch)
    times = {item.kind: item.at for item in setup.decisions.outcomes("d1")}
    assert times["view"] == T2
    assert times["click"].endswith("Z") and times["click"] > "2020"


def test_without_definitions_views_and_clicks_still_join(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, None, partitions=1)
    try:
        setup.decide("d1", ("home_hero", "hero_sale"))
        setup.sink.handle(
            setup.applied(
                track("Decision Viewed", {"decision_id": "d1"}),
                track("Order Completed", {"decision_id": "d1"}),
            )
        )
        assert [item.kind for item in setup.decisions.outcomes("d1")] == ["view"]
    finally:
        close(setup)
