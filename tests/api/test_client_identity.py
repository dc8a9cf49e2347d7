"""What the public write key of a source with client-side decisions can and cannot do.

The attacks of issue 11 (section 4), each as a test: deciding for someone else by their
user id or email, telling a customer from a stranger by the answer's shape, and linking
one's own device to someone else's profile with an identify, a track, an alias or an
email trait. docs/threat-model.md names these tests.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import CLIENT_KEY, SECRET_KEY, WRITE_KEY, basic, bearer, drain
from touchpoint.api.app import create_app
from touchpoint.config.settings import Settings
from touchpoint.core.clock import isoformat
from touchpoint.core.identity_verification import user_hash
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
CLIENT = basic(CLIENT_KEY)
VICTIM = "victim-1"
VICTIM_EMAIL = "victim@example.com"
HERO = ["home_hero"]


def ago(workspace: Workspace, **delta: float) -> str:
    return isoformat(workspace.clock.now() - timedelta(**delta))


def site_hash(workspace: Workspace, user_id: str) -> str:
    """What the site's backend computes for a signed-in visitor."""
    source = workspace.settings.config.source_named("site")
    assert source is not None and source.identity_verification.secret is not None
    return user_hash(source.identity_verification.secret, user_id)


def send(client: TestClient, workspace: Workspace, key: str, *events: dict) -> dict:
    """The collect result (a batch rejected whole is a 400 carrying it under `error`)."""
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(key))
    drain(workspace)
    body: dict = response.json()
    if response.status_code == 400:
        assert body["error"]["code"] == "rejected"
        body = body["error"]
    return body


@pytest.fixture(name="victim")
def victim_fixture(client: TestClient, workspace: Workspace) -> str:
    return make_victim(client, workspace)


def make_victim(client: TestClient, workspace: Workspace) -> str:
    """A customer with a name and an order, sent from the server source; their profile id."""
    body = send(
        client,
        workspace,
        WRITE_KEY,
        {
            "type": "identify",
            "userId": VICTIM,
            "traits": {"name": "Victoria", "email": VICTIM_EMAIL},
            "timestamp": ago(workspace, hours=2),
        },
        {
            "type": "track",
            "userId": VICTIM,
            "event": "Order Completed",
            "properties": {"revenue": 99.0},
            "timestamp": ago(workspace, hours=1),
        },
    )
    assert body["accepted"] == 2, body
    profile_id = workspace.profiles.find(Identity("user_id", VICTIM))
    assert profile_id is not None
    return profile_id


def decide(client: TestClient, body: dict, headers: dict[str, str] = CLIENT) -> object:
    return client.post("/v1/decide", json={**body, "placements": HERO}, headers=headers)


def hero_of(response: object) -> dict:
    body = response.json()  # type: ignore[attr-defined]
    hero: dict = body["placements"]["home_hero"]
    return hero


# -- deciding for someone else ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "user_id"])
def test_a_client_key_cannot_decide_for_someone_by_an_unsigned_identifier(
    client: TestClient, victim: str, kind: str
) -> None:
    value = VICTIM_EMAIL if kind == "email" else VICTIM
    response = decide(client, {kind: value})
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "identity_not_verified"
    assert error["field"] == ("email" if kind == "email" else "user_hash")
    assert "Victoria" not in response.text and victim not in response.text


def test_a_wrong_signature_is_refused_alike_for_a_customer_and_a_stranger(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    wrong = site_hash(workspace, "someone-else")
    known = decide(client, {"user_id": VICTIM, "user_hash": wrong})
    unknown = decide(client, {"user_id": "nobody-at-all", "user_hash": wrong})
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()
    assert known.json()["error"]["field"] == "user_hash"


def test_a_signed_user_id_decides_for_that_person_without_their_profile_id(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    response = decide(client, {"user_id": VICTIM, "user_hash": site_hash(workspace, VICTIM)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert hero_of(response)["html"] == "<h1>Thanks, Victoria</h1>"
    assert "profile_id" not in body
    # The decision log still knows whose decision it was.
    records = workspace.decisions.get(body["decision_id"])
    assert {record.profile_id for record in records} == {victim}


def test_client_answers_have_the_same_shape_for_a_customer_and_a_stranger(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    signed = decide(client, {"user_id": VICTIM, "user_hash": site_hash(workspace, VICTIM)})
    stranger = decide(client, {"anonymous_id": "a-fresh-device"})
    assert signed.status_code == stranger.status_code == 200
    assert (
        set(signed.json())
        == set(stranger.json())
        == {
            "decision_id",
            "definitions_version",
            "placements",
        }
    )
    assert set(hero_of(signed)) == set(hero_of(stranger))


def test_the_secret_key_still_decides_by_any_identifier_and_sees_the_profile_id(
    client: TestClient, victim: str
) -> None:
    response = decide(client, {"email": VICTIM_EMAIL}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["profile_id"] == victim
    assert hero_of(response)["content_id"] == "hero_buyer"


# -- linking a device to someone else --------------------------------------------------------


def _linked_to_victim(client: TestClient, device: str) -> bool:
    return hero_of(decide(client, {"anonymous_id": device}))["content_id"] == "hero_buyer"


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_an_unsigned_user_id_from_the_client_source_is_rejected_and_links_nothing(
    client: TestClient, workspace: Workspace, victim: str, kind: str
) -> None:
    event = {"type": kind, "anonymousId": "attacker-device", "userId": VICTIM}
    extra = {"track": {"event": "Product Viewed"}, "group": {"groupId": "g1"}}
    event.update(extra.get(kind, {}))
    if kind == "alias":
        event = {"type": "alias", "previousId": "attacker-device", "userId": VICTIM}
    body = send(client, workspace, CLIENT_KEY, event)
    assert body["accepted"] == 0
    rejected = body["rejected"][0]
    assert rejected["reason"] == "identity_not_verified"
    assert rejected["errors"][0]["field"] == "context.user_hash"
    assert not _linked_to_victim(client, "attacker-device")
    assert workspace.profiles.find(Identity("anonymous_id", "attacker-device")) is None


def test_a_wrong_signature_on_an_event_is_rejected(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    body = send(
        client,
        workspace,
        CLIENT_KEY,
        {
            "type": "identify",
            "anonymousId": "attacker-device",
            "userId": VICTIM,
            "context": {"user_hash": site_hash(workspace, "attacker")},
        },
    )
    assert body["rejected"][0]["reason"] == "identity_not_verified"
    assert not _linked_to_victim(client, "attacker-device")


def test_a_signed_identify_links_the_device_and_the_signature_is_not_stored(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    signature = site_hash(workspace, VICTIM)
    body = send(
        client,
        workspace,
        CLIENT_KEY,
        {
            "type": "identify",
            "anonymousId": "victims-phone",
            "userId": VICTIM,
            "context": {"user_hash": signature},
        },
    )
    assert body["accepted"] == 1, body
    assert _linked_to_victim(client, "victims-phone")
    log = workspace.log
    stored = [
        entry.payload for partition in range(log.partitions) for entry in log.read(partition, 0)
    ]
    assert stored and all(signature.encode() not in payload for payload in stored)


def test_a_signature_on_an_event_refused_for_another_reason_is_not_kept_either(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    signature = site_hash(workspace, VICTIM)
    event = {"type": "track", "userId": VICTIM, "context": {"user_hash": signature}}  # no name
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic(CLIENT_KEY))
    assert response.status_code == 400, response.text
    kept = workspace.rejected.list().items
    assert kept and all(signature not in orjson.dumps(item.event).decode() for item in kept)


def test_an_email_trait_from_the_client_source_does_not_link_the_device(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    body = send(
        client,
        workspace,
        CLIENT_KEY,
        {"type": "identify", "anonymousId": "attacker-device", "traits": {"email": VICTIM_EMAIL}},
    )
    assert body["accepted"] == 1  # a newsletter form's identify is still welcome
    assert not _linked_to_victim(client, "attacker-device")
    attacker = workspace.profiles.find(Identity("anonymous_id", "attacker-device"))
    assert attacker is not None and attacker != victim


def test_an_alias_from_the_client_source_cannot_merge_someone_else_in(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    body = send(
        client,
        workspace,
        CLIENT_KEY,
        {
            "type": "alias",
            "previousId": VICTIM,
            "userId": "attacker",
            "context": {"user_hash": site_hash(workspace, "attacker")},
        },
    )
    assert body["accepted"] == 1, body
    attacker = workspace.profiles.find(Identity("user_id", "attacker"))
    assert attacker is not None and attacker != victim
    assert workspace.profiles.find(Identity("user_id", VICTIM)) == victim
    signed = decide(client, {"user_id": "attacker", "user_hash": site_hash(workspace, "attacker")})
    assert hero_of(signed)["content_id"] != "hero_buyer"


def test_a_source_without_client_decisions_links_as_before(
    client: TestClient, workspace: Workspace, victim: str
) -> None:
    body = send(
        client,
        workspace,
        WRITE_KEY,
        {"type": "identify", "anonymousId": "server-known-device", "userId": VICTIM},
    )
    assert body["accepted"] == 1
    assert workspace.profiles.find(Identity("anonymous_id", "server-known-device")) == victim


def test_in_server_mode_the_same_attacks_fail_and_the_signed_path_works(
    server_settings: Settings, server_workspace: Workspace
) -> None:
    """PostgreSQL stores and the Redis log: refusals, rejections and links are the same."""
    with TestClient(create_app(server_settings, workspace=server_workspace)) as client:
        make_victim(client, server_workspace)
        assert decide(client, {"email": VICTIM_EMAIL}).status_code == 403
        attack = {"type": "identify", "anonymousId": "attacker-device", "userId": VICTIM}
        body = send(client, server_workspace, CLIENT_KEY, attack)
        assert body["rejected"][0]["reason"] == "identity_not_verified"
        email_attack = {"type": "identify", "anonymousId": "a2", "traits": {"email": VICTIM_EMAIL}}
        assert send(client, server_workspace, CLIENT_KEY, email_attack)["accepted"] == 1
        assert not _linked_to_victim(client, "attacker-device")
        assert not _linked_to_victim(client, "a2")
        signed = {"user_id": VICTIM, "user_hash": site_hash(server_workspace, VICTIM)}
        response = decide(client, signed)
        assert hero_of(response)["content_id"] == "hero_buyer"
        assert "profile_id" not in response.json()
