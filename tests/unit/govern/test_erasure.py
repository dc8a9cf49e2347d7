"""The Eraser on a real workspace (embedded stores in a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import pytest

from tests.conftest import WRITE_KEY, drain
from touchpoint.core.errors import NotFound
from touchpoint.decide.decision_log.base import DecisionRecord
from touchpoint.govern.erasure import ERASE_ACTION, Eraser, ErasureJob
from touchpoint.profiles.model import Identity
from touchpoint.profiles.tombstones import tombstone_key
from touchpoint.runtime import Workspace

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "ada@example.com"


def collect(workspace: Workspace, *events: dict[str, Any]) -> None:
    source = workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    result = workspace.collector.collect(source, list(events))
    assert result.accepted == len(events), result


def eraser(workspace: Workspace) -> Eraser:
    return Eraser(
        log=workspace.log,
        people=workspace.people,
        decisions=workspace.decisions,
        rejected=workspace.rejected,
        audit=workspace.audit,
        metrics=workspace.metrics,
        clock=lambda: NOW,
    )


def ada(workspace: Workspace) -> None:
    collect(
        workspace,
        {"type": "identify", "userId": "ada", "anonymousId": "ada-anon",
         "traits": {"email": EMAIL}},
        {"type": "track", "userId": "ada", "event": "Product Viewed"},
        {"type": "track", "userId": "bob", "event": "Product Viewed"},
    )  # fmt: skip
    drain(workspace)


def decision(decision_id: str, subject: str, profile_id: str | None) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        placement="home_hero",
        content_id="hero_default",
        profile_id=profile_id,
        subject=subject,
        policy="priority",
        definitions_version=1,
        reason="fallback",
        propensity=1.0,
        at="2026-03-01T11:00:00.000Z",
    )


def test_a_job_names_the_person_only_by_their_tombstone(workspace: Workspace) -> None:
    ada(workspace)
    job = eraser(workspace).erase("email", EMAIL.upper(), actor="cli:test")

    email = workspace.resolver.identity_for_lookup("email", EMAIL, workspace.hasher)
    assert job.subject == tombstone_key(workspace.hasher, email)
    assert job.status == "completed"
    assert job.requested_at == job.completed_at == "2026-03-01T12:00:00.000Z"
    assert len(job.profile_ids) == 1
    assert job.erased["profile_store"]["identities"] == 3
    assert job.erased["event_log"] == 2
    assert job.erased["decision_log"] == {"decisions": 0, "outcomes": 0}
    assert ErasureJob.from_dict(job.to_dict()) == job
    text = orjson.dumps(job.to_dict()).decode()
    for plain in ("ada-anon", '"ada"', EMAIL, email.value):
        assert plain not in text
    [entry] = workspace.audit.list(action=ERASE_ACTION).items
    assert (entry.actor, entry.target, entry.details) == ("cli:test", job.job_id, job.to_dict())
    assert workspace.profiles.find(Identity("user_id", "bob")) is not None


def test_every_identity_and_the_subject_are_tombstoned(workspace: Workspace) -> None:
    ada(workspace)
    job = eraser(workspace).erase("anonymous_id", "ada-anon", actor="t")
    key = partial(tombstone_key, workspace.hasher)
    email = workspace.resolver.identity_for_lookup("email", EMAIL, workspace.hasher)
    for identity in (Identity("user_id", "ada"), Identity("anonymous_id", "ada-anon"), email):
        assert workspace.profiles.tombstone(key(identity)) == job.job_id
    assert workspace.profiles.tombstone(key(Identity("user_id", "bob"))) is None


def test_erasing_again_by_any_identifier_returns_the_same_job(workspace: Workspace) -> None:
    ada(workspace)
    first = eraser(workspace).erase("user_id", "ada", actor="t")
    for kind, value in (("user_id", "ada"), ("email", EMAIL), ("anonymous_id", "ada-anon")):
        again = eraser(workspace).erase(kind, value, actor="t")
        assert again == ErasureJob.from_dict({**first.to_dict(), "already_erased": True})
    assert len(workspace.audit.list(action=ERASE_ACTION).items) == 1
    assert workspace.metrics.erasures._value.get() == 1


def test_unknown_kinds_and_people_are_not_found(workspace: Workspace) -> None:
    ada(workspace)
    with pytest.raises(NotFound, match="shoe_size"):
        eraser(workspace).erase("shoe_size", "42", actor="t")
    with pytest.raises(NotFound) as raised:
        eraser(workspace).erase("email", "nobody@example.com", actor="t")
    assert "nobody" not in str(raised.value.to_dict())
    assert workspace.audit.list(action=ERASE_ACTION).items == []


def test_events_not_yet_processed_are_erased_and_never_build_a_profile(
    workspace: Workspace,
) -> None:
    ada(workspace)
    collect(
        workspace,
        {"type": "track", "userId": "ada", "event": "Order Completed",
         "properties": {"revenue": 5}},
        {"type": "track", "anonymousId": "ada-anon", "event": "Product Viewed"},
    )  # fmt: skip
    job = eraser(workspace).erase("user_id", "ada", actor="t")
    assert job.erased["event_log"] == 4  # two applied, two still waiting in the log
    drain(workspace)
    assert workspace.profiles.find(Identity("user_id", "ada")) is None
    assert workspace.profiles.find(Identity("anonymous_id", "ada-anon")) is None
    assert workspace.profiles.count() == 1


def test_decisions_under_any_of_their_identities_are_erased(workspace: Workspace) -> None:
    ada(workspace)
    profile_id = workspace.profiles.find(Identity("user_id", "ada"))
    workspace.decisions.record(
        [
            decision("d-profile", "user_id:ada", profile_id),
            # Decided before the person had a profile, under their anonymous id only.
            decision("d-anonymous", "anonymous_id:ada-anon", None),
            decision("d-bob", "user_id:bob", workspace.profiles.find(Identity("user_id", "bob"))),
        ]
    )
    job = eraser(workspace).erase("email", EMAIL, actor="t")
    assert job.erased["decision_log"]["decisions"] == 2
    assert workspace.decisions.get("d-profile") == []
    assert workspace.decisions.get("d-anonymous") == []
    assert workspace.decisions.get("d-bob")


def test_an_erasure_interrupted_before_its_audit_entry_is_finished_on_retry(
    workspace: Workspace,
) -> None:
    ada(workspace)
    collect(workspace, {"type": "track", "userId": "ada", "event": "Product Viewed"})
    # The process stopped right after the profile store's transaction committed.
    user = Identity("user_id", "ada")
    key = partial(tombstone_key, workspace.hasher)
    erased = workspace.profiles.erase(
        workspace.profiles.find(user) or "",
        tombstone_key=key,
        extra_tombstones=[key(user)],
        job_id="job-crashed",
        at="2026-03-01T11:59:00.000Z",
    )
    assert erased is not None
    job = eraser(workspace).erase("user_id", "ada", actor="t")
    assert job.job_id == "job-crashed"
    assert job.already_erased is True
    assert job.erased["resumed"] is True
    # Found by the user id, their routing key; the identify event was routed by the
    # anonymous id, which the retry cannot know any more...
    assert job.erased["event_log"] == 2
    # ...but it carries a tombstoned identity, so a replay drops it and erases it too.
    workspace.log.commit_many(
        workspace.processor.group, {p: 0 for p in range(workspace.log.partitions)}
    )
    drain(workspace)
    assert workspace.log.count() == 1  # bob's event
    assert workspace.profiles.find(Identity("anonymous_id", "ada-anon")) is None
    [entry] = workspace.audit.list(action=ERASE_ACTION, target="job-crashed").items
    assert entry.details["job_id"] == "job-crashed"
    assert eraser(workspace).erase("user_id", "ada", actor="t").job_id == "job-crashed"
    assert len(workspace.audit.list(action=ERASE_ACTION).items) == 1


def test_erasure_deletes_the_person_s_timers_and_no_one_else_s(workspace: Workspace) -> None:
    ada(workspace)
    profile_id = workspace.people.find_one("user_id", "ada").profile_id
    bob = workspace.people.find_one("user_id", "bob").profile_id
    assert profile_id is not None and bob is not None
    due = workspace.clock.now()
    workspace.timers.schedule("journey:ada:1", "journey", due, {"step": 1}, profile_id=profile_id)
    workspace.timers.schedule("journey:bob:1", "journey", due, {"step": 1}, profile_id=bob)
    job = workspace.eraser.erase("email", EMAIL, actor="cli:test")
    assert job.erased["timers"] == 1
    assert workspace.timers.get("journey:ada:1") is None
    assert workspace.timers.get("journey:bob:1") is not None
