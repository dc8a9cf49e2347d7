"""The decision engine end to end on real stores: the workspace of tests/conftest.py
(SQLite event log, profile store, decision log and definition store in tmp_path),
events sent through the collector and applied by the stream processor."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_CONFIG, TEST_START, drain, write_config
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog
from touchpoint.decide.engine import Decider
from touchpoint.decide.results import DecideRequest
from touchpoint.definitions.model import parse_definitions
from touchpoint.definitions.store.sqlite import SqliteDefinitionStore
from touchpoint.runtime import Workspace

HERO = ["home_hero"]
BOTH = ["home_hero", "product_recs"]


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class CountingDecisionLog(SqliteDecisionLog):
    """The real SQLite decision log, counting the cap reads the engine makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.cap_reads: list[frozenset[str]] = []

    def shown_counts(
        self,
        *,
        profile_id: str | None,
        subjects: Collection[str],
        content_ids: Collection[str],
        since: str,
    ) -> dict[str, int]:
        self.cap_reads.append(frozenset(content_ids))
        return super().shown_counts(
            profile_id=profile_id, subjects=subjects, content_ids=content_ids, since=since
        )


def decider_for(workspace: Workspace, **overrides: Any) -> Decider:
    parts: dict[str, Any] = {
        "config": workspace.settings.config,
        "definitions": workspace.definitions,
        "decisions": workspace.decisions,
        "people": workspace.people,
        "metrics": workspace.metrics,
        "reload_interval": 0.0,
        "clock": workspace.clock.now,
    }
    parts.update(overrides)
    return Decider(**parts)


def send(workspace: Workspace, *events: dict[str, Any]) -> None:
    source = workspace.settings.config.sources[0]
    result = workspace.collector.commit(workspace.collector.prepare(source, list(events)))
    assert not result.rejected, result.to_dict()
    drain(workspace)


def ago(**delta: float) -> str:
    return isoformat(TEST_START - timedelta(**delta))


def buyer(workspace: Workspace, user_id: str = "u1", name: str = "Jane") -> None:
    send(
        workspace,
        {
            "type": "identify",
            "userId": user_id,
            "traits": {"name": name},
            "timestamp": ago(hours=2),
        },
        {
            "type": "track",
            "userId": user_id,
            "event": "Order Completed",
            "properties": {"revenue": 10},
            "timestamp": ago(hours=1),
        },
    )


def browser(workspace: Workspace, anonymous_id: str) -> None:
    send(
        workspace,
        *(
            {
                "type": "track",
                "anonymousId": anonymous_id,
                "event": "Product Viewed",
                "properties": {"product_id": f"p{n}"},
                "timestamp": ago(minutes=10 + n),
            }
            for n in range(2)
        ),
    )


def apply(workspace: Workspace, placements: list[dict], content: list[dict]) -> int:
    version = workspace.definitions.apply(
        parse_definitions({"placements": placements, "content": content}), actor="test"
    )
    return version.version


def metric(workspace: Workspace, name: str, labels: dict[str, str]) -> float:
    value = workspace.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# -- who, what and why ---------------------------------------------------------------------


def test_an_unknown_person_gets_a_decision_not_an_error(workspace: Workspace) -> None:
    result = workspace.decider.decide(
        DecideRequest({"anonymous_id": "stranger"}, BOTH, {"page": "/"})
    )
    assert result.profile_id is None
    assert result.subject == "anonymous_id:stranger"
    hero = result.placements["home_hero"]
    assert (hero.content_id, hero.reason, hero.policy) == ("hero_default", "fallback", "priority")
    assert hero.html == "<h1>Welcome</h1>" and hero.payload == {"headline": "Welcome"}
    recs = result.placements["product_recs"]
    assert (recs.content_id, recs.reason) == ("recs_recent", "eligible")  # [] exists
    assert recs.html == "<ul></ul>"


def test_every_placement_is_logged_with_version_propensity_and_context(
    workspace: Workspace,
) -> None:
    before = workspace.decisions.count()
    result = workspace.decider.decide(
        DecideRequest({"anonymous_id": "a1"}, BOTH, {"page": {"path": "/"}})
    )
    assert workspace.decisions.count() == before + 2
    records = {record.placement: record for record in workspace.decisions.get(result.decision_id)}
    assert set(records) == {"home_hero", "product_recs"}
    hero = records["home_hero"]
    assert hero.content_id == "hero_default" and hero.reason == "fallback"
    assert hero.definitions_version == result.definitions_version == 1
    assert hero.propensity == 1.0 and hero.policy == "priority"
    assert hero.subject == "anonymous_id:a1" and hero.profile_id is None
    assert hero.context == {"page": {"path": "/"}}
    assert hero.at == result.at
    assert (
        metric(
            workspace,
            "touchpoint_decisions_total",
            {"placement": "home_hero", "reason": "fallback"},
        )
        == 1.0
    )


def test_priority_picks_the_highest_eligible_item(workspace: Workspace) -> None:
    buyer(workspace, "u1", "Jane")
    browser(workspace, "b1")
    buyer(workspace, "u2", "Max")
    browser(workspace, "b2")
    send(
        workspace,
        {"type": "alias", "userId": "u2", "previousId": "b2", "timestamp": ago(seconds=1)},
    )
    decide = workspace.decider.decide
    jane = decide(DecideRequest({"user_id": "u1"}, HERO)).placements["home_hero"]
    assert (jane.content_id, jane.reason) == ("hero_buyer", "eligible")
    assert jane.html == "<h1>Thanks, Jane</h1>"
    looker = decide(DecideRequest({"anonymous_id": "b1"}, HERO)).placements["home_hero"]
    assert (looker.content_id, looker.reason) == ("hero_browser", "eligible")
    assert looker.payload == {"headline": "Still looking?"} and looker.html is None
    both = decide(DecideRequest({"user_id": "u2"}, HERO))  # buyer (20) beats browser (10)
    assert both.placements["home_hero"].content_id == "hero_buyer"
    assert both.profile_id is not None


def test_the_highest_priority_identity_names_the_subject(workspace: Workspace) -> None:
    buyer(workspace, "u1")
    result = workspace.decider.decide(
        DecideRequest({"anonymous_id": "never-seen", "user_id": "u1"}, HERO)
    )
    assert result.subject == "user_id:u1"
    assert result.placements["home_hero"].content_id == "hero_buyer"
    # The first identity that resolves wins, even when a higher one is unknown.
    send(
        workspace,
        {
            "type": "identify",
            "anonymousId": "anon-9",
            "traits": {"name": "A"},
            "timestamp": ago(hours=1),
        },
    )
    later = workspace.decider.decide(
        DecideRequest({"user_id": "nobody", "anonymous_id": "anon-9"}, HERO)
    )
    assert later.subject == "user_id:nobody"
    assert later.profile_id is not None


def test_pii_identities_are_looked_up_and_recorded_hashed(workspace: Workspace) -> None:
    send(
        workspace,
        {
            "type": "identify",
            "userId": "u7",
            "traits": {"email": "Jane@Example.com", "name": "Jane"},
            "timestamp": ago(hours=1),
        },
    )
    result = workspace.decider.decide(DecideRequest({"email": " jane@example.COM"}, HERO))
    assert result.profile_id is not None
    assert result.subject.startswith("email:h1:")
    assert "example" not in result.subject.lower()
    stored = workspace.decisions.get(result.decision_id)[0]
    assert stored.subject == result.subject


def test_ties_are_consistent_per_person_and_spread_across_people(workspace: Workspace) -> None:
    apply(
        workspace,
        [{"name": "slot", "fallback": "default"}],
        [
            {"id": "default", "payload": {}},
            {"id": "a", "placements": ["slot"], "priority": 5, "payload": {"v": "a"}},
            {"id": "b", "placements": ["slot"], "priority": 5, "payload": {"v": "b"}},
            {"id": "low", "placements": ["slot"], "priority": 1, "payload": {}},
        ],
    )
    decider = decider_for(workspace)
    seen: dict[str, int] = {}
    for n in range(60):
        request = DecideRequest({"anonymous_id": f"v{n}"}, ["slot"])
        first = decider.decide(request).placements["slot"].content_id
        assert decider.decide(request).placements["slot"].content_id == first
        assert first is not None
        seen[first] = seen.get(first, 0) + 1
    assert set(seen) == {"a", "b"}


def test_content_outside_its_active_window_is_not_shown(workspace: Workspace) -> None:
    apply(
        workspace,
        [{"name": "slot", "fallback": "default"}],
        [
            {"id": "default", "payload": {}},
            {
                "id": "sale",
                "placements": ["slot"],
                "payload": {},
                "start": "2026-06-01T00:00:00Z",
                "end": "2026-06-08T00:00:00Z",
            },
        ],
    )
    clock = Clock(datetime(2026, 5, 31, 23, 59, tzinfo=UTC))
    decider = decider_for(workspace, clock=clock)

    def shown() -> str | None:
        return (
            decider.decide(DecideRequest({"anonymous_id": "a"}, ["slot"]))
            .placements["slot"]
            .content_id
        )

    assert shown() == "default"
    clock.now = datetime(2026, 6, 1, tzinfo=UTC)
    assert shown() == "sale"
    clock.now = datetime(2026, 6, 8, tzinfo=UTC)
    assert shown() == "default"


def test_a_frequency_cap_falls_through_to_the_next_item(
    workspace: Workspace, tmp_path: Path
) -> None:
    decisions = CountingDecisionLog(tmp_path / "counted.sqlite3")
    clock = Clock(workspace.clock.now())
    decider = decider_for(workspace, decisions=decisions, clock=clock)
    browser(workspace, "b1")
    request = DecideRequest({"anonymous_id": "b1"}, HERO)
    shown = [decider.decide(request).placements["home_hero"].content_id for _ in range(4)]
    assert shown == ["hero_browser"] * 3 + ["hero_default"]  # at most 3 a day
    other = decider.decide(DecideRequest({"anonymous_id": "b1", "user_id": "someone"}, HERO))
    assert other.placements["home_hero"].content_id == "hero_default"  # same person
    clock.now += timedelta(days=1, minutes=1)
    browser(workspace, "b1")  # keep the 7-day views fresh at the new time
    assert decider.decide(request).placements["home_hero"].content_id == "hero_browser"
    decisions.close()


def test_caps_are_read_lazily_once_per_window(workspace: Workspace, tmp_path: Path) -> None:
    decisions = CountingDecisionLog(tmp_path / "counted.sqlite3")
    apply(
        workspace,
        [{"name": "one", "fallback": "d1"}, {"name": "two", "fallback": "d2"}],
        [
            {"id": "d1", "payload": {}},
            {"id": "d2", "payload": {}},
            {"id": "c1", "placements": ["one"], "payload": {}, "caps": [{"max": 5, "per": "1d"}]},
            {
                "id": "c2",
                "placements": ["two"],
                "payload": {},
                "caps": [{"max": 5, "per": "1d"}, {"max": 9, "per": "7d"}],
            },
            {
                "id": "never",
                "placements": ["two"],
                "priority": 9,
                "eligibility": "traits.plan == 'gold'",
                "payload": {},
                "caps": [{"max": 1, "per": "1h"}],
            },
        ],
    )
    decider = decider_for(workspace, decisions=decisions)
    result = decider.decide(DecideRequest({"anonymous_id": "a"}, ["one", "two"]))
    assert [p.content_id for p in result.placements.values()] == ["c1", "c2"]
    # One read per window reached (1d, 7d), none for the 1h cap of ineligible content.
    assert sorted(map(sorted, decisions.cap_reads)) == [["c1", "c2"], ["c2"]]
    decisions.cap_reads.clear()
    decider.decide(DecideRequest({"anonymous_id": "a"}, ["one"]))
    assert len(decisions.cap_reads) == 1
    decisions.close()


def test_a_capped_item_chosen_twice_in_one_request_counts_both(workspace: Workspace) -> None:
    apply(
        workspace,
        [{"name": "one", "fallback": "d"}, {"name": "two", "fallback": "d"}],
        [
            {"id": "d", "payload": {}},
            {
                "id": "c",
                "placements": ["one", "two"],
                "payload": {},
                "caps": [{"max": 1, "per": "1d"}],
            },
        ],
    )
    result = decider_for(workspace).decide(DecideRequest({"anonymous_id": "a"}, ["one", "two"]))
    assert [p.content_id for p in result.placements.values()] == ["c", "d"]


def test_nothing_eligible_and_no_fallback_is_empty(workspace: Workspace) -> None:
    apply(
        workspace,
        [{"name": "slot"}],
        [{"id": "vip", "placements": ["slot"], "eligibility": "traits.vip == true", "payload": {}}],
    )
    result = decider_for(workspace).decide(DecideRequest({"anonymous_id": "a"}, ["slot"]))
    slot = result.placements["slot"]
    assert (slot.content_id, slot.payload, slot.html, slot.reason) == (None, None, None, "empty")
    assert workspace.decisions.get(result.decision_id)[0].content_id is None


def test_a_template_that_fails_falls_back_and_is_counted(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    apply(
        workspace,
        [
            {"name": "slot", "fallback": "default"},
            {"name": "bare"},
            {"name": "broken", "fallback": "bad_fallback"},
        ],
        [
            {"id": "default", "template": "<p>{{ context.page }}</p>"},
            {"id": "bad", "placements": ["slot", "bare"], "template": "{{ 1 | divided_by: 0 }}"},
            {"id": "bad_fallback", "template": "{% for i in (1..99999) %}x{% endfor %}"},
        ],
    )
    decider = decider_for(workspace)
    with caplog.at_level(logging.WARNING, logger="touchpoint.decide.engine"):
        result = decider.decide(
            DecideRequest({"anonymous_id": "a"}, ["slot", "bare", "broken"], {"page": "home"})
        )
    slot, bare, broken = (result.placements[name] for name in ("slot", "bare", "broken"))
    assert (slot.content_id, slot.reason, slot.html) == ("default", "fallback", "<p>home</p>")
    assert (bare.content_id, bare.reason) == (None, "render_error")
    assert (broken.content_id, broken.reason) == (None, "render_error")
    assert metric(workspace, "touchpoint_template_errors_total", {"content_id": "bad"}) == 2.0
    assert (
        metric(workspace, "touchpoint_template_errors_total", {"content_id": "bad_fallback"}) == 1.0
    )
    assert any("bad" in record.getMessage() for record in caplog.records)


# -- consent -------------------------------------------------------------------------------


def test_without_personalization_consent_everyone_gets_fallbacks(workspace: Workspace) -> None:
    buyer(workspace, "u1", "Jane")
    send(
        workspace,
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"consent": {"personalization": False}},
            "timestamp": ago(minutes=1),
        },
    )
    apply(
        workspace,
        [{"name": "home_hero", "fallback": "hello"}],
        [
            {"id": "hello", "template": "<h1>Hello{{ traits.name }}{{ context.page }}</h1>"},
            {"id": "hero_buyer", "placements": ["home_hero"], "priority": 20, "payload": {}},
        ],
    )
    result = decider_for(workspace).decide(DecideRequest({"user_id": "u1"}, HERO, {"page": "!"}))
    hero = result.placements["home_hero"]
    assert (hero.content_id, hero.reason) == ("hello", "no_consent")
    assert hero.html == "<h1>Hello!</h1>"  # no profile data, the request context only
    assert workspace.decisions.get(result.decision_id)[0].reason == "no_consent"


def test_an_opt_in_region_denies_personalization_by_default(tmp_path: Path) -> None:
    config = {
        **TEST_CONFIG,
        "consent": {
            "purposes": {
                "analytics": {"default": True},
                "personalization": {"default": False},
            }
        },
    }
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    workspace = Workspace.open(settings)
    try:
        stranger = workspace.decider.decide(DecideRequest({"anonymous_id": "x"}, BOTH))
        assert [p.reason for p in stranger.placements.values()] == ["no_consent", "no_consent"]
        assert stranger.placements["product_recs"].content_id == "recs_default"
        send(
            workspace,
            {
                "type": "track",
                "anonymousId": "y",
                "event": "Consent Updated",
                "properties": {"consent": {"personalization": True}},
                "timestamp": ago(minutes=1),
            },
        )
        agreed = workspace.decider.decide(DecideRequest({"anonymous_id": "y"}, HERO))
        assert agreed.placements["home_hero"].reason == "fallback"
    finally:
        workspace.close()


# -- bad input and definitions --------------------------------------------------------------


def test_an_unknown_placement_is_not_found_and_nothing_is_logged(workspace: Workspace) -> None:
    before = workspace.decisions.count()
    with pytest.raises(NotFound) as caught:
        workspace.decider.decide(DecideRequest({"anonymous_id": "a"}, ["home_hero", "nope"]))
    assert "nope" in caught.value.message and caught.value.details["placement"] == "nope"
    assert workspace.decisions.count() == before


def test_identities_must_be_declared_and_non_empty(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput) as caught:
        workspace.decider.decide(DecideRequest({"device_id": "d"}, HERO))
    assert caught.value.details["field"] == "device_id"
    with pytest.raises(InvalidInput):
        workspace.decider.decide(DecideRequest({"anonymous_id": " "}, HERO))
    with pytest.raises(InvalidInput):
        workspace.decider.decide(DecideRequest({}, HERO))


def test_before_any_definitions_every_placement_is_unknown(
    workspace: Workspace, tmp_path: Path
) -> None:
    store = SqliteDefinitionStore(tmp_path / "empty-definitions.sqlite3")
    try:
        decider = decider_for(workspace, definitions=store)
        with pytest.raises(NotFound):
            decider.decide(DecideRequest({"anonymous_id": "a"}, HERO))
        assert decider.describe() == {"version": 0, "placements": []}
    finally:
        store.close()


def test_a_new_version_is_picked_up_and_recorded(workspace: Workspace) -> None:
    decider = decider_for(workspace, reload_interval=3600.0)
    first = decider.decide(DecideRequest({"anonymous_id": "a"}, HERO))
    assert first.definitions_version == 1
    version = apply(
        workspace,
        [{"name": "home_hero", "fallback": "new"}, {"name": "email_banner"}],
        [{"id": "new", "payload": {"v": 2}}],
    )
    # Within the reload interval the old version still decides; refresh() looks now.
    assert decider.decide(DecideRequest({"anonymous_id": "a"}, HERO)).definitions_version == 1
    decider.refresh()
    second = decider.decide(DecideRequest({"anonymous_id": "a"}, HERO))
    assert second.definitions_version == version == 2
    assert second.placements["home_hero"].content_id == "new"
    assert workspace.decisions.get(second.decision_id)[0].definitions_version == 2
    assert [p["name"] for p in decider.describe()["placements"]] == ["home_hero", "email_banner"]
    assert decider.describe_placement("email_banner")["version"] == 2
    with pytest.raises(NotFound):
        decider.describe_placement("product_recs")


def test_a_new_version_is_compiled_in_the_background(workspace: Workspace) -> None:
    decider = decider_for(workspace, reload_interval=0.0)
    assert decider.decide(DecideRequest({"anonymous_id": "a"}, HERO)).definitions_version == 1
    apply(workspace, [{"name": "home_hero", "fallback": "new"}], [{"id": "new", "payload": {}}])
    deadline = time.monotonic() + 10
    while decider.catalog().version != 2:  # requests meanwhile decide with version 1
        assert time.monotonic() < deadline, "the new version was never loaded"
        time.sleep(0.01)
    result = decider.decide(DecideRequest({"anonymous_id": "a"}, HERO))
    assert result.definitions_version == 2
    assert result.placements["home_hero"].content_id == "new"


def test_decide_is_safe_from_many_threads(workspace: Workspace) -> None:
    buyer(workspace, "u1")
    errors: list[BaseException] = []
    results: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(20):
                identity = {"user_id": "u1"} if i % 2 else {"anonymous_id": f"t{n}-{i}"}
                result = workspace.decider.decide(DecideRequest(identity, BOTH))
                with lock:
                    results.append(result.decision_id)
        except BaseException as error:
            errors.append(error)

    before = workspace.decisions.count()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 160
    assert workspace.decisions.count() == before + 320
