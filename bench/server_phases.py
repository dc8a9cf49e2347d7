"""The requests and timed phases of `bench/server.py`: ingest until applied, requests one
at a time, and event-to-decision freshness (the decide open loop is bench.common's)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from bench.common import RawConnection, Timing, basic_auth, request_head
from bench.server_population import CpuMeter, Usage, person
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.engagement import decide_body, sign_message
from touchpoint.demo.simulate import simulate_visitors

WRITE_KEY = "wk_bench_server_web_0001"
SECRET_KEY = "sk_bench_server_secret_0123456789"
IDENTITY_SECRET = "bench-server-identity-secret-0123"  # the shop backend's, signs user ids
CATALOG_ITEMS = 500
BATCH_SIZE = 100
PROBE_EVENT = "Bench Probe"
PROBE_PLACEMENT = "bench_probe"
PROBE_HIT = "probe_hit"


def event_templates(count: int = 4_000) -> list[dict[str, Any]]:
    """Page views and shop events of the visitor simulator (identify and consent events left
    out: they would add identities and consent changes, not load)."""
    start = utcnow() - timedelta(days=14)
    catalog = build_catalog(CATALOG_ITEMS)
    events = simulate_visitors(10**6, seed=77, catalog=catalog, start=start, days=14)
    kept = (
        message
        for message in events
        if message["type"] in ("page", "track") and message.get("event") != "Consent Updated"
    )
    return list(itertools.islice(kept, count))


def ingest_requests(
    port: int, size: int, events: int, templates: list[dict[str, Any]], rng: random.Random
) -> list[tuple[bytes, bytes, int]]:
    """(head, body, events) of `/v1/batch` requests: `events` events of random people, with
    fresh message ids and timestamps a millisecond apart that end before now."""
    headers = {"content-type": "application/json", "authorization": basic_auth(WRITE_KEY)}
    base = utcnow() - timedelta(minutes=2)
    requests = []
    for first in range(0, events, BATCH_SIZE):
        batch = []
        for number in range(first, min(events, first + BATCH_SIZE)):
            user_id, anonymous_id = person(rng.randrange(size))
            message = dict(templates[number % len(templates)])
            message["messageId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            message["anonymousId"], message["userId"] = anonymous_id, user_id
            message["timestamp"] = isoformat(base + timedelta(milliseconds=number))
            batch.append(sign_message(message, IDENTITY_SECRET))
        body = orjson.dumps({"batch": batch})
        head = request_head("POST", "/v1/batch", port, headers, len(body))
        requests.append((head, body, len(batch)))
    return requests


def decide_requests(
    port: int, people: list[int], placements: tuple[str, ...]
) -> list[tuple[bytes, bytes]]:
    """`POST /v1/decide` for each person (by user id), with the web source's write key."""
    headers = {"content-type": "application/json", "authorization": basic_auth(WRITE_KEY)}
    requests = []
    for index in people:
        user_id = person(index)[0]
        body = orjson.dumps(decide_body("user_id", user_id, placements, secret=IDENTITY_SECRET))
        requests.append((request_head("POST", "/v1/decide", port, headers, len(body)), body))
    return requests


def lookup_requests(port: int, people: list[int]) -> list[tuple[bytes, bytes]]:
    """`GET /v1/profiles/user_id/<id>` for each person, with the secret key."""
    headers = {"authorization": f"Bearer {SECRET_KEY}"}
    return [
        (request_head("GET", f"/v1/profiles/user_id/{person(index)[0]}", port, headers, 0), b"")
        for index in people
    ]


@dataclass
class Ingest:
    """Events sent, acknowledged and applied."""

    events: int = 0
    acked: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    send_seconds: float = 0.0
    applied_seconds: float = 0.0
    lag_left: int = 0
    sending: Usage | None = None
    overall: Usage | None = None

    @property
    def rate(self) -> float:
        return (
            self.acked / self.applied_seconds if self.applied_seconds and not self.lag_left else 0
        )


async def run_ingest(
    port: int,
    requests: list[tuple[bytes, bytes, int]],
    meter: CpuMeter,
    *,
    clients: int,
    catch_up_timeout: float,
) -> Ingest:
    """`clients` connections post the bodies in order; then `/healthz` is polled every 20 ms
    until the lag is 0 (or `catch_up_timeout` has passed since the first send)."""
    connections = [await RawConnection.open(port) for _ in range(clients)]
    health = await RawConnection.open(port)
    health_head = request_head("GET", "/healthz", port, {}, 0)
    result = Ingest(events=sum(count for _, _, count in requests))
    cursor = itertools.count()
    clock = time.perf_counter

    async def client(connection: RawConnection) -> None:
        while (index := next(cursor)) < len(requests):
            head, body, _ = requests[index]
            for _attempt in range(10):  # a 503 (a store said "retry later") is retried
                status, reply = await connection.send(head, body)
                result.statuses[status] += 1
                if status != 503:
                    break
                await asyncio.sleep(0.2)
            if status == 200:
                answer = orjson.loads(reply)
                result.acked += int(answer.get("accepted", 0)) + int(answer.get("duplicates", 0))

    meter.start()
    started = clock()
    await asyncio.gather(*(client(connection) for connection in connections))
    result.send_seconds = clock() - started
    result.sending = meter.stop()
    while True:
        status, reply = await health.send(health_head)
        result.lag_left = int(orjson.loads(reply)["lag"]) if status == 200 else -1
        if result.lag_left == 0 or clock() - started > catch_up_timeout:
            break
        await asyncio.sleep(0.02)
    result.applied_seconds = clock() - started
    result.overall = meter.stop()
    for connection in (*connections, health):
        await connection.close()
    return result


async def one_by_one(port: int, requests: list[tuple[bytes, bytes]]) -> Timing:
    """Requests sent one at a time on one connection: service times with no queueing."""
    connection = await RawConnection.open(port)
    timing = Timing()
    started = time.perf_counter()
    for head, body in requests:
        sent = time.perf_counter()
        status, _ = await connection.send(head, body)
        timing.latencies.append(time.perf_counter() - sent)
        timing.count(status)
    timing.seconds = time.perf_counter() - started
    await connection.close()
    return timing


@dataclass
class Freshness:
    """Event acknowledged → first decision showing it, per sample."""

    samples: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    timeouts: int = 0
    unacknowledged: int = 0
    usage: Usage | None = None


async def run_freshness(
    port: int, people: list[int], meter: CpuMeter, *, timeout: float
) -> Freshness:
    """Per person: a probe event, then decide back to back until the decision shows it."""
    connection = await RawConnection.open(port)
    result = Freshness()
    clock = time.perf_counter
    headers = {"content-type": "application/json", "authorization": basic_auth(WRITE_KEY)}
    meter.start()
    for index in people:
        user_id, anonymous_id = person(index)
        event = {
            "type": "track",
            "event": PROBE_EVENT,
            "userId": user_id,
            "anonymousId": anonymous_id,
            "messageId": uuid.uuid4().hex,
            "timestamp": isoformat(utcnow()),
            "properties": {"sample": index},
        }
        body = orjson.dumps({"batch": [sign_message(event, IDENTITY_SECRET)]})
        decide = orjson.dumps(
            decide_body("user_id", user_id, (PROBE_PLACEMENT,), secret=IDENTITY_SECRET)
        )
        decide_head = request_head("POST", "/v1/decide", port, headers, len(decide))
        sent = clock()
        status, _ = await connection.send(
            request_head("POST", "/v1/batch", port, headers, len(body)), body
        )
        acked = clock()
        result.acks.append(acked - sent)
        if status != 200:
            result.unacknowledged += 1
        while status == 200:
            polled = clock()
            answer_status, reply = await connection.send(decide_head, decide)
            now = clock()
            result.polls.append(now - polled)
            if answer_status == 200:
                shown = orjson.loads(reply)["placements"][PROBE_PLACEMENT]["content_id"]
                if shown == PROBE_HIT:
                    result.samples.append(now - acked)
                    break
            if now - acked > timeout:
                result.timeouts += 1
                break
        await asyncio.sleep(0.05)  # the workers go idle between samples, as between visits
    result.usage = meter.stop()
    await connection.close()
    return result


@dataclass
class Measured:
    """Everything one (backend, size, workers) run measured."""

    ingest: Ingest
    decide: Timing
    decide_usage: Usage
    decide_alone: Timing
    lookups: Timing
    lookup_usage: Usage
    freshness: Freshness
    cache: dict[str, float]
    slow_redis: dict[str, tuple[int, float]] = field(default_factory=dict)


def cache_counters(port: int) -> dict[str, float]:
    """The API process's profile cache counters (`hit`, `miss`, `error`) from /metrics."""
    import httpx

    counters: dict[str, float] = {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("touchpoint_profile_cache_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counters[result] = float(line.rsplit(" ", 1)[1])
    return counters
