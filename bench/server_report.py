"""The RESULTS.md section of `bench/server.py`: each server figure beside its embedded peer
from the same run, with what limited it (CPU per process), and the memory per 10⁶ profiles."""

from __future__ import annotations

import os
from collections.abc import Callable

from bench.common import Figure, Section, milliseconds, percentile
from bench.server import Plan, Run
from bench.server_phases import Measured

_MIB = 1024 * 1024


def _size(size: int) -> str:
    exponent = len(str(size)) - 1
    if size == 10**exponent:
        return "10" + "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(digit)] for digit in str(exponent))
    return f"{size:,}"


def _latency(values: list[float]) -> str:
    return (
        f"p50 {milliseconds(percentile(values, 0.5))}, p99 {milliseconds(percentile(values, 0.99))}"
    )


def _ingest(measured: Measured) -> str:
    ingest = measured.ingest
    if ingest.lag_left:
        state = f"NOT applied: lag {ingest.lag_left:,} after {ingest.applied_seconds:.0f} s"
        return f"{state} ({ingest.acked:,}/{ingest.events:,} acked)"
    limit = ingest.overall.limit() if ingest.overall else ""
    return (
        f"**{ingest.rate:,.0f}** ({ingest.acked:,}/{ingest.events:,} events acked in "
        f"{ingest.send_seconds:.1f} s = {ingest.acked / ingest.send_seconds:,.0f}/s, all applied "
        f"at {ingest.applied_seconds:.1f} s; limit: {limit})"
    )


def _decide(measured: Measured, offered: float) -> str:
    timing, usage = measured.decide, measured.decide_usage
    alone = percentile(measured.decide_alone.latencies, 0.5)
    cpu = usage.cores.get("API", 0.0) * timing.seconds / max(1, timing.requests)
    return (
        f"**p99 {milliseconds(percentile(timing.latencies, 0.99))}** (p50 "
        f"{milliseconds(percentile(timing.latencies, 0.5))}, max "
        f"{milliseconds(max(timing.latencies, default=0.0))}; {timing.ok:,}/{timing.requests:,} "
        f"OK; limit: the API's one event loop: a decision alone takes {milliseconds(alone)} "
        f"(p50), {alone * offered:.0%} of the time at {offered:g}/s; API CPU {milliseconds(cpu)} "
        "a decision)"
    )


def _lookup(measured: Measured) -> str:
    timing = measured.lookups
    hits, misses = measured.cache.get("hit", 0.0), measured.cache.get("miss", 0.0)
    cache = (
        f"; cache hits {hits / (hits + misses):.0%} of decide + lookups" if hits + misses else ""
    )
    cpu = measured.lookup_usage.cores.get("API", 0.0) * timing.seconds / max(1, timing.requests)
    return (
        f"**p99 {milliseconds(percentile(timing.latencies, 0.99))}** (p50 "
        f"{milliseconds(percentile(timing.latencies, 0.5))}; {timing.ok:,}/{timing.requests:,} "
        f"found{cache}; API CPU {milliseconds(cpu)} a lookup)"
    )


def _freshness(measured: Measured) -> str:
    fresh = measured.freshness
    samples = fresh.samples
    timeouts = f", {fresh.timeouts} timed out" if fresh.timeouts else ""
    if fresh.unacknowledged:
        timeouts += f", {fresh.unacknowledged} probes not acknowledged"
    return (
        f"**p99 {milliseconds(percentile(samples, 0.99))}** (p50 "
        f"{milliseconds(percentile(samples, 0.5))}, max {milliseconds(max(samples, default=0.0))}; "
        f"{len(samples)} samples{timeouts}; a decide poll takes p50 "
        f"{milliseconds(percentile(fresh.polls, 0.5))})"
    )


def _pair(
    runs: dict[tuple[str, int], Run], size: int, workers: int, show: Callable[[Measured], str]
) -> tuple[str, str]:
    texts = []
    for kind in ("server", "embedded"):
        run = runs.get((kind, size))
        if run is None or workers not in run.measured:
            error = run.error if run is not None else "not run"
            texts.append(f"failed: `{error}`")
        else:
            texts.append(show(run.measured[workers]))
    return texts[0], f"embedded: {texts[1]}"


def _load(run: Run | None) -> str:
    if run is None or run.loaded is None:
        return f"failed: `{run.error if run else 'not run'}`"
    loaded = run.loaded
    return (
        f"**{loaded.rate:,.0f} profiles/s** ({loaded.profiles:,} in {loaded.seconds:.1f} s, "
        f"{loaded.transactions} transactions, {loaded.memberships:,} segment memberships)"
    )


def _stored(run: Run, scale: float, unit: str) -> str:
    """What the profiles added to each table or file, scaled."""
    grown = {
        name: size - run.stored_empty.get(name, 0) for name, size in run.stored_after_load.items()
    }
    sizes = dict(sorted(grown.items(), key=lambda item: -item[1]))
    total = sum(sizes.values()) * scale
    parts = ", ".join(
        f"{name} {size * scale / _MIB:,.0f}" for name, size in list(sizes.items())[:6] if size > 0
    )
    return f"**{total / _MIB:,.0f} MiB** ({unit}, MiB: {parts})"


def _memory_figures(runs: dict[tuple[str, int], Run], largest: int) -> list[Figure]:
    server, embedded = runs.get(("server", largest)), runs.get(("embedded", largest))
    scale = 10**6 / largest
    origin = f"measured at {_size(largest)} profiles, scaled by {scale:g}"
    figures = []
    if server is not None and server.stored_after_load:
        value = "PostgreSQL " + _stored(server, scale, "tables with indexes")
    else:
        value = f"failed: `{server.error if server else 'not run'}`"
    if embedded is not None and embedded.stored_after_load:
        compare = "embedded: SQLite " + _stored(embedded, scale, "files")
    else:
        compare = f"embedded: failed: `{embedded.error if embedded else 'not run'}`"
    figures.append(
        Figure(f"Storage per 10⁶ profiles after the bulk load ({origin})", value, compare)
    )
    if server is not None and server.redis_after is not None:
        memory = server.redis_after
        cached = memory.keys_of("cache:profile")
        cache_bytes = memory.bytes_of("cache:profile", "cache:identity")
        markers = memory.bytes_of("cache-marker:profile", "cache-marker:identity")
        log_bytes = memory.bytes_of("log")
        events = 0
        for measured in server.measured.values():
            events += measured.ingest.acked + len(measured.freshness.acks)
        per_profile = cache_bytes / cached if cached else 0.0
        value = (
            f"cache **{per_profile:,.0f} B per cached profile** (entry + its identities; "
            f"{per_profile * 10**6 / _MIB:,.0f} MiB if all 10⁶ were hot; {cached:,} cached now, "
            f"markers {markers / _MIB:,.1f} MiB); log streams {log_bytes / max(1, events):,.0f} "
            f"B per event ({log_bytes / _MIB:,.1f} MiB for {events:,}); used_memory "
            f"{(memory.used_memory - server.redis_before) / _MIB:+,.1f} MiB over the run"
        )
        families = ", ".join(
            f"{name} {keys:,} keys {size / _MIB:,.1f} MiB"
            for name, (keys, size) in memory.families.items()
        )
        figures.append(
            Figure(
                f"Redis, server mode, after the phases at {_size(largest)} profiles",
                value,
                f"embedded: no Redis. Keys by family: {families}",
            )
        )
    return figures


def _notes(plan: Plan, runs: list[Run], load_at_start: float) -> list[str]:
    notes = [
        "Server: every store on PostgreSQL 15 (fresh schema), the log on Redis Streams and the "
        "profile cache on Redis 7 (fresh prefix); embedded: SQLite files. Each runs one API "
        "process (`touchpoint serve --no-processor`) and 1, then 2, `touchpoint worker` "
        "processes on the same server and data. The client (one asyncio process, pre-encoded "
        "keep-alive HTTP/1.1), PostgreSQL and Redis share this machine's "
        f"{os.cpu_count()} cores with them.",
        f"Ingest: {plan.ingest_events:,} events a run ({plan.ingest_events // 100} bodies of 100), "
        f"{plan.clients} concurrent clients, given to random existing people; the 2-worker run "
        "follows the 1-worker run on the same data. Decide: open loop at "
        f"{plan.decide_rate:g} requests/s for {plan.decide_seconds:g} s, 3 placements over a "
        f"500-item catalog. Lookups: {plan.lookups:,}, one at a time. Freshness: "
        f"{plan.freshness_samples} samples, 50 ms apart, people who never sent a probe.",
    ]
    for run in runs:
        label = f"{run.kind} at {_size(run.size)}"
        if run.error:
            notes.append(f"{label}: FAILED: `{run.error}`.")
        for workers, measured in sorted(run.measured.items()):
            ingest = measured.ingest
            parts = [
                f"ingest sending {ingest.sending.describe() if ingest.sending else '-'}",
                f"ingest overall {ingest.overall.describe() if ingest.overall else '-'}",
                f"decide {measured.decide_usage.describe()}",
                f"lookups {measured.lookup_usage.describe()}",
            ]
            if measured.freshness.usage is not None:
                parts.append(f"freshness {measured.freshness.usage.describe()}")
            if measured.slow_redis:
                own, others = measured.slow_redis["own"], measured.slow_redis["others"]
                parts.append(
                    f"Redis SLOWLOG (commands of 10 ms or more) during the run: others' "
                    f"{others[0]} ({others[1]:,.0f} ms), ours {own[0]} ({own[1]:,.0f} ms)"
                )
            notes.append(
                f"CPU, {label}, {workers} worker(s), in cores: " + "; ".join(parts) + ". HTTP: "
                f"ingest {dict(ingest.statuses)}, decide {measured.decide.statuses}, lookups "
                f"{measured.lookups.statuses}; freshness acks {_latency(measured.freshness.acks)}."
            )
        if run.stored_after_run:
            total = sum(run.stored_after_run.values()) / _MIB
            top = ", ".join(
                f"{name} {size / _MIB:,.1f}"
                for name, size in list(run.stored_after_run.items())[:5]
            )
            notes.append(f"{label}: stored after the phases {total:,.1f} MiB ({top}).")
    notes.append(
        f"1-minute load average: {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        "the end (other work on this shared machine shows up in every figure)."
    )
    return notes


def section(plan: Plan, runs: list[Run], load_at_start: float, seconds: float) -> Section:
    """The benchmark's section: server figures, each with its embedded peer."""
    by_key = {(run.kind, run.size): run for run in runs}
    figures: list[Figure] = []
    for size in plan.sizes:
        figures.append(
            Figure(
                f"Bulk load, {_size(size)} profiles (profile store writer, "
                f"{plan.per_transaction:,} a transaction)",
                _load(by_key.get(("server", size))),
                "embedded: " + _load(by_key.get(("embedded", size))),
            )
        )
    rows: list[tuple[str, Callable[[Measured], str]]] = [
        ("Ingest, acknowledged and applied, events/s", _ingest),
        (
            f"Decide at {plan.decide_rate:g} requests/s (open loop)",
            lambda measured: _decide(measured, plan.decide_rate),
        ),
        ("Profile lookup `GET /v1/profiles/user_id/<id>`, one at a time", _lookup),
        ("Freshness: event acknowledged → decision shows it", _freshness),
    ]
    for size in plan.sizes:
        for workers in (1, 2):
            for title, show in rows:
                value, compare = _pair(by_key, size, workers, show)
                name = f"{title}, {_size(size)} profiles, {workers} worker{'s' * (workers > 1)}"
                figures.append(Figure(name, value, compare))
    figures += _memory_figures(by_key, max(plan.sizes))
    notes = _notes(plan, runs, load_at_start)
    return Section("Server mode beside embedded", tuple(figures), tuple(notes), seconds=seconds)
