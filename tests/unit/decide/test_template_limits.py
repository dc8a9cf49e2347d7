"""A template cannot build a huge string or list on the way to its output: every filter's
result (and, for the filters that multiply, the result before it is built) is bounded, and
a template over a bound fails with a reason, which the engine turns into the fallback."""

from __future__ import annotations

import tracemalloc

import pytest

from touchpoint.decide.render import TemplateRenderError, compile_template

TEN = "'xxxxxxxxxx'"


def _replaced(start: str, times: int) -> str:
    """`start`, then each `x` replaced by ten `x` `times` over: 10**times characters from a
    template a few hundred bytes long."""
    return start + "".join(f" | replace: 'x', {TEN}" for _ in range(times)) + " | size }}"


HUNDRED_MILLION = _replaced("{{ " + TEN, 7)


@pytest.mark.parametrize(
    "source",
    [
        HUNDRED_MILLION,
        # one replace whose result would be 100 million characters, from two bounded inputs
        "{% assign s = 'x' %}{% for i in (1..14) %}{% assign s = s | append: s %}{% endfor %}"
        "{{ s | replace: 'x', s | size }}",
        # a list doubled until it is huge, then joined
        "{% assign a = 'x,x' | split: ',' %}{% for i in (1..40) %}{% assign a = a | concat: a %}"
        "{% endfor %}{{ a | join: '-' | size }}",
        "{% assign s = 'x' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}"
        "{{ s | size }}",
        _replaced("{{ 'abc' | split: '' | join: " + TEN, 5),
    ],
)
def test_huge_intermediate_results_fail_fast_with_a_reason(source: str) -> None:
    template = compile_template(source, content_id="big")
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError) as raised:
            template.render({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"the render built {peak:,} bytes before it was stopped"
    assert raised.value.content_id == "big"
    assert "limit" in raised.value.reason


def test_ordinary_filter_chains_still_render() -> None:
    source = (
        "{{ 'a,b,c' | split: ',' | join: '-' | upcase | replace: 'B', 'bee' | append: '!' }}"
        "{{ traits.name | default: 'friend' | capitalize }}"
    )
    template = compile_template(source, content_id="fine")
    assert template.render({"traits": {"name": "ann"}}) == "A-bee-C!Ann"
