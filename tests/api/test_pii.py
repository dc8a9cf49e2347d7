"""Personal data over HTTP: what the collector keeps of it, and how an email written
another way finds (or, written as a look-alike, never finds) a person, on every route
that names a person by email: profile lookup, decide, export and erasure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    SECRET_KEY,
    TEST_CONFIG,
    WRITE_KEY,
    basic,
    bearer,
    drain,
    server_config,
    write_config,
)
from touchpoint.config.settings import Settings, load_settings
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
COMPOSED = "Ren\u00e9.Dupont@Exemple.fr"  # é as one character
DECOMPOSED_UPPER = "RENE\u0301.DUPONT@EXEMPLE.FR"  # E + combining acute, upper case
KELVIN = "\u212aate@example.com"  # the Kelvin sign, which NFC alone turns into K
FULLWIDTH = "\uff4b\uff41\uff54\uff45@example.com"


@pytest.fixture(params=["embedded", "server"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Both modes: the policy runs in the collector, but the lookups, decide and erasure
    read the profile store, which is PostgreSQL (and the log Redis) in server mode."""
    if request.param == "embedded":
        data = TEST_CONFIG
    else:
        schema = request.getfixturevalue("postgres_schema")
        data = server_config(schema, request.getfixturevalue("redis_prefix"))
    path = write_config(tmp_path, data)
    return load_settings(path, tmp_path / "data", environ={}, enable_noop_endpoint=True)


def post(client: TestClient, *events: dict[str, Any]) -> Any:
    return client.post("/v1/batch", json={"batch": list(events)}, headers=basic(WRITE_KEY))


def logged(workspace: Workspace) -> list[dict[str, Any]]:
    return [
        orjson.loads(record.payload)
        for partition in range(workspace.log.partitions)
        for record in workspace.log.read(partition, 0)
    ]


def rejected_text(client: TestClient) -> str:
    return orjson.dumps(client.get("/v1/rejected", headers=ADMIN).json()["events"]).decode()


# -- collection ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", [KELVIN, FULLWIDTH])
@pytest.mark.parametrize("where", ["traits.email", "context.traits.email"])
def test_a_look_alike_email_is_rejected_naming_its_field_and_the_reason(
    client: TestClient, workspace: Workspace, address: str, where: str
) -> None:
    if where == "traits.email":
        event = {"type": "identify", "userId": "u-look", "traits": {"email": address}}
    else:
        event = {"type": "track", "userId": "u-look", "event": "Signed Up",
                 "context": {"traits": {"email": address}}}  # fmt: skip
    response = post(client, event)
    assert response.status_code == 400, response.text
    [problem] = response.json()["error"]["rejected"]
    assert problem["reason"] == "invalid"
    [error] = problem["errors"]
    assert error["field"] == where
    assert "compatibility characters" in error["reason"]
    assert logged(workspace) == []
    stored = rejected_text(client)
    assert "u-look" in stored and "example.com" not in stored  # kept, but never in clear


def test_phones_ips_and_emails_in_urls_and_properties_are_not_logged_in_clear(
    client: TestClient, workspace: Workspace
) -> None:
    context = {
        "ip": "203.0.113.77",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        "page": {
            "url": "https://shop.example/thanks?email=jane%40example.com&ref=mail",
            "search": "?email=Jane@Example.com",
            "referrer": "https://mail.example/read?to=jane@example.com",
        },
    }
    response = post(
        client,
        {"type": "identify", "userId": "u-pii", "traits": {"email": "Jane@Example.com",
         "phone": "+33 6 12 34 56 78", "plan": "pro"}, "context": context},
        {"type": "track", "userId": "u-pii", "event": "Newsletter Signed Up",
         "properties": {"email": "JANE@example.com", "note": "write to jane@example.com"},
         "context": {"ip": "2001:db8:85a3:8d3:1319:8a2e:370:7348"}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    events = logged(workspace)
    text = orjson.dumps(events).decode()
    for clear in ("jane", "Jane", "612345678", "6 12 34", "203.0.113.77", "8a2e"):
        assert clear not in text
    jane = workspace.hasher.hash("email", "jane@example.com")
    identify = next(event for event in events if event["type"] == "identify")
    track = next(event for event in events if event["type"] == "track")
    assert identify["traits"]["email"] == jane
    assert identify["traits"]["phone"] == workspace.hasher.hash("phone", "+33612345678")
    assert identify["traits"]["plan"] == "pro"
    assert identify["context"]["ip"] == "203.0.113.0"
    assert identify["context"]["userAgent"] == context["userAgent"]  # kept by default
    page = identify["context"]["page"]
    assert page["url"] == f"https://shop.example/thanks?email={jane}&ref=mail"
    assert page["search"] == f"?email={jane}"
    assert page["referrer"] == f"https://mail.example/read?to={jane}"
    # Hashed as an email, a property joins with the person's identity.
    assert track["properties"] == {"email": jane, "note": f"write to {jane}"}
    assert track["context"]["ip"] == "2001:db8:85a3::"


def test_a_blocked_or_empty_email_never_becomes_an_identity_shared_by_strangers(
    client: TestClient, workspace: Workspace
) -> None:
    response = post(
        client,
        {"type": "identify", "userId": "stranger-1", "traits": {"email": "null"}},
        {"type": "identify", "userId": "stranger-2", "traits": {"email": " NULL "}},
    )
    assert response.status_code == 200, response.text
    drain(workspace)
    one = client.get("/v1/profiles/user_id/stranger-1", headers=ADMIN).json()
    two = client.get("/v1/profiles/user_id/stranger-2", headers=ADMIN).json()
    assert one["profile_id"] != two["profile_id"]
    assert "email" not in one["identities"]


# -- lookups -------------------------------------------------------------------------------


@pytest.fixture
def rene(client: TestClient, workspace: Workspace) -> str:
    """René, identified by his email written with a composed é; his profile id."""
    response = post(
        client,
        {"type": "identify", "userId": "u-rene", "traits": {"email": COMPOSED}},
        {"type": "identify", "userId": "u-kate", "traits": {"email": "kate@example.com"}},
    )
    assert response.status_code == 200, response.text
    drain(workspace)
    profile_id: str = client.get("/v1/profiles/user_id/u-rene", headers=ADMIN).json()["profile_id"]
    return profile_id


def test_a_lookup_by_the_email_written_another_way_finds_the_same_person(
    client: TestClient, rene: str
) -> None:
    found = client.get(f"/v1/profiles/email/{DECOMPOSED_UPPER}", headers=ADMIN)
    assert found.status_code == 200, found.text
    assert found.json()["profile_id"] == rene
    exported = client.get(f"/v1/profiles/email/{DECOMPOSED_UPPER}/export", headers=ADMIN)
    assert exported.status_code == 200, exported.text
    assert exported.json()["profile"]["profile_id"] == rene


@pytest.mark.parametrize("route", ["", "/events", "/export"])
def test_a_lookup_by_a_look_alike_is_a_422_never_another_person(
    client: TestClient, rene: str, route: str
) -> None:
    response = client.get(f"/v1/profiles/email/{KELVIN}{route}", headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == "email"
    assert "compatibility characters" in error["reason"]
    assert KELVIN not in error["message"]


def test_decide_by_the_email_written_another_way_decides_for_the_same_person(
    client: TestClient, workspace: Workspace, rene: str
) -> None:
    response = client.post(
        "/v1/decide",
        json={"email": DECOMPOSED_UPPER, "placements": ["home_hero"]},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    record = client.get(f"/v1/decisions/{response.json()['decision_id']}", headers=ADMIN).json()
    assert record["profile_id"] == rene
    refused = client.post(
        "/v1/decide", json={"email": KELVIN, "placements": ["home_hero"]}, headers=ADMIN
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "email"


def test_erasure_by_the_email_written_another_way_erases_the_person(
    client: TestClient, workspace: Workspace, rene: str
) -> None:
    refused = client.delete(f"/v1/profiles/email/{KELVIN}", headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert client.get("/v1/profiles/email/kate@example.com", headers=ADMIN).status_code == 200
    erased = client.delete(f"/v1/profiles/email/{DECOMPOSED_UPPER}", headers=ADMIN)
    assert erased.status_code == 200, erased.text
    assert erased.json()["profile_ids"] == [rene]
    assert client.get(f"/v1/profiles/email/{COMPOSED}", headers=ADMIN).status_code == 404
    assert client.get("/v1/profiles/user_id/u-rene", headers=ADMIN).status_code == 404
