"""Real-time segment evaluation: ordering, dependencies, time-dependent sweeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from touchpoint.config.workspace import FeatureConfig, SegmentConfig
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import DefinitionError
from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.profiles.view import profile_document
from touchpoint.segments.realtime import SegmentEvaluator

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def segments(*pairs: tuple[str, Any]) -> list[SegmentConfig]:
    return [SegmentConfig(name=name, condition=condition) for name, condition in pairs]


def document(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "traits": {},
        "features": {},
        "segments": [],
        "segment_memberships": {},
        "profile": {},
    }
    base.update(fields)
    return base


def test_later_segments_see_earlier_ones() -> None:
    evaluator = SegmentEvaluator(
        segments(
            ("pros", "traits.plan == 'pro'"),
            ("big_spenders", "features.revenue >= 100"),
            ("vip", {"and": [{"segment": "pros"}, {"segment": "big_spenders"}]}),
            ("not_vip", {"not": {"segment": "vip"}}),
        )
    )
    assert evaluator.names == ("pros", "big_spenders", "vip", "not_vip")
    rich_pro = document(traits={"plan": "pro"}, features={"revenue": 150})
    assert evaluator.evaluate(rich_pro, NOW) == {"pros", "big_spenders", "vip"}
    poor_pro = document(traits={"plan": "pro"}, features={"revenue": 5})
    assert evaluator.evaluate(poor_pro, NOW) == {"pros", "not_vip"}


def test_stale_stored_memberships_of_own_segments_are_ignored() -> None:
    evaluator = SegmentEvaluator(
        segments(("pros", "traits.plan == 'pro'"), ("x", "segments contains 'pros'"))
    )
    stale = document(segments=["pros"], segment_memberships={"pros": "2024-01-01T00:00:00.000Z"})
    assert evaluator.evaluate(stale, NOW) == set()
    assert stale["segments"] == ["pros"]  # the caller's document is not changed


def test_segments_owned_elsewhere_are_read_from_the_document() -> None:
    evaluator = SegmentEvaluator(segments(("champions_on_sale", {"segment": "rfm_champions"})))
    member = document(segments=["rfm_champions"], segment_memberships={"rfm_champions": "t"})
    assert evaluator.evaluate(member, NOW) == {"champions_on_sale"}
    assert evaluator.evaluate(document(), NOW) == set()


@pytest.mark.parametrize(
    "condition", [{"segment": "later"}, {"segment": "itself"}, "segments contains 'later'"]
)
def test_references_to_later_segments_are_refused(condition: Any) -> None:
    with pytest.raises(DefinitionError) as raised:
        SegmentEvaluator(segments(("first", True), ("itself", condition), ("later", True)))
    assert raised.value.path.startswith("segments[1].condition")


def test_bad_condition_names_its_path() -> None:
    with pytest.raises(DefinitionError) as raised:
        SegmentEvaluator(segments(("ok", True), ("bad", "features.x >>> 3")))
    assert raised.value.path.startswith("segments[1].condition")


def test_time_dependent_segments() -> None:
    evaluator = SegmentEvaluator(
        segments(
            ("recent", "last_seen within 7d"),
            ("active", "features.views_7d >= 2"),
            ("pros", "traits.plan == 'pro'"),
            ("recent_pros", {"and": [{"segment": "recent"}, {"segment": "pros"}]}),
            ("big", {"field": "features.revenue", "gt": 100}),
        ),
        time_dependent_features=["views_7d"],
    )
    assert evaluator.time_dependent == {"recent", "active", "recent_pros"}
    assert evaluator.time_dependent_with([]) == {"recent", "recent_pros"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteProfileStore]:
    opened = SqliteProfileStore(tmp_path / "profiles.sqlite3")
    yield opened
    opened.close()


def view(day: datetime) -> dict[str, Any]:
    moment = isoformat(day)
    return {"type": "track", "event": "Product Viewed", "timestamp": moment, "receivedAt": moment}


def test_sweep_expires_windowed_segments(store: SqliteProfileStore) -> None:
    engine = FeatureEngine(
        [
            FeatureConfig(name="views_7d", type="count", event="Product Viewed", window="7d"),
            FeatureConfig(name="views", type="count", event="Product Viewed"),
        ]
    )
    evaluator = SegmentEvaluator(
        segments(("active", "features.views_7d >= 1"), ("viewers", "features.views >= 1"))
    )
    assert evaluator.time_dependent == frozenset()  # the engine tells the sweep which are
    with store.transaction() as writer:
        for index in range(5):
            profile = Profile(profile_id=f"p{index}", created_at=isoformat(NOW))
            engine.apply(profile.features, view(NOW - timedelta(days=index)))
            writer.create(profile)
            writer.save(profile)
            doc = profile_document(profile, engine, NOW)
            assert evaluator.update_memberships(writer, profile, doc, NOW) == 2
    assert store.segment_sizes() == {"active": 5, "viewers": 5}
    later = NOW + timedelta(days=4, hours=1)  # p0..p2 stay within 7 days, p3 and p4 fall out
    assert evaluator.refresh_time_dependent(store, engine, later, batch=2) == 2
    assert store.segment_sizes() == {"active": 3, "viewers": 5}
    exits = [c for _, c in store.segment_changes() if c.change == "exit"]
    assert sorted((c.profile_id, c.segment, c.at) for c in exits) == [
        ("p3", "active", isoformat(later)),
        ("p4", "active", isoformat(later)),
    ]
    assert evaluator.refresh_time_dependent(store, engine, later, batch=2) == 0  # nothing left


def test_sweep_without_time_dependent_segments_does_nothing(store: SqliteProfileStore) -> None:
    engine = FeatureEngine([])
    evaluator = SegmentEvaluator(segments(("all", True)))
    with store.transaction() as writer:
        writer.create(Profile(profile_id="p1", created_at=isoformat(NOW)))
    assert evaluator.refresh_time_dependent(store, engine, NOW) == 0
    assert store.segment_changes() == []


def test_profile_document_is_what_conditions_read() -> None:
    engine = FeatureEngine([FeatureConfig(name="views", type="count", event="Product Viewed")])
    profile = Profile(
        profile_id="p1",
        created_at="2024-01-01T00:00:00.000Z",
        first_seen="2024-01-02T00:00:00.000Z",
        last_seen="2024-03-09T00:00:00.000Z",
        traits={"plan": "pro"},
        consent={"email": True},
        segments={"vip": "2024-02-01T00:00:00.000Z"},
        scores={"churn": 0.2},
    )
    profile.identities.extend([Identity("user_id", "u1"), Identity("anonymous_id", "a1")])
    engine.apply(profile.features, view(NOW - timedelta(days=1)))
    doc = profile_document(profile, engine, NOW)
    assert doc["profile_id"] == "p1"
    assert doc["identities"] == {"user_id": ["u1"], "anonymous_id": ["a1"]}
    assert doc["features"] == {"views": 1}
    assert doc["segments"] == ["vip"]
    assert doc["segment_memberships"] == {"vip": "2024-02-01T00:00:00.000Z"}
    assert doc["profile"] == {
        "id": "p1",
        "first_seen": "2024-01-02T00:00:00.000Z",
        "last_seen": "2024-03-09T00:00:00.000Z",
    }
    assert (doc["traits"], doc["consent"], doc["scores"]) == (
        {"plan": "pro"},
        {"email": True},
        {"churn": 0.2},
    )
    evaluator = SegmentEvaluator(
        segments(
            ("seen_recently", "profile.last_seen within 7d"), ("viewer", "features.views >= 1")
        )
    )
    assert evaluator.evaluate(doc, NOW) == {"seen_recently", "viewer"}
    doc["traits"]["plan"] = "free"
    assert profile.traits == {"plan": "pro"}  # the document shares nothing mutable


def test_each_evaluation_stamps_its_own_now(store: SqliteProfileStore) -> None:
    evaluator = SegmentEvaluator(segments(("pros", "traits.plan == 'pro'")))
    engine = FeatureEngine([])
    profile = Profile(profile_id="p1", created_at=isoformat(NOW))
    later = NOW + timedelta(hours=1)
    with store.transaction() as writer:
        writer.create(profile)
        for moment, plan in ((NOW, "pro"), (NOW, "free"), (later, "pro"), (later, "pro")):
            profile.traits["plan"] = plan
            doc = profile_document(profile, engine, moment)
            evaluator.update_memberships(writer, profile, doc, moment)
        # an equal time in another object is stamped the same
        same_later = datetime.fromisoformat(later.isoformat())
        assert evaluator.evaluate(profile_document(profile, engine, same_later), same_later)
    assert profile.segments == {"pros": isoformat(later)}
    changes = [(c.change, c.at) for _, c in store.segment_changes()]
    assert changes == [
        ("enter", isoformat(NOW)),
        ("exit", isoformat(NOW)),
        ("enter", isoformat(later)),
    ]
