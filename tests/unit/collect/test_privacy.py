"""The privacy policy on single events: identity kinds, `privacy.paths`, IP addresses, user
agents and the email scan; and the configuration it is declared in."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from touchpoint.collect.privacy import PrivacyPolicy, truncate_ip
from touchpoint.config.workspace import parse_config
from touchpoint.core.errors import DefinitionError
from touchpoint.profiles.pii import IdentityHasher

HASHER = IdentityHasher("0123456789abcdef0123")
JANE = HASHER.hash("email", "jane@example.com")


def policy(**privacy: Any) -> PrivacyPolicy:
    return PrivacyPolicy(parse_config({"privacy": privacy} if privacy else {}), HASHER)


def applied(event: dict[str, Any], **privacy: Any) -> dict[str, Any]:
    errors = policy(**privacy).apply(event)
    assert errors == []
    return event


def test_pii_kinds_are_hashed_in_traits_and_context_traits_and_hashing_is_idempotent() -> None:
    rules = policy()
    event = {"traits": {"email": " Jane@Example.com", "name": "A"},
             "context": {"traits": {"email": "JANE@example.com"}}}  # fmt: skip
    assert rules.apply(event) == []
    assert event["traits"] == {"email": JANE, "name": "A"}
    assert event["context"]["traits"]["email"] == JANE
    again = orjson.loads(orjson.dumps(event))
    assert rules.apply(again) == [] and again == event


def test_blocked_empty_and_non_text_pii_values_are_removed_not_hashed() -> None:
    for value in ("null", " Unknown ", "", "   ", {"a": 1}, None, True):
        assert applied({"traits": {"email": value, "plan": "pro"}})["traits"] == {"plan": "pro"}


def test_a_look_alike_is_an_error_naming_its_path_and_hashed_in_the_lenient_copy() -> None:
    event = {"traits": {"email": "\u212aate@example.com"}}
    [error] = policy().apply(dict(event))
    assert error["field"] == "traits.email"
    assert "compatibility characters" in error["reason"]
    lenient = {"traits": {"email": "\u212aate@example.com"}}
    assert policy().apply(lenient, lenient=True) == []
    hashed = lenient["traits"]["email"]
    assert IdentityHasher.is_hashed(hashed)
    assert hashed != HASHER.hash("email", "kate@example.com")  # never the look-alike's target


def test_a_clear_email_kind_is_checked_but_kept_in_clear() -> None:
    config = parse_config(
        {"identity": {"kinds": [{"name": "login", "source": "traits.login", "normalize": "email"}]}}
    )
    rules = PrivacyPolicy(config, HASHER)
    event = {"traits": {"login": "Jane@Example.com"}}
    assert rules.apply(event) == [] and event["traits"]["login"] == "Jane@Example.com"
    [error] = rules.apply({"context": {"traits": {"login": "\uff4a@example.com"}}})
    assert error["field"] == "context.traits.login"


def test_phone_numbers_are_hashed_by_default_as_the_phone_kind_would() -> None:
    event = applied({"traits": {"phone": "+33 (0)6 12 34 56 78"},
                     "context": {"traits": {"phone": "0033612345678"}}})  # fmt: skip
    phone = HASHER.hash("phone", "+33612345678")
    assert event["traits"]["phone"] == phone
    assert event["context"]["traits"]["phone"] == phone


def test_paths_hash_drop_keep_and_truncate_with_wildcards_over_objects_and_lists() -> None:
    event = {
        "properties": {
            "buyer": {"contact": "Jane@Example.com", "name": "Jane"},
            "seller": {"contact": "JANE@example.com"},
            "coupon_owner": "jane",
            "support": "help@shop.example",
            "lines": [{"owner": "a"}, {"owner": "b"}],
            "gateway_ip": "198.51.100.23",
            "secret": {"deep": ["x", 7, None]},
        },
        "traits": {"phone": "+1 415 555 0100"},
    }
    applied(
        event,
        paths=[
            {"path": "properties.*.contact", "action": "hash", "as": "email"},
            {"path": "properties.coupon_owner", "action": "drop"},
            {"path": "properties.support", "action": "keep"},
            {"path": "properties.lines.*.owner", "action": "drop"},
            {"path": "properties.gateway_ip", "action": "truncate"},
            {"path": "properties.secret", "action": "hash"},
            {"path": "traits.phone", "action": "keep"},
        ],
    )
    properties = event["properties"]
    assert properties["buyer"] == {"contact": JANE, "name": "Jane"}  # joins with the identity
    assert properties["seller"] == {"contact": JANE}
    assert "coupon_owner" not in properties
    assert properties["support"] == "help@shop.example"  # kept: exempt from the email scan
    assert properties["lines"] == [{}, {}]
    assert properties["gateway_ip"] == "198.51.100.0"
    assert properties["secret"] == {
        "deep": [HASHER.hash("value", "x"), HASHER.hash("value", "7"), None]
    }
    assert event["traits"]["phone"] == "+1 415 555 0100"  # the workspace chose to keep it


def test_a_rule_hashing_as_email_refuses_a_look_alike() -> None:
    rules = policy(paths=[{"path": "properties.contact", "action": "hash", "as": "email"}])
    [error] = rules.apply({"properties": {"contact": "\uff4aane@example.com"}})
    assert error["field"] == "properties.contact"


def test_a_wildcard_never_touches_an_identity_kinds_source() -> None:
    event = applied({"traits": {"email": "jane@example.com", "nick": "jj"}},
                    paths=[{"path": "traits.*", "action": "drop"}])  # fmt: skip
    assert event["traits"] == {"email": JANE}


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("truncate", "203.0.113.0"), ("keep", "203.0.113.77"), ("drop", None)],
)
def test_the_ip_setting(setting: str, expected: str | None) -> None:
    event = applied({"context": {"ip": "203.0.113.77"}}, ip=setting)
    assert event["context"].get("ip") == expected


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0"),
        (" 10.1.2.3 ", "10.1.2.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("fe80::1%eth0", "fe80::"),
        ("not an ip", None),
        ("999.1.1.1", None),
    ],
)
def test_ip_addresses_are_cut_to_their_network(address: str, network: str | None) -> None:
    assert truncate_ip(address) == network


def test_an_ip_that_is_not_an_address_is_dropped_when_truncating() -> None:
    assert "ip" not in applied({"context": {"ip": "jane's laptop"}})["context"]
    assert "ip" not in applied({"context": {"ip": 12}})["context"]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("keep", "Mozilla/5.0"), ("hash", HASHER.hash("value", "Mozilla/5.0")), ("drop", None)],
)
def test_the_user_agent_setting(setting: str, expected: str | None) -> None:
    event = applied({"context": {"userAgent": "Mozilla/5.0"}}, user_agent=setting)
    assert event["context"].get("userAgent") == expected


def test_email_shaped_text_is_hashed_anywhere_and_joins_with_the_identity() -> None:
    event = applied(
        {
            "properties": {
                "email": "Jane@Example.com",
                "url": "https://x.example/?email=jane%40example.com&a=1",
                "recipients": ["jane@example.com", "no email here"],
                "note": "mailto:JANE@EXAMPLE.COM, thanks",
                "count": 3,
            },
            "context": {"page": {"referrer": "https://m.example/?to=jane@example.com"}},
        }
    )
    assert event["properties"] == {
        "email": JANE,
        "url": f"https://x.example/?email={JANE}&a=1",
        "recipients": [JANE, "no email here"],
        "note": f"mailto:{JANE}, thanks",
        "count": 3,
    }
    assert event["context"]["page"]["referrer"] == f"https://m.example/?to={JANE}"


def test_the_email_scan_drops_or_keeps_as_configured() -> None:
    def make() -> dict[str, Any]:
        return {"properties": {"email": "jane@example.com", "url": "/?e=jane@example.com"}}

    assert applied(make(), emails="drop")["properties"] == {"url": "/?e="}
    assert applied(make(), emails="keep")["properties"] == make()["properties"]


def test_a_look_alike_in_free_text_is_hashed_but_never_as_its_target() -> None:
    event = applied({"properties": {"note": "from \u212aate@example.com"}})
    assert "ate@" not in event["properties"]["note"]
    assert HASHER.hash("email", "kate@example.com") not in event["properties"]["note"]


def test_containers_shared_with_the_request_are_never_changed_in_place() -> None:
    shared_page = {"url": "/?email=jane@example.com"}
    shared_traits = {"email": "jane@example.com", "phone": "+33 6"}
    event = {"context": {"page": shared_page, "traits": shared_traits, "ip": "1.2.3.4"}}
    applied(event)
    assert shared_page == {"url": "/?email=jane@example.com"}
    assert shared_traits == {"email": "jane@example.com", "phone": "+33 6"}
    assert event["context"]["page"]["url"] == f"/?email={JANE}"


def test_an_event_without_personal_data_is_left_as_it_is() -> None:
    properties = {"product_id": "p1", "price": 3, "tags": ["a", "b"]}
    event = {"properties": properties, "context": {"library": {"name": "x"}}}
    applied(event)
    assert event["properties"] is properties


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"paths": [{"path": "email", "action": "hash"}]}, "starts with one of"),
        ({"paths": [{"path": "properties", "action": "hash"}]}, "2 to 8 dotted parts"),
        ({"paths": [{"path": "properties.a b", "action": "hash"}]}, "is a name"),
        ({"paths": [{"path": "properties.(.*)", "action": "hash"}]}, "is a name"),
        ({"paths": [{"path": "properties.a", "action": "encrypt"}]}, "hash"),
        ({"paths": [{"path": "properties.a", "action": "hash"}] * 2}, "repeated"),
        ({"paths": [{"path": "traits.email", "action": "keep"}]}, "identity kind email"),
        ({"paths": [{"path": "context.traits.email", "action": "drop"}]}, "identity kind"),
        ({"paths": [{"path": "properties.a", "action": "hash", "as": "ssn"}]}, "ssn"),
        ({"ip": "hash"}, "privacy.ip"),
        ({"emails": "scan"}, "privacy.emails"),
    ],
)
def test_a_bad_privacy_section_is_refused_with_its_reason(
    privacy: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError) as refused:
        parse_config({"privacy": privacy})
    assert message in refused.value.message


def test_the_default_workspace_hashes_phones_and_truncates_ips() -> None:
    from touchpoint.config.settings import DEFAULT_WORKSPACE
    from touchpoint.config.workspace import load_config_file

    rules = PrivacyPolicy(load_config_file(DEFAULT_WORKSPACE), HASHER)
    event = {
        "traits": {"phone": "+33 6 12 34 56 78", "email": "Jane@Example.com"},
        "context": {"ip": "203.0.113.77", "page": {"url": "/?e=jane@example.com"}},
    }
    assert rules.apply(event) == []
    assert event["traits"] == {"phone": HASHER.hash("phone", "+33612345678"), "email": JANE}
    assert event["context"] == {"ip": "203.0.113.0", "page": {"url": f"/?e={JANE}"}}
