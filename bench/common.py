"""What every benchmark shares: results, the machine, a server process, a lean HTTP client.

The HTTP client here is a few lines of asyncio over keep-alive HTTP/1.1 with
pre-encoded requests, not httpx: the client runs on the same two cores as the
server, so every cycle it spends is taken from the server being measured.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import math
import os
import platform
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Figure:
    """One measured figure and what it is compared with (peer, limit or goal)."""

    name: str
    value: str
    compare: str = ""


@dataclass(frozen=True)
class Section:
    """A benchmark's figures, with notes on protocol and caveats, for RESULTS.md."""

    title: str
    figures: tuple[Figure, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Options:
    """Knobs `python -m bench.run` passes to every benchmark."""

    quick: bool = False
    work_dir: Path | None = None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def machine_description() -> dict[str, str]:
    """CPU model, cores, memory, OS, Python and the date: what a figure needs beside it."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": model,
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "unknown",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of unsorted values; 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
    return ordered[rank - 1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc), 0 if unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def request_head(method: str, path: str, port: int, headers: dict[str, str], length: int) -> bytes:
    """The bytes of an HTTP/1.1 request line and headers for a body of `length` bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawConnection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer)

    async def send(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; the response status and body."""
        self.writer.write(head)
        if body:
            self.writer.write(body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        header_lines = raw.decode("latin-1").split("\r\n")
        status = int(header_lines[0].split(" ", 2)[1])
        length = None
        chunked = False
        for line in header_lines[1:]:
            name, _, value = line.partition(":")
            lowered = name.strip().lower()
            if lowered == "content-length":
                length = int(value)
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            return status, await self._chunked()
        return status, await self.reader.readexactly(length or 0)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is, with uvicorn[standard]), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh (uv)loop and close it."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def basic_auth(key: str) -> str:
    """The `Authorization` value of HTTP Basic with `key` as the user name (Segment's way)."""
    import base64

    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@dataclass
class Timing:
    """What one timed phase of requests saw: statuses, latencies (seconds), CPU used."""

    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    extra_connections: int = 0
    delays: list[float] = field(default_factory=list)
    from_sent: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.seconds if self.seconds else 0.0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def closed_loop(
    port: int,
    server_pid: int,
    requests: Sequence[tuple[bytes, bytes]],
    *,
    clients: int,
    seconds: float,
) -> Timing:
    """Maximum throughput: `clients` keep-alive connections each send (head, body) pairs
    back to back, cycling through `requests`, until `seconds` have passed."""
    connections = [await RawConnection.open(port) for _ in range(clients)]
    timing = Timing()
    cursor = iter(range(1 << 62))
    total = len(requests)
    clock = time.perf_counter  # the loop's own clock may tick in whole milliseconds (uvloop)
    deadline = 0.0

    async def client(connection: RawConnection) -> None:
        while clock() < deadline:
            head, body = requests[next(cursor) % total]
            sent = clock()
            try:
                status, _ = await connection.send(head, body)
            except (OSError, asyncio.IncompleteReadError):
                timing.count(0)
                return
            timing.latencies.append(clock() - sent)
            timing.count(status)

    server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
    started = clock()
    deadline = started + seconds
    await asyncio.gather(*(client(connection) for connection in connections))
    timing.seconds = clock() - started
    timing.server_cpu = process_cpu_seconds(server_pid) - server_cpu
    timing.client_cpu = time.process_time() - client_cpu
    for connection in connections:
        await connection.close()
    return timing


async def open_loop(
    port: int,
    server_pid: int,
    requests: Sequence[tuple[bytes, bytes]],
    *,
    rate: float,
    seconds: float,
    connections: int = 32,
) -> Timing:
    """Latency at a fixed offered rate: request i is due at start + i / rate whatever the
    answers to earlier ones, sent on an idle keep-alive connection (a new one is opened if
    none is idle, and counted). Latency runs from when a request was due, not when it
    went out, so a stall of the server or the client counts in full (no coordinated
    omission). `delays` keeps how late each request went out (the client's share of that),
    `from_sent` the latency from when it went out."""
    # First in, first out: every connection stays warm, none idles into the server's
    # keep-alive timeout (uvicorn closes a connection idle for 5 s).
    idle = collections.deque([await RawConnection.open(port) for _ in range(connections)])
    opened: list[RawConnection] = list(idle)
    timing = Timing()
    total = max(1, int(rate * seconds))
    clock = time.perf_counter  # the loop's own clock may tick in whole milliseconds (uvloop)

    async def fresh() -> RawConnection:
        connection = await RawConnection.open(port)
        opened.append(connection)
        timing.extra_connections += 1
        return connection

    async def one(index: int, due: float) -> None:
        connection = idle.popleft() if idle else await fresh()
        head, body = requests[index % len(requests)]
        sent = clock()
        timing.delays.append(sent - due)
        try:
            status, _ = await connection.send(head, body)
        except (OSError, asyncio.IncompleteReadError):
            # A connection the server closed: once more on a new one (the time counts).
            try:
                connection = await fresh()
                status, _ = await connection.send(head, body)
            except (OSError, asyncio.IncompleteReadError):
                timing.count(0)
                return
        done = clock()
        timing.latencies.append(done - due)
        timing.from_sent.append(done - sent)
        timing.count(status)
        idle.append(connection)

    server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
    collecting = gc.isenabled()
    gc.disable()  # a collection in the client would stall the schedule, not the server
    started = clock() + 0.01
    tasks = []
    for index in range(total):
        due = started + index / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(index, due)))
    await asyncio.gather(*tasks)
    timing.seconds = clock() - started
    if collecting:
        gc.enable()
    timing.server_cpu = process_cpu_seconds(server_pid) - server_cpu
    timing.client_cpu = time.process_time() - client_cpu
    for connection in opened:
        await connection.close()
    return timing


def milliseconds(seconds: float) -> str:
    """`1.23 ms`."""
    return f"{seconds * 1000:.2f} ms"
