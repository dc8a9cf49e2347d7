from touchpoint.collect.ingest import PiiHasher
from touchpoint.collect.pii import IdentityHasher, identifier_text, normalize
from touchpoint.core.config import IdentityConfig

SECRET = "0123456789abcdef0123"


def test_normalize() -> None:
    assert normalize("  Jane.Doe@Example.COM ", "email") == "jane.doe@example.com"
    assert normalize("+33 (0)6-12", "phone") == "+330612"
    assert normalize("0612", "phone") == "612"
    assert normalize(" ABC ", "lower") == "abc"
    assert normalize(" ABC ", "none") == "ABC"


def test_identifier_text() -> None:
    assert identifier_text(12) == "12"
    assert identifier_text(12.0) == "12"
    assert identifier_text(True) is None
    assert identifier_text({"a": 1}) is None


def test_keyed_hash_is_stable_per_kind_and_secret() -> None:
    hasher = IdentityHasher(SECRET)
    one = hasher.hash("email", "a@b.c")
    assert one == hasher.hash("email", "a@b.c")
    assert one != hasher.hash("phone", "a@b.c")
    assert one != IdentityHasher(SECRET + "x").hash("email", "a@b.c")
    assert IdentityHasher.is_hashed(one)
    assert "a@b.c" not in one


def test_pii_hasher_replaces_traits_and_context_traits_and_is_idempotent() -> None:
    hasher = IdentityHasher(SECRET)
    pii = PiiHasher(IdentityConfig().kinds, hasher)
    event = {"traits": {"email": " A@B.c", "name": "A"}, "context": {"traits": {"email": "a@b.c"}}}
    pii.apply(event)
    expected = hasher.hash("email", "a@b.c")
    assert event["traits"] == {"email": expected, "name": "A"}
    assert event["context"]["traits"]["email"] == expected
    pii.apply(event)
    assert event["traits"]["email"] == expected
