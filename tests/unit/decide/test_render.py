"""Liquid rendering: what a template sees, autoescape, limits, and one error type."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from touchpoint.core.errors import DefinitionError
from touchpoint.decide.render import (
    RenderMemo,
    TemplateRenderError,
    compile_template,
    template_variables,
)

DOCUMENT = {
    "profile_id": "p1",
    "identities": {"email": ["h1:abc"], "user_id": ["u1"]},
    "traits": {"name": "Jane", "plan": "pro"},
    "features": {"views_7d": 3, "recent_products": ["p1", "p2"]},
    "segments": ["buyers"],
    "segment_memberships": {"buyers": "2026-01-01T00:00:00.000Z"},
    "consent": {"personalization": True},
    "scores": {"churn": 0.2},
    "first_seen": "2026-01-01T00:00:00.000Z",
    "last_seen": "2026-01-02T00:00:00.000Z",
    "created_at": "2026-01-01T00:00:00.000Z",
    "profile": {"id": "p1", "first_seen": None, "last_seen": None},
}


def render(source: str, document: dict | None = None, **extra: object) -> str:
    variables = template_variables(
        document if document is not None else DOCUMENT,
        context=extra.pop("context", {"page": {"path": "/shoes"}}),  # type: ignore[arg-type]
        payload=extra.pop("payload", {"headline": "Hi"}),  # type: ignore[arg-type]
        content_id="c1",
        placement="home_hero",
    )
    return compile_template(source, content_id="c1").render(variables)


def test_template_sees_the_profile_context_payload_and_names() -> None:
    source = (
        "{{ traits.name }}|{{ features.views_7d }}|{% for p in features.recent_products %}"
        "{{ p }},{% endfor %}|{{ segments | join: ',' }}|{{ scores.churn }}|"
        "{{ context.page.path }}|{{ payload.headline }}|{{ content_id }}|{{ placement }}|"
        "{{ profile.id }}"
    )
    assert render(source) == "Jane|3|p1,p2,|buyers|0.2|/shoes|Hi|c1|home_hero|p1"


def test_template_never_sees_identities_or_consent() -> None:
    variables = template_variables(
        DOCUMENT, context={}, payload=None, content_id="c1", placement="home_hero"
    )
    assert "identities" not in variables
    assert "consent" not in variables
    assert variables["payload"] == {}
    assert render("[{{ identities.email }}][{{ consent.personalization }}]") == "[][]"


def test_values_are_html_escaped_but_the_template_markup_is_not() -> None:
    document = {**DOCUMENT, "traits": {"name": "<script>alert(1)</script>"}}
    html = render("<h1>Hi {{ traits.name }}</h1>", document)
    assert html == "<h1>Hi &lt;script&gt;alert(1)&lt;/script&gt;</h1>"


def test_a_missing_value_renders_empty() -> None:
    assert render("Hi{% if traits.nickname %} {{ traits.nickname }}{% endif %}!") == "Hi!"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for i in (1..1000000) %}x{% endfor %}", "loop iteration limit"),
        ("{% for i in (1..9000) %}" + "x" * 50 + "{% endfor %}", "output stream limit"),
        ("{{ 1 | divided_by: 0 }}", "divide by 0"),
        ("{{ traits.name | no_such_filter }}", "unknown filter"),
        ('{% include "other" %}', ""),  # no file system, no other templates
    ],
)
def test_a_failing_template_raises_one_error_naming_the_content(source: str, reason: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(source)
    assert caught.value.content_id == "c1"
    assert reason in caught.value.reason
    assert caught.value.reason
    assert "\n" not in caught.value.reason


def test_an_invalid_template_is_a_definition_error_with_its_path() -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_template("{% if %}", content_id="c1", path="content[2].template")
    assert caught.value.path == "content[2].template"


def test_a_compiled_template_renders_many_times() -> None:
    template = compile_template("{{ traits.name }}", content_id="c1")
    for name in ("a", "b", "c"):
        variables = template_variables(
            {"traits": {"name": name}}, context={}, payload=None, content_id="c1", placement="p"
        )
        assert template.render(variables) == name


# -- remembered outputs ----------------------------------------------------------------------

MEMO_TEMPLATES = [
    "<p>{{ payload.headline }} on {{ placement }} ({{ content_id }})</p>",
    "Hi{% if traits.name %} {{ traits.name | escape }}{% endif %}",
    "{% for item in features.cart.items limit: 2 %}{{ item.name }},{% endfor %}"
    "{{ features.cart.items.size }} {{ features.cart.items.first.name }}",
    "{{ traits[context.key] }}|{{ features.recent[0] }}|{{ features.recent.last }}",
    "{% if segments contains 'vip' %}VIP{% else %}{{ segments | join: '+' }}{% endif %}",
    "{% assign n = traits.name | default: 'you' %}{% capture x %}{{ n }}!{% endcapture %}{{ x }}"
    "{{ context.page.path | upcase }}{{ identities.email }}{{ consent.marketing }}",
]
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, float("nan")]),
    st.text(max_size=3),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["name", "items", "path", "a", "b"]), children, max_size=3),
    ),
    max_leaves=8,
)
DOCUMENTS = st.fixed_dictionaries(
    {
        "traits": st.dictionaries(st.sampled_from(["name", "a", "b"]), JSON_VALUES, max_size=3),
        "features": st.dictionaries(
            st.sampled_from(["cart", "recent"]),
            st.one_of(JSON_VALUES, st.fixed_dictionaries({"items": JSON_VALUES})),
            max_size=2,
        ),
        "segments": st.lists(st.sampled_from(["vip", "buyers", "x"]), max_size=3),
        "identities": st.just({"email": ["h1:abc"]}),
        "consent": st.just({"marketing": True}),
    }
)
CONTEXTS = st.fixed_dictionaries(
    {"key": st.sampled_from(["name", "a", "b", "zzz"]), "page": JSON_VALUES}
)


def test_templates_know_what_they_read() -> None:
    def reads(source: str) -> object:
        return compile_template(source, content_id="c").reads

    assert reads(MEMO_TEMPLATES[0]) == ()  # constant
    assert reads(MEMO_TEMPLATES[1]) == (("traits", "name"),)
    assert reads(MEMO_TEMPLATES[2]) == (("features", "cart", "items"),)
    # A computed step takes the whole value before it.
    assert set(reads(MEMO_TEMPLATES[3])) == {  # type: ignore[arg-type]
        ("context", "key"),
        ("features", "recent", 0),
        ("features", "recent", "last"),  # resolved as far as the data goes
        ("traits",),
    }
    assert reads("{{ 'now' | date: '%Y' }}") is None  # the clock: never remembered
    assert compile_template(MEMO_TEMPLATES[0], content_id="c").constant


@settings(max_examples=400, deadline=None)
@given(
    source=st.sampled_from(MEMO_TEMPLATES),
    people=st.lists(st.tuples(DOCUMENTS, CONTEXTS), min_size=1, max_size=6),
    placement=st.sampled_from(["home_hero", "email"]),
)
def test_a_remembered_output_is_what_a_fresh_render_gives(
    source: str, people: list[tuple[dict, dict]], placement: str
) -> None:
    template = compile_template(source, content_id="c1", payload={"headline": "<Sale>"})
    for document, context in people * 2:  # the second round reads the memo
        variables = template_variables(
            document,
            context=context,
            payload=template.payload,
            content_id="c1",
            placement=placement,
        )
        try:
            expected: str | None = template.render(variables)
        except TemplateRenderError:
            expected = None
        try:
            got: str | None = template.render_for(document, context=context, placement=placement)
        except TemplateRenderError:
            got = None
        assert got == expected


def test_personalized_outputs_are_remembered_per_value() -> None:
    memo = RenderMemo(max_entries=3)
    template = compile_template("Hi {{ traits.name }}", content_id="c", memo=memo)
    for name in ("a", "b", "a"):
        assert template.render_for({"traits": {"name": name}}, context={}, placement="p") == (
            f"Hi {name}"
        )
    assert len(memo) == 2
    for name in ("c", "d"):  # full: emptied, then filled again
        template.render_for({"traits": {"name": name}}, context={}, placement="p")
    assert len(memo) == 1


def test_values_that_are_not_plain_json_are_never_remembered() -> None:
    from datetime import UTC, datetime

    from markupsafe import Markup

    memo = RenderMemo()
    template = compile_template("{{ traits.name }}", content_id="c", memo=memo)
    raw = template.render_for({"traits": {"name": Markup("<b>x</b>")}}, context={}, placement="p")
    plain = template.render_for({"traits": {"name": "<b>x</b>"}}, context={}, placement="p")
    assert raw == "<b>x</b>" and plain == "&lt;b&gt;x&lt;/b&gt;"
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    template.render_for({"traits": {"name": moment}}, context={}, placement="p")
    assert template.render_for({"traits": {"name": None}}, context={}, placement="p") == ""
    assert template.render_for({"traits": {"name": float("nan")}}, context={}, placement="p")
    assert len(memo) == 2  # the plain string and None


def test_a_remembered_failure_fails_again() -> None:
    template = compile_template("{{ 1 | divided_by: traits.n }}", content_id="c")
    for _ in range(2):
        with pytest.raises(TemplateRenderError):
            template.render_for({"traits": {"n": 0}}, context={}, placement="p")
    assert template.render_for({"traits": {"n": 1}}, context={}, placement="p") == "1"
