"""The DecisionLog contract, run against every backend: embedded SQLite and PostgreSQL
(a schema of the test's own). A backend opener is called again to reopen the same
storage (a restart: for PostgreSQL, a new connection pool, as a new process has).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.openers import closing, postgres_opener
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput, Unavailable
from touchpoint.decide.decision_log.base import (
    ContentReport,
    DecisionLog,
    DecisionRecord,
    ErasedDecisions,
    Outcome,
    build_decision_log,
)
from touchpoint.decide.decision_log.postgres import PostgresDecisionLog
from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog

Opener = Callable[[], DecisionLog]


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return lambda: SqliteDecisionLog(directory / "decisions.sqlite3")


def _postgres(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return postgres_opener(request, PostgresDecisionLog)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend on this test's storage; everything opened is closed afterwards."""
    yield from closing(BACKENDS[request.param](request, tmp_path))


@pytest.fixture
def log(opener: Opener) -> DecisionLog:
    return opener()


T0 = "2026-01-01T00:00:00.000Z"
T1 = "2026-01-01T01:00:00.000Z"
T2 = "2026-01-01T02:00:00.000Z"
T3 = "2026-01-01T03:00:00.000Z"
T4 = "2026-01-01T04:00:00.000Z"


def decision(
    decision_id: str,
    placement: str = "home_hero",
    content_id: str | None = "hero_a",
    *,
    profile_id: str | None = "p1",
    subject: str = "anonymous_id:a1",
    at: str = T1,
    reason: str = "eligible",
) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        placement=placement,
        content_id=content_id,
        profile_id=profile_id,
        subject=subject,
        policy="priority",
        definitions_version=3,
        reason=reason,
        propensity=1.0,
        at=at,
    )


def outcome(
    message_id: str,
    decision_id: str,
    kind: str = "view",
    *,
    placement: str | None = "home_hero",
    content_id: str | None = "hero_a",
    profile_id: str | None = "p1",
    at: str = T2,
    value: float | None = None,
) -> Outcome:
    event = {"view": "Decision Viewed", "click": "Decision Clicked"}.get(kind, "Order Completed")
    return Outcome(
        message_id=message_id,
        decision_id=decision_id,
        placement=placement,
        content_id=content_id,
        kind=kind,  # type: ignore[arg-type]
        event=event,
        profile_id=profile_id,
        at=at,
        value=value,
    )


def test_build_decision_log_opens_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    built = build_decision_log(StoreConfig(), tmp_path / "data")
    try:
        assert isinstance(built, SqliteDecisionLog)
        assert built.path == tmp_path / "data" / "decisions.sqlite3"
    finally:
        built.close()


def test_record_then_get_round_trips_every_field(log: DecisionLog) -> None:
    full = DecisionRecord(
        decision_id="d1",
        placement="home_hero",
        content_id="hero_a",
        profile_id="p1",
        subject="user_id:9f2c",
        policy="priority",
        definitions_version=7,
        reason="eligible",
        propensity=0.25,
        at=T1,
        experiment="exp1",
        arm="treatment",
        context={"page": {"path": "/"}, "n": [1, 2.5, None, True]},
        features={"views_7d": 3, "segment": "vip", "score": 0.125},
    )
    empty = decision("d1", "product_recs", None, profile_id=None, reason="empty")
    log.record([full, empty])
    got = log.get("d1")
    assert got == [full, empty]
    assert got[0].context == full.context and got[1].context == {}
    assert got[0].features == full.features and got[1].features == {}
    assert log.list().items[-1].features == full.features
    assert log.get("nope") == []
    assert log.count() == 2


def test_records_survive_a_restart(opener: Opener) -> None:
    first = opener()
    first.record([decision("d1")])
    first.record_outcomes([outcome("m1", "d1")])
    first.close()
    again = opener()
    assert again.get("d1") == [decision("d1")]
    assert [item.message_id for item in again.outcomes("d1")] == ["m1"]


def test_recording_nothing_is_a_no_op(log: DecisionLog) -> None:
    log.record([])
    assert log.record_outcomes([]) == 0
    assert log.count() == 0


def test_a_duplicate_decision_refuses_the_whole_batch(log: DecisionLog) -> None:
    log.record([decision("d1")])
    with pytest.raises(ValueError):
        log.record([decision("d2"), decision("d1", content_id="hero_b")])
    assert log.get("d2") == []
    assert log.get("d1") == [decision("d1")]
    with pytest.raises(ValueError):
        log.record([decision("d3"), decision("d3")])
    assert log.get("d3") == []
    assert log.count() == 1
    log.record([decision("d2")])  # the refused batch left nothing behind
    assert log.count() == 2


def test_outcomes_are_idempotent_by_message_id_and_oldest_first(log: DecisionLog) -> None:
    log.record([decision("d1")])
    batch = [
        outcome("m2", "d1", "click", at=T3),
        outcome("m1", "d1", "view", at=T2),
    ]
    assert log.record_outcomes(batch) == 2
    assert log.record_outcomes(batch) == 0
    assert log.record_outcomes([outcome("m1", "d1", "click"), outcome("m3", "d1", at=T4)]) == 1
    got = log.outcomes("d1")
    assert [item.message_id for item in got] == ["m1", "m2", "m3"]
    assert got[0] == outcome("m1", "d1", "view", at=T2)
    assert log.outcomes("other") == []


def test_outcome_values_and_missing_placement_round_trip(log: DecisionLog) -> None:
    log.record([decision("d1")])
    item = outcome("m1", "d1", "conversion", placement=None, content_id=None, value=12.5)
    log.record_outcomes([item])
    assert log.outcomes("d1") == [item]


def test_shown_counts_by_profile_and_by_subject_within_the_window(log: DecisionLog) -> None:
    log.record([decision("d1", at=T1), decision("d1", "product_recs", "recs_a", at=T1)])
    log.record([decision("d2", at=T2, profile_id=None, subject="anonymous_id:a1")])
    log.record([decision("d3", at=T3, profile_id="p1", subject="user_id:u1")])
    log.record([decision("d4", at=T3, profile_id="p2", subject="anonymous_id:a2")])
    log.record([decision("d5", content_id="hero_b", at=T3)])
    contents = ["hero_a", "hero_b", "recs_a", "hero_z"]
    by_profile = log.shown_counts(profile_id="p1", subjects=[], content_ids=contents, since=T0)
    assert by_profile == {"hero_a": 2, "hero_b": 1, "recs_a": 1}
    by_subject = log.shown_counts(
        profile_id=None, subjects=["anonymous_id:a1"], content_ids=contents, since=T0
    )
    assert by_subject == {"hero_a": 2, "hero_b": 1, "recs_a": 1}
    both = log.shown_counts(
        profile_id="p1", subjects=["anonymous_id:a1", "user_id:u1"], content_ids=contents, since=T0
    )
    assert both == {"hero_a": 3, "hero_b": 1, "recs_a": 1}  # each decision counted once
    window = log.shown_counts(
        profile_id="p1", subjects=["anonymous_id:a1"], content_ids=["hero_a"], since=T2
    )
    assert window == {"hero_a": 2}  # `since` is inclusive
    assert log.shown_counts(profile_id="p1", subjects=[], content_ids=[], since=T0) == {}
    assert log.shown_counts(profile_id=None, subjects=[], content_ids=contents, since=T0) == {}
    assert log.shown_counts(profile_id="p9", subjects=["x"], content_ids=contents, since=T0) == {}


def _plant(log: DecisionLog) -> None:
    """Six decisions on home_hero (one also on product_recs) and their outcomes."""
    log.record([decision("a1", content_id="hero_a", at=T1)])
    log.record([decision("a2", content_id="hero_a", at=T1)])
    log.record([decision("a3", content_id="hero_a", at=T2)])
    log.record([decision("b1", content_id="hero_b", at=T1)])
    log.record([decision("f1", content_id="hero_default", at=T2, reason="fallback")])
    log.record(
        [
            decision("m1", content_id="hero_b", at=T2),
            decision("m1", "product_recs", "recs_a", at=T2),
        ]
    )
    log.record([decision("late", content_id="hero_a", at=T4)])
    log.record([decision("early", content_id="hero_a", at=T0)])
    log.record([decision("n1", content_id=None, at=T1, reason="empty")])
    log.record_outcomes(
        [
            # a1: viewed twice, clicked, converted twice (one without a value).
            outcome("o1", "a1", "view"),
            outcome("o2", "a1", "view"),
            outcome("o3", "a1", "click"),
            outcome("o4", "a1", "conversion", value=30.0),
            outcome("o5", "a1", "conversion"),
            # a2: viewed; its outcome names no placement, and a2 has only home_hero.
            outcome("o6", "a2", "view", placement=None, content_id=None),
            # a3: nothing. b1: viewed and clicked.
            outcome("o7", "b1", "view", content_id="hero_b"),
            outcome("o8", "b1", "click", content_id="hero_b"),
            # f1: a conversion with a value.
            outcome("o9", "f1", "conversion", content_id="hero_default", value=5.0),
            # m1: viewed on product_recs only; a click naming no placement counts for none.
            outcome("o10", "m1", "view", placement="product_recs", content_id="recs_a"),
            outcome("o11", "m1", "click", placement=None, content_id=None),
            # outside the window
            outcome("o12", "late", "view"),
            outcome("o13", "early", "view"),
        ]
    )


def test_report_figures_per_content_over_the_window(log: DecisionLog) -> None:
    _plant(log)
    report = log.report("home_hero", since=T1, until=T4)
    assert report == [
        ContentReport("hero_a", decisions=3, impressions=2, clicks=1, conversions=1, value=30.0),
        ContentReport("hero_b", decisions=2, impressions=1, clicks=1, conversions=0, value=0.0),
        ContentReport(None, decisions=1, impressions=0, clicks=0, conversions=0, value=0.0),
        ContentReport("hero_default", 1, impressions=0, clicks=0, conversions=1, value=5.0),
    ]
    assert report[0].click_rate == 0.5 and report[0].conversion_rate == 0.5
    assert report[3].click_rate is None and report[3].conversion_rate is None
    recs = log.report("product_recs", since=T1, until=T4)
    assert recs == [ContentReport("recs_a", 1, impressions=1, clicks=0, conversions=0, value=0.0)]
    assert log.report("home_hero", since=T3, until=T4) == []
    assert log.report("nowhere", since=T0, until=T4) == []
    whole = log.report("home_hero", since=T0, until="2027-01-01T00:00:00.000Z")
    top = whole[0]
    assert (top.content_id, top.decisions, top.impressions) == ("hero_a", 5, 4)


def test_for_person_finds_decisions_and_outcomes_by_profile_or_subject(log: DecisionLog) -> None:
    mine_by_profile = decision("d1", at=T1, profile_id="p1", subject="user_id:u1")
    mine_by_subject = decision("d2", at=T2, profile_id=None, subject="anonymous_id:a1")
    theirs = decision("d3", at=T1, profile_id="p2", subject="anonymous_id:a2")
    log.record([mine_by_subject])
    log.record([mine_by_profile])
    log.record([theirs])
    log.record_outcomes(
        [
            outcome("o1", "d1", at=T3),
            outcome("o2", "d2", profile_id=None, at=T2),
            outcome("o3", "d3", profile_id="p2"),
            # p1's event naming someone else's decision: it is still p1's event.
            outcome("o4", "d3", "click", profile_id="p1", at=T4),
        ]
    )
    decisions, outcomes = log.for_person(profile_ids=["p1"], subjects=["anonymous_id:a1"])
    assert decisions == [mine_by_profile, mine_by_subject]
    assert [item.message_id for item in outcomes] == ["o2", "o1", "o4"]
    assert log.for_person(profile_ids=[], subjects=[]) == ([], [])
    assert log.for_person(profile_ids=["p9"], subjects=["user_id:nobody"]) == ([], [])


def test_erase_removes_everything_of_the_person_and_nothing_else(log: DecisionLog) -> None:
    log.record([decision("d1", at=T1, profile_id="p1", subject="user_id:u1")])
    log.record(
        [
            decision("d2", at=T2, profile_id=None, subject="anonymous_id:a1"),
            decision("d2", "product_recs", "recs_a", at=T2, profile_id=None),
        ]
    )
    log.record([decision("d3", at=T1, profile_id="p2", subject="anonymous_id:a2")])
    log.record_outcomes(
        [
            outcome("o1", "d1"),
            outcome("o2", "d2", profile_id=None),
            outcome("o3", "d3", profile_id="p2"),
            outcome("o4", "d3", "click", profile_id="p1"),
        ]
    )
    person = {"profile_ids": ["p1"], "subjects": ["user_id:u1", "anonymous_id:a1"]}
    assert log.erase(**person) == ErasedDecisions(decisions=3, outcomes=3)

    assert log.get("d1") == [] and log.get("d2") == []
    assert log.outcomes("d1") == [] and log.outcomes("d2") == []
    assert [item.message_id for item in log.outcomes("d3")] == ["o3"]
    assert log.for_person(**person) == ([], [])
    shown = log.shown_counts(
        profile_id="p1", subjects=person["subjects"], content_ids=["hero_a", "recs_a"], since=T0
    )
    assert shown == {}
    assert [row.decisions for row in log.report("home_hero", since=T0, until=T4)] == [1]
    assert log.report("product_recs", since=T0, until=T4) == []
    listed = log.list(limit=100).items
    assert [item.decision_id for item in listed] == ["d3"]
    assert log.count() == 1

    assert log.erase(**person) == ErasedDecisions(decisions=0, outcomes=0)  # idempotent
    assert log.erase(profile_ids=[], subjects=[]) == ErasedDecisions(0, 0)


def test_list_is_newest_first_and_pages_with_a_cursor(log: DecisionLog) -> None:
    times = [T0, T1, T1, T1, T2, T3, T3]
    for index, at in enumerate(times):
        log.record([decision(f"d{index}", at=at), decision(f"d{index}", "product_recs", at=at)])
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = log.list(cursor=cursor, limit=3)
        seen += [(item.decision_id, item.placement) for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        log.record([decision(f"new{len(seen)}", at=T4)])  # newer records never shift a page
    assert len(seen) == len(set(seen)) == 14
    order = [int(decision_id[1:]) for decision_id, _ in seen]
    assert order == sorted(order, reverse=True)
    assert [times[i] for i in order] == sorted((times[i] for i in order), reverse=True)

    hero: list[str] = []
    cursor = None
    while True:
        hero_page = log.list(placement="home_hero", cursor=cursor, limit=2)
        hero += [item.decision_id for item in hero_page.items]
        assert all(item.placement == "home_hero" for item in hero_page.items)
        cursor = hero_page.next_cursor
        if cursor is None:
            break
    assert all(decision_id.startswith("new") for decision_id in hero[:-7])
    assert hero[-7:] == [f"d{i}" for i in range(6, -1, -1)]
    assert log.list(placement="nowhere").items == []
    assert log.list(limit=1000).next_cursor is None


@pytest.mark.parametrize("cursor", ["garbage!", "WzEsMiwzXQ==", "bnVsbA=="])
def test_list_refuses_a_foreign_cursor(log: DecisionLog, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        log.list(cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_list_refuses_a_limit_out_of_range(log: DecisionLog, limit: int) -> None:
    with pytest.raises(InvalidInput):
        log.list(limit=limit)


def test_concurrent_writers_and_readers_lose_nothing(log: DecisionLog) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(50):
                decision_id = f"w{worker}-{n}"
                log.record([decision(decision_id), decision(decision_id, "product_recs")])
                log.record_outcomes([outcome(f"m{worker}-{n}", decision_id)])
                assert len(log.get(decision_id)) == 2
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert log.count() == 400
    assert log.report("home_hero", since=T0, until=T4)[0].impressions == 200


def test_a_locked_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite3"
    log = SqliteDecisionLog(path, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            log.record([decision("d1")])
        with pytest.raises(Unavailable):
            log.record_outcomes([outcome("m1", "d1")])
        other.execute("ROLLBACK")
        log.record([decision("d1")])
        assert log.get("d1") == [decision("d1")]
    finally:
        other.close()
        log.close()


# -- the SQLite backend's own promises ---------------------------------------------------------


def test_a_recorded_decision_survives_a_crash_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite3"
    script = (
        "import os, sys\n"
        "from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog\n"
        "from touchpoint.decide.decision_log.base import DecisionRecord\n"
        "log = SqliteDecisionLog(sys.argv[1])\n"
        "log.record([DecisionRecord('d1', 'home_hero', 'hero_a', 'p1', 'anonymous_id:a1',\n"
        "    'priority', 3, 'eligible', 1.0, '2026-01-01T01:00:00.000Z')])\n"
        "os._exit(0)  # no close, no checkpoint: the decision is only in the WAL\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    log = SqliteDecisionLog(path)
    try:
        assert log.get("d1") == [decision("d1")]
    finally:
        log.close()


def test_the_checkpointer_copies_the_wal_back_and_stops_on_close(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite3"
    log = SqliteDecisionLog(path, checkpoint_interval=0.01)
    empty = path.stat().st_size
    log.record([decision(f"d{n}", content_id=f"c{n}") for n in range(500)])
    deadline = time.monotonic() + 30
    while path.stat().st_size <= empty and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.stat().st_size > empty  # the rows reached the database file itself
    checkpointer = threading.enumerate()
    log.close()
    assert not [
        thread
        for thread in checkpointer
        if thread.name == f"checkpoint-{path.name}" and thread.is_alive()
    ]
