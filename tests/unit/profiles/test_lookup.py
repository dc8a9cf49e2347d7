"""One way to find a person from an identifier: PersonFinder, and the four readers that use it
(decide, the profile API, export, erasure) agreeing on who an identifier names."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import WRITE_KEY, bearer, drain
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.decide.results import DecideRequest
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

EMAIL = "ada@example.com"
WRITTEN_OTHERWISE = "  Ada@Example.COM "


def ada(workspace: Workspace) -> str:
    """Collect Ada (user id and email), apply, and return her profile id."""
    source = workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    workspace.collector.collect(
        source, [{"type": "identify", "userId": "ada", "traits": {"email": EMAIL}}]
    )
    drain(workspace)
    profile_id = workspace.people.find_one("user_id", "ada").profile_id
    assert profile_id is not None
    return profile_id


def test_an_identifier_is_normalized_and_hashed_before_the_profile_is_looked_up(
    workspace: Workspace,
) -> None:
    profile_id = ada(workspace)
    identity = workspace.people.identity("email", WRITTEN_OTHERWISE)
    assert identity.kind == "email"
    assert identity.value != EMAIL  # PII kinds are stored hashed, never plain
    assert identity == workspace.people.identity("email", EMAIL)
    person = workspace.people.find_one("email", WRITTEN_OTHERWISE)
    assert person.known and person.profile_id == profile_id
    assert person.profile is not None and person.profile.profile_id == profile_id
    assert workspace.people.find_one("email", EMAIL, load=False).profile is None


def test_a_stranger_has_no_profile_and_no_tombstone(workspace: Workspace) -> None:
    person = workspace.people.find_one("user_id", "nobody")
    assert not person.known
    assert person.profile is None
    assert workspace.people.tombstones(person.identities) == {}


def test_the_first_identity_with_a_profile_names_the_person(workspace: Workspace) -> None:
    profile_id = ada(workspace)
    person = workspace.people.find([Identity("user_id", "nobody"), Identity("user_id", "ada")])
    assert person.profile_id == profile_id


def test_an_erased_identifier_is_found_by_its_tombstone(workspace: Workspace) -> None:
    ada(workspace)
    workspace.eraser.erase("email", WRITTEN_OTHERWISE, actor="test")
    person = workspace.people.find_one("email", EMAIL)
    assert not person.known
    identity = workspace.people.identity("email", EMAIL)
    expected = {identity: workspace.people.tombstone_key(identity)}
    assert workspace.people.tombstones(person.identities) == expected


def test_bad_identifiers_are_refused_by_name(workspace: Workspace) -> None:
    with pytest.raises(NotFound):
        workspace.people.identity("shoe_size", "42")
    with pytest.raises(InvalidInput) as refused:
        workspace.people.identity("email", "\uff41da@example.com")  # a look-alike letter
    assert refused.value.details["field"] == "email"


def test_decide_the_profile_api_export_and_erasure_find_the_same_person(
    workspace: Workspace, client: TestClient
) -> None:
    profile_id = ada(workspace)
    secret = workspace.settings.secret_key
    decided = workspace.decider.decide(
        DecideRequest(identities={"email": WRITTEN_OTHERWISE}, placements=[])
    )
    assert decided.profile_id == profile_id
    answer = client.get(f"/v1/profiles/email/{WRITTEN_OTHERWISE}", headers=bearer(secret))
    assert answer.status_code == 200 and answer.json()["profile_id"] == profile_id
    exported = workspace.export_person("email", WRITTEN_OTHERWISE, actor="test")
    assert exported["profile"]["profile_id"] == profile_id
    job = workspace.eraser.erase("email", WRITTEN_OTHERWISE, actor="test")
    assert profile_id in job.profile_ids
