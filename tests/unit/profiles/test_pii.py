import pytest

from touchpoint.profiles.pii import (
    IdentifierRefused,
    IdentityHasher,
    identifier_text,
    normalize,
    normalize_email,
    normalize_phone,
)

SECRET = "0123456789abcdef0123"


def test_normalize() -> None:
    assert normalize("  Jane.Doe@Example.COM ", "email") == "jane.doe@example.com"
    assert normalize("+33 (0)6-12", "phone") == "+33612"
    assert normalize("0612", "phone") == "612"
    assert normalize(" ABC ", "lower") == "abc"
    assert normalize(" ABC ", "none") == "ABC"


# (as written, as stored): one person however the address is written.
SAME_ADDRESS = [
    ("Jane@Example.com", "jane@example.com"),
    ("  JANE@EXAMPLE.COM\t", "jane@example.com"),
    ("Jane @Example.com", "jane@example.com"),
    ("Ren\u00e9@exemple.fr", "ren\u00e9@exemple.fr"),  # composed é
    ("Rene\u0301@exemple.fr", "ren\u00e9@exemple.fr"),  # e + combining acute: the same é
    ("\u00c9LODIE@exemple.fr", "\u00e9lodie@exemple.fr"),
    ("E\u0301lodie@exemple.fr", "\u00e9lodie@exemple.fr"),
    ("\u0391\u03b8\u03b7\u03bd\u03ac@example.gr", "\u03b1\u03b8\u03b7\u03bd\u03ac@example.gr"),
    # ß is a letter of its own (IDNA2008: straße.de and strasse.de are two domains), never
    # "ss"; the capital ẞ is its upper case. The same for the Greek final sigma ς.
    ("stra\u00dfe@example.de", "stra\u00dfe@example.de"),
    ("STRA\u1e9eE@example.de", "stra\u00dfe@example.de"),
    ("\u03bb\u03bf\u03b3\u03bf\u03c2@example.gr", "\u03bb\u03bf\u03b3\u03bf\u03c2@example.gr"),
]


@pytest.mark.parametrize(("written", "stored"), SAME_ADDRESS)
def test_an_email_is_one_address_up_to_case_and_canonical_equivalence(
    written: str, stored: str
) -> None:
    assert normalize_email(written) == stored
    assert normalize(written, "email") == stored


def test_sharp_s_is_not_folded_into_ss() -> None:
    assert normalize_email("strasse@example.de") != normalize_email("stra\u00dfe@example.de")


# Look-alikes: compatibility characters that would turn into other letters.
LOOK_ALIKES = [
    "\uff4a\uff41\uff4e\uff45@example.com",  # fullwidth jane
    "jane\uff20example.com",  # fullwidth @
    "\u212aate@example.com",  # Kelvin sign K: NFC alone makes it K
    "\u2126mega@example.com",  # Ohm sign
    "\u212bngstrom@example.com",  # Angstrom sign
    "\u017fam@example.com",  # long s (casefold alone would make it an s)
    "\ufb01nn@example.com",  # the fi ligature
    "\u00b5@example.com",  # micro sign (Greek mu after NFKC)
    "jane\u00b2@example.com",  # superscript two
    "jane@example\u2024com",  # one dot leader
]


@pytest.mark.parametrize("written", LOOK_ALIKES)
def test_an_email_with_compatibility_characters_is_refused(written: str) -> None:
    with pytest.raises(IdentifierRefused) as refused:
        normalize_email(written)
    assert "compatibility" in refused.value.reason
    assert written not in refused.value.reason  # the reason never echoes the address


PHONES = [
    ("+33 6 12 34 56 78", "+33612345678"),
    ("+33 (0)6 12 34 56 78", "+33612345678"),
    ("0033 6 12 34 56 78", "+33612345678"),
    ("+1 (415) 555-0100", "+14155550100"),
    ("+1.415.555.0100", "+14155550100"),
    ("(415) 555-0100", "4155550100"),
    ("06 12 34 56 78", "612345678"),
    ("\uff0b\uff13\uff13 \uff16 12 34 56 78", "+33612345678"),  # fullwidth
    ("\u0660\u0666\u0661\u0662", "612"),  # Arabic-Indic digits
    ("n/a", ""),
]


@pytest.mark.parametrize(("written", "stored"), PHONES)
def test_phone_numbers_keep_digits_and_the_international_plus(written: str, stored: str) -> None:
    assert normalize_phone(written) == stored


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
