"""Ingestion and profile lookups against a real `touchpoint serve`, with its floors.

Protocol (BENCHMARKS.md, "Serving and ingestion"):
1. Pre-generate request bodies from the visitor simulator (100 events a batch, unique
   messageIds) before any timing, so the client spends little CPU while measuring.
2. Start `touchpoint serve --noop-endpoint` as a subprocess on a fresh data directory:
   embedded stores, durable acknowledgements, the stream processor in-process.
3. No-op floor: the same bodies to `POST /v1/noop` from the same clients.
4. Ingest: N concurrent keep-alive clients post the bodies to `POST /v1/batch` for a fixed
   time; only 200s whose `accepted` + `duplicates` match the batch count.
5. Catch-up: poll `/healthz` until the processor's lag is 0 (with a timeout).
6. Lookups: sequential `GET /v1/profiles/anonymous_id/<id>` of random known visitors,
   taking turns with `GET /healthz` and a tiny `POST /v1/noop`, their floors.
7. For comparison, the same ingest against a second server started with
   `--no-processor`: what collection costs without the processor sharing the process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import yaml

from bench.common import (
    Figure,
    Options,
    RawConnection,
    Section,
    percentile,
    process_cpu_seconds,
    request_head,
    run_async,
)
from touchpoint.config.settings import DEFAULT_WORKSPACE
from touchpoint.core.clock import utcnow
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import simulate_visitors
from touchpoint.testing import ServerProcess

logger = logging.getLogger(__name__)

WRITE_KEY = "wk_bench_write_key_0001"
SECRET_KEY = "sk_bench_secret_key_0123456789"
HASH_SECRET = "bench-hash-secret-0123456789"
BATCH_SIZE = 100
GOAL_EVENTS_PER_SECOND = 20_000
GOAL_LOOKUP_P99_MS = 2.0


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs."""

    clients: int = 8
    ingest_seconds: float = 10.0
    noop_seconds: float = 5.0
    max_events: int = 300_000
    lookups: int = 2_000
    catch_up_timeout: float = 240.0

    @classmethod
    def for_options(cls, options: Options) -> Plan:
        if options.quick:
            return cls(ingest_seconds=3.0, noop_seconds=2.0, max_events=60_000, lookups=500)
        return cls()


@dataclass
class Bodies:
    """Pre-encoded `/v1/batch` bodies, their event counts and the visitors in each."""

    payloads: list[bytes] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    anonymous_ids: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.counts)


def prepare_bodies(max_events: int, *, seed: int = 2024) -> Bodies:
    """Simulated shoppers' events, cut into batches and serialized once, before timing."""
    catalog = build_catalog()
    start = utcnow() - timedelta(days=14)
    stream = simulate_visitors(10**9, seed=seed, catalog=catalog, start=start, days=14)
    bodies = Bodies()
    events = itertools.islice(stream, max_events)
    while batch := list(itertools.islice(events, BATCH_SIZE)):
        bodies.payloads.append(orjson.dumps({"batch": batch}))
        bodies.counts.append(len(batch))
        bodies.anonymous_ids.append(tuple({message["anonymousId"] for message in batch}))
    return bodies


@dataclass
class Phase:
    """What a timed phase saw: requests by status, events acknowledged, latencies, CPU."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    events_acked: int = 0
    mismatches: int = 0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    used: int = 0

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.seconds if self.seconds else 0.0


async def _blast(
    server: ServerProcess,
    path: str,
    bodies: Bodies,
    *,
    clients: int,
    seconds: float,
    check_acks: bool,
    cycle: bool,
) -> Phase:
    """`clients` connections post bodies in order until time is up (or bodies run out)."""
    port = server.port
    headers = {"content-type": "application/json", "authorization": _basic(WRITE_KEY)}
    heads = [request_head("POST", path, port, headers, len(body)) for body in bodies.payloads]
    connections = [await RawConnection.open(port) for _ in range(clients)]
    phase = Phase()
    cursor = itertools.count()
    total = len(bodies.payloads)

    async def client(connection: RawConnection) -> None:
        while time.perf_counter() < deadline:
            index = next(cursor)
            if index >= total and not cycle:
                return
            index %= total
            sent = time.perf_counter()
            status, reply = await connection.send(heads[index], bodies.payloads[index])
            phase.latencies.append(time.perf_counter() - sent)
            phase.statuses[status] += 1
            if status != 200 or not check_acks:
                continue
            answer = orjson.loads(reply)
            expected = bodies.counts[index]
            if answer.get("accepted", 0) + answer.get("duplicates", 0) != expected:
                phase.mismatches += 1
            phase.events_acked += int(answer.get("accepted", 0))

    server_cpu, client_cpu = process_cpu_seconds(server.pid), time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(connection) for connection in connections))
    phase.seconds = time.perf_counter() - started
    phase.server_cpu = process_cpu_seconds(server.pid) - server_cpu
    phase.client_cpu = time.process_time() - client_cpu
    phase.used = min(next(cursor), total)
    for connection in connections:
        await connection.close()
    return phase


async def _interleaved(
    server: ServerProcess, requests: dict[str, tuple[list[bytes], bytes]]
) -> dict[str, Phase]:
    """Send each kind's requests one at a time on one connection, taking turns between the
    kinds, so a figure and its floors see the same moments of a noisy machine."""
    connection = await RawConnection.open(server.port)
    phases = {name: Phase() for name in requests}
    rounds = max(len(heads) for heads, _ in requests.values())
    for warm_up in range(max(50, rounds // 10)):  # connection, caches, code paths
        for heads, body in requests.values():
            await connection.send(heads[warm_up % len(heads)], body)
    started = time.perf_counter()
    for index in range(rounds):
        for name, (heads, body) in requests.items():
            if index >= len(heads):
                continue
            sent = time.perf_counter()
            status, _ = await connection.send(heads[index], body)
            phases[name].latencies.append(time.perf_counter() - sent)
            phases[name].statuses[status] += 1
    for phase in phases.values():
        phase.seconds = time.perf_counter() - started
    await connection.close()
    return phases


def _basic(key: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def _wait_for_processor(server: ServerProcess, timeout: float) -> tuple[int, float, int]:
    """(lag when ingest ended, seconds until lag reached 0 or timeout, lag left)."""
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        started = time.perf_counter()
        first_lag = lag = int(client.get("/healthz").json()["lag"])
        while lag > 0 and time.perf_counter() - started < timeout:
            time.sleep(0.25)
            lag = int(client.get("/healthz").json()["lag"])
        return first_lag, time.perf_counter() - started, lag


def _processor_counters(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10.0).text
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("touchpoint_processor_events_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counters[outcome] = float(line.rsplit(" ", 1)[1])
    return counters


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _latency(phase: Phase) -> str:
    return (
        f"p50 {_ms(percentile(phase.latencies, 0.5))}, p99 {_ms(percentile(phase.latencies, 0.99))}"
    )


def run(options: Options) -> Section:
    """The ingestion and lookup benchmark (see the module docstring)."""
    plan = Plan.for_options(options)
    began = time.perf_counter()
    generated = time.perf_counter()
    bodies = prepare_bodies(plan.max_events)
    generated = time.perf_counter() - generated
    logger.info(
        "prepared %d bodies (%d events) in %.1f s", len(bodies.payloads), bodies.events, generated
    )
    with tempfile.TemporaryDirectory(prefix="touchpoint-bench-", dir=options.work_dir) as temp:
        server = _server(Path(temp) / "data", "--noop-endpoint")
        try:
            section = _measure(server, bodies, plan, generated)
        finally:
            server.stop()
        # The same ingest with no stream processor in the server: what collecting costs alone.
        bare = _server(Path(temp) / "bare", "--no-processor")
        try:
            logger.info("ingest without the processor: %g s", plan.ingest_seconds)
            alone = run_async(
                _blast(
                    bare,
                    "/v1/batch",
                    bodies,
                    clients=plan.clients,
                    seconds=plan.ingest_seconds,
                    check_acks=True,
                    cycle=False,
                )
            )
        finally:
            bare.stop()
    rate = alone.events_acked / alone.seconds if alone.seconds else 0.0
    figure = Figure(
        "Ingest with no processor in the server (`serve --no-processor`), events/s",
        f"{rate:,.0f} ({alone.events_acked:,} events in {alone.seconds:.1f} s; batch "
        f"{_latency(alone)}; server CPU {alone.cores(alone.server_cpu):.2f} cores)",
        "what collection alone costs; not the production setup measured above",
    )
    figures = (*section.figures[:1], figure, *section.figures[1:])
    notes = (*section.notes, f"HTTP statuses without the processor: {dict(alone.statuses)}.")
    return replace(section, figures=figures, notes=notes, seconds=time.perf_counter() - began)


def _server(data_dir: Path, *args: str) -> ServerProcess:
    env = {
        "TOUCHPOINT_WRITE_KEY": WRITE_KEY,
        "TOUCHPOINT_SECRET_KEY": SECRET_KEY,
        "TOUCHPOINT_HASH_SECRET": HASH_SECRET,
        "TOUCHPOINT_CONFIG": str(_unlimited_default_workspace(data_dir)),
    }
    return ServerProcess(data_dir, *args, env=env).start()


def _unlimited_default_workspace(data_dir: Path) -> Path:
    """The embedded default workspace with the sources' rate limits off: the benchmark
    measures what the node can take, not the limit a public write key is held to."""
    data = yaml.safe_load(DEFAULT_WORKSPACE.read_text(encoding="utf-8"))
    collect = data.setdefault("collect", {})
    collect["rate_limit"] = {"requests_per_second": None, "events_per_second": None}
    path = data_dir.parent / f"{data_dir.name}-touchpoint.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _measure(server: ServerProcess, bodies: Bodies, plan: Plan, generated: float) -> Section:
    logger.info("no-op floor: %d clients for %g s", plan.clients, plan.noop_seconds)
    noop = run_async(
        _blast(
            server,
            "/v1/noop",
            bodies,
            clients=plan.clients,
            seconds=plan.noop_seconds,
            check_acks=False,
            cycle=True,
        )
    )
    logger.info("ingest: %d clients for %g s", plan.clients, plan.ingest_seconds)
    ingest = run_async(
        _blast(
            server,
            "/v1/batch",
            bodies,
            clients=plan.clients,
            seconds=plan.ingest_seconds,
            check_acks=True,
            cycle=False,
        )
    )
    logger.info("waiting for the processor (up to %g s)", plan.catch_up_timeout)
    lag_at_end, catch_up, lag_left = _wait_for_processor(server, plan.catch_up_timeout)
    counters = _processor_counters(server)

    rng = random.Random(7)
    known = [visitor for ids in bodies.anonymous_ids[: ingest.used] for visitor in ids]
    sample = [rng.choice(known) for _ in range(plan.lookups)]
    lookup_headers = {"authorization": f"Bearer {SECRET_KEY}"}
    lookup_heads = [
        request_head("GET", f"/v1/profiles/anonymous_id/{visitor}", server.port, lookup_headers, 0)
        for visitor in sample
    ]
    health_heads = [request_head("GET", "/healthz", server.port, {}, 0)] * plan.lookups
    tiny = b'{"batch": []}'
    noop_headers = {"content-type": "application/json"}
    noop_heads = [request_head("POST", "/v1/noop", server.port, noop_headers, len(tiny))]
    logger.info("sequential lookups and floors: %d each", plan.lookups)
    sequential = run_async(
        _interleaved(
            server,
            {
                "lookup": (lookup_heads, b""),
                "healthz": (health_heads, b""),
                "noop": (noop_heads * plan.lookups, tiny),
            },
        )
    )
    lookups, health, noop_latency = (sequential[name] for name in ("lookup", "healthz", "noop"))

    ingest_rate = ingest.events_acked / ingest.seconds if ingest.seconds else 0.0
    noop_requests = noop.ok / noop.seconds if noop.seconds else 0.0
    noop_events = noop_requests * (bodies.events / max(1, len(bodies.payloads)))
    catch_up_rate = (lag_at_end - lag_left) / catch_up if catch_up and lag_at_end else 0.0
    overall_processor = ingest.events_acked / (ingest.seconds + catch_up)
    lookup_p99 = percentile(lookups.latencies, 0.99) * 1000
    met = "met" if ingest_rate >= GOAL_EVENTS_PER_SECOND else "not met"
    lookup_met = "met" if lookup_p99 <= GOAL_LOOKUP_P99_MS else "not met"
    caught = "caught up" if lag_left == 0 else f"timed out with {lag_left:,} events left"

    figures = (
        Figure(
            "Ingest, `POST /v1/batch` (durable acks), events/s",
            f"**{ingest_rate:,.0f}** ({ingest.events_acked:,} events, {ingest.ok:,} requests "
            f"in {ingest.seconds:.1f} s; batch {_latency(ingest)})",
            f"goal ≥ {GOAL_EVENTS_PER_SECOND:,} ({met}); published peers: RudderStack "
            "~2.5-3k/node, Metarank import 1-3k",
        ),
        Figure(
            "No-op endpoint, same bodies and clients (`POST /v1/noop`)",
            f"{noop_requests:,.0f} requests/s = {noop_events:,.0f} events/s-equivalent",
            f"ingest reaches {ingest_rate / noop_events:.0%} of this floor" if noop_events else "",
        ),
        Figure(
            "Stream processor catch-up after ingest",
            f"{lag_at_end:,} events behind → {caught} in {catch_up:.1f} s "
            f"({catch_up_rate:,.0f} events/s alone)",
            f"{overall_processor:,.0f} events/s over ingest + catch-up; ingest rate "
            f"{ingest_rate:,.0f}",
        ),
        Figure(
            "Profile lookup `GET /v1/profiles/anonymous_id/<id>`, sequential",
            f"**{_latency(lookups)}** ({lookups.ok:,}/{sum(lookups.statuses.values()):,} found)",
            f"goal p99 ≤ {GOAL_LOOKUP_P99_MS:g} ms ({lookup_met}); published peers: Gorse "
            "GetUser 0.28 ms, Feast (Redis) p99 1.5 ms",
        ),
        Figure(
            "Floor: `GET /healthz` (reads the log lag), taking turns with the lookups",
            _latency(health),
            "",
        ),
        Figure(
            "Floor: `POST /v1/noop` tiny body, taking turns with the lookups",
            _latency(noop_latency),
            "",
        ),
    )
    notes = (
        f"Client and server share this machine's cores. Server CPU: "
        f"{ingest.cores(ingest.server_cpu):.2f} cores during ingest, "
        f"{noop.cores(noop.server_cpu):.2f} during no-op; the client (one asyncio process, "
        f"pre-encoded keep-alive HTTP/1.1) used {ingest.cores(ingest.client_cpu):.2f} and "
        f"{noop.cores(noop.client_cpu):.2f} cores.",
        f"{plan.clients} concurrent clients, {BATCH_SIZE} events a batch "
        f"(~{sum(map(len, bodies.payloads)) / max(1, len(bodies.payloads)) / 1024:.0f} KiB), "
        f"{bodies.events:,} simulated events of returning shoppers prepared in "
        f"{generated:.1f} s before timing; ingest stops at {plan.ingest_seconds:g} s or when "
        f"the bodies run out ({ingest.used:,}/{len(bodies.payloads):,} bodies sent).",
        "The server runs as in production: `touchpoint serve` (uvicorn, one process), SQLite "
        "log with synchronous=FULL, the stream processor on a thread of the same process, so "
        "processing competes with ingestion for the GIL during the ingest phase.",
        f"HTTP statuses: ingest {dict(ingest.statuses)}, no-op {dict(noop.statuses)}, "
        f"lookups {dict(lookups.statuses)}; acknowledgement mismatches: {ingest.mismatches}. "
        f"Processor counters: {counters}.",
        "Not measured yet: figures at 10⁶ profiles (this run holds the profiles of "
        f"{len(set(known)):,} anonymous ids).",
    )
    return Section("Serving and ingestion", figures, notes)
