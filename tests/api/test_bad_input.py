"""Whatever a client sends, the answer is a JSON body with a 2xx/4xx status, never a 500."""

from __future__ import annotations

import gzip
from typing import Any
from urllib.parse import quote

import orjson
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SECRET_KEY, WRITE_KEY, basic, bearer

ALLOWED = {200, 400, 401, 403, 404, 413, 422}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "null",
            "undefined",
            "0",
            "2026-11-24T12:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-02-30",
            "1e400",
            "h1:" + "0" * 64,
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "type",
    "messageId",
    "anonymousId",
    "userId",
    "event",
    "name",
    "groupId",
    "previousId",
    "properties",
    "traits",
    "context",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "integrations",
]
TYPES = ["track", "identify", "page", "screen", "group", "alias", "bogus", 7, None]
events = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={field: values for field in FIELDS[1:]}
    | {"anonymousId": st.text(max_size=10), "event": st.text(max_size=10)},
)


def check(response: Any) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    body = response.json()
    if response.status_code != 200:
        assert body["error"]["code"] and body["error"]["message"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(st.one_of(events, values), max_size=4), sent_at=values, context=values)
def test_batches_of_anything(client: TestClient, batch: list, sent_at: Any, context: Any) -> None:
    body = {"batch": batch, "sentAt": sent_at, "context": context}
    check(client.post("/v1/batch", content=orjson.dumps(body), headers=basic(WRITE_KEY)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]), event=events
)
def test_single_events_of_anything(client: TestClient, kind: str, event: dict) -> None:
    check(client.post(f"/v1/{kind}", content=orjson.dumps(event), headers=basic(WRITE_KEY)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=64))
def test_raw_bytes_plain_and_as_gzip(client: TestClient, raw: bytes) -> None:
    check(client.post("/v1/batch", content=raw, headers=basic(WRITE_KEY)))
    headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip"}
    check(client.post("/v1/batch", content=raw, headers=headers))
    check(client.post("/v1/batch", content=gzip.compress(raw), headers=headers))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.text(max_size=12),
    value=st.text(max_size=12),
    cursor=st.one_of(st.none(), st.text(max_size=16)),
    limit=st.one_of(st.none(), st.integers(min_value=-5, max_value=5000), st.text(max_size=4)),
)
def test_reads_with_any_path_and_query(
    client: TestClient, kind: str, value: str, cursor: Any, limit: Any
) -> None:
    kind, value = quote(kind, safe=""), quote(value, safe="")
    params = {
        key: item for key, item in {"cursor": cursor, "limit": limit}.items() if item is not None
    }
    admin = bearer(SECRET_KEY)
    for path in (
        f"/v1/profiles/{kind}/{value}",
        f"/v1/profiles/{kind}/{value}/events",
        f"/v1/segments/{kind}/members",
        "/v1/rejected",
    ):
        check(client.get(path, params=params, headers=admin))


def test_a_gzip_bomb_is_refused_without_inflating_it(client: TestClient) -> None:
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 413


def test_timestamps_at_the_edges_of_the_calendar_are_refused_by_field(client: TestClient) -> None:
    for fields in (
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
        {"originalTimestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
        {"timestamp": "0001-01-01T00:00:00+05:00"},
        {"timestamp": "1800-01-01T00:00:00Z"},
    ):
        event = {"type": "track", "userId": "u", "event": "X", **fields}
        response = client.post("/v1/track", json=event, headers=basic(WRITE_KEY))
        assert response.status_code == 400, (fields, response.text)
        error = response.json()["error"]
        field = error["field"] if "field" in error else error["rejected"][0]["errors"][0]["field"]
        assert field in fields, (fields, field)
