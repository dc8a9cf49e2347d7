"""`touchpoint demo`: a real server, simulated shoppers through the real API, a tour.

The demo starts the embedded workspace (no configuration) with uvicorn in a
background thread, sends a few hundred simulated visitors' events through
`POST /v1/batch`, waits until the stream processor has caught up, then shows
what came out: profiles (with `curl` lines to fetch them), segment sizes and
metrics. It keeps serving until Ctrl-C, or returns at once for tests.

`send_events` is the demo's client: it posts messages to `/v1/batch` as an SDK does.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
import webbrowser
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import TouchpointError
from touchpoint.core.settings import Settings, load_settings
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import Journey, simulate_journeys

logger = logging.getLogger(__name__)

DEMO_DAYS = 14
HOST = "127.0.0.1"
_METRIC_PREFIXES = (
    "touchpoint_events_accepted_total",
    "touchpoint_events_flagged_total",
    "touchpoint_events_deduplicated_total",
    "touchpoint_processor_events_total",
    "touchpoint_profile_merges_total",
    "touchpoint_segment_changes_total",
)


class DemoError(TouchpointError):
    """The demo could not start its server or the processor never caught up."""

    code = "demo_failed"
    status = 500


@dataclass(frozen=True)
class SendStats:
    """What `send_events` achieved: counts from the server's replies, and the time it took."""

    batches: int
    events: int
    accepted: int
    duplicates: int
    rejected: int
    failed_batches: int
    retries: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Events acknowledged (accepted or known duplicates) per second of sending."""
        return (self.accepted + self.duplicates) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class DemoSummary:
    """What one demo run did: where it served, what it sent, what the workspace holds."""

    base_url: str
    sent: SendStats
    caught_up_seconds: float
    segment_sizes: dict[str, int]
    example_profiles: tuple[str, ...] = ()


class _Tally:
    """Counters shared by the sending threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)


def _post_batch(
    client: httpx.Client, batch: list[dict[str, Any]], tally: _Tally, retries: int, backoff: float
) -> None:
    body = {"batch": batch, "sentAt": isoformat(utcnow())}
    for attempt in range(retries + 1):
        if attempt:
            tally.add(retries=1)
            time.sleep(min(backoff * 2 ** (attempt - 1), 5.0))
        try:
            response = client.post("/v1/batch", json=body)
        except httpx.HTTPError as error:
            logger.warning("sending a batch failed: %s", type(error).__name__)
            continue
        if response.status_code >= 500 or response.status_code == 429:
            continue
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        reply: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if response.status_code >= 400 and "accepted" not in reply:
            logger.warning("a batch was refused with HTTP %s", response.status_code)
            break
        tally.add(
            batches=1,
            events=len(batch),
            accepted=int(reply.get("accepted", 0)),
            duplicates=int(reply.get("duplicates", 0)),
            rejected=len(reply.get("rejected") or ()),
        )
        return
    tally.add(batches=1, events=len(batch), failed_batches=1)


def send_events(
    base_url: str,
    write_key: str,
    messages: Iterable[dict[str, Any]],
    *,
    batch_size: int = 100,
    concurrency: int = 4,
    retries: int = 3,
    backoff: float = 0.2,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> SendStats:
    """Post `messages` to `{base_url}/v1/batch` in batches, from `concurrency` threads.

    The write key goes as the HTTP Basic user name, as Segment's SDKs send it. A 5xx,
    a 429 or a connection error is retried `retries` times, waiting `backoff` seconds and
    doubling each time; a batch still failing after that is counted in `failed_batches`,
    never raised.
    `messages` may be a lazy iterator: batches are cut from it as threads need them.
    """
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    source = iter(messages)
    source_lock = threading.Lock()
    tally = _Tally()

    def next_batch() -> list[dict[str, Any]]:
        with source_lock:
            return list(itertools.islice(source, batch_size))

    def work() -> None:
        with httpx.Client(
            base_url=base_url, auth=(write_key, ""), timeout=timeout, transport=transport
        ) as client:
            while batch := next_batch():
                _post_batch(client, batch, tally, retries, backoff)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = tally.counts
    return SendStats(
        batches=counts["batches"],
        events=counts["events"],
        accepted=counts["accepted"],
        duplicates=counts["duplicates"],
        rejected=counts["rejected"],
        failed_batches=counts["failed_batches"],
        retries=counts["retries"],
        seconds=time.perf_counter() - started,
    )


class BackgroundServer:
    """A uvicorn server on its own thread, started and stopped by the caller."""

    def __init__(self, settings: Settings, *, host: str, port: int) -> None:
        import uvicorn

        from touchpoint.api.app import create_app

        config = uvicorn.Config(
            create_app(settings), host=host, port=port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.base_url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.run, name="demo-server", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start serving and return once `/healthz` answers; DemoError if it never does."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise DemoError(f"the server stopped while starting (is {self.base_url} in use?)")
            if self.server.started:
                try:
                    if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise DemoError(f"the server did not answer {self.base_url}/healthz in {timeout:.0f} s")

    def stop(self) -> None:
        """Ask uvicorn to shut down (lifespan closes the workspace) and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C or SIGTERM stops it cleanly."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: setattr(self.server, "should_exit", True))
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()


def wait_for_processor(base_url: str, *, timeout: float = 120.0) -> float:
    """Poll `/healthz` until the processor's lag is 0; the seconds it took. DemoError if never."""
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() - started < timeout:
            health = client.get("/healthz").json()
            if health.get("lag") == 0:
                return time.monotonic() - started
            if health.get("processor") == "stopped":
                raise DemoError("the stream processor is not running")
            time.sleep(0.1)
    raise DemoError(f"the processor had not caught up after {timeout:.0f} s")


def _examples(journeys: list[Journey]) -> list[tuple[str, str, str]]:
    """(kind, value, why) of a few profiles worth looking at."""
    found: list[tuple[str, str, str]] = []
    two_devices = next((j for j in journeys if len(j.visitor.anonymous_ids) > 1), None)
    if two_devices is not None and two_devices.visitor.user_id is not None:
        found.append(("user_id", two_devices.visitor.user_id, "signed in on two devices"))
        found.append(
            ("anonymous_id", two_devices.visitor.anonymous_ids[1], "the same person's 2nd device")
        )
    buyer = next(
        (
            j
            for j in journeys
            if j.visitor.user_id is None
            and any(m.get("event") == "Order Completed" for m in j.messages)
        ),
        None,
    )
    if buyer is not None:
        found.append(("anonymous_id", buyer.visitor.anonymous_ids[0], "an anonymous buyer"))
    signed_in = next((j for j in journeys if j.visitor.user_id and j is not two_devices), None)
    if signed_in is not None:
        for message in signed_in.messages:
            if message["type"] == "identify":
                found.append(("email", message["traits"]["email"], "looked up by email"))
                break
    return found


def _show_profiles(
    console: Console, client: httpx.Client, settings: Settings, journeys: list[Journey]
) -> list[str]:
    console.print("[bold]Example profiles[/bold] (GET /v1/profiles/<kind>/<value>)")
    urls: list[str] = []
    for kind, value, why in _examples(journeys):
        path = f"/v1/profiles/{kind}/{value}"
        url = f"{client.base_url}{path}"
        urls.append(url)
        response = client.get(path)
        console.print(f"  [cyan]{why}[/cyan]: {kind} {value}")
        if response.status_code != 200:
            console.print(f"    HTTP {response.status_code}: {response.text[:200]}")
            continue
        profile: dict[str, Any] = response.json()
        identities = profile.get("identities") or {}
        features = profile.get("features") or {}
        cart = features.get("cart")
        in_cart = cart.get("count", 0) if isinstance(cart, dict) else 0
        held = ", ".join(f"{name} x{len(values)}" for name, values in identities.items())
        console.print(
            f"    identities: {held}; segments: {', '.join(profile.get('segments') or []) or '-'}; "
            f"orders: {features.get('orders', 0)}; items in cart: {in_cart}",
        )
        console.print(
            f"    curl -H 'authorization: Bearer {settings.secret_key}' {url}",
            soft_wrap=True,
            highlight=False,
        )
    return urls


def _show_segments(console: Console, client: httpx.Client) -> dict[str, int]:
    listed = client.get("/v1/segments").json().get("segments", [])
    sizes = {item["name"]: int(item["size"]) for item in listed}
    table = Table(title="Segments (GET /v1/segments)")
    table.add_column("segment")
    table.add_column("size", justify="right")
    table.add_column("condition")
    for item in listed:
        table.add_row(item["name"], str(item["size"]), str(item["condition"]))
    console.print(table)
    return sizes


def _show_metrics(console: Console, client: httpx.Client) -> None:
    text = client.get("/metrics").text
    console.print("[bold]Metrics[/bold] (GET /metrics, excerpt)")
    for line in text.splitlines():
        if line.startswith(_METRIC_PREFIXES):
            console.print(f"  {line}")


def demo_settings(data_dir: Path) -> Settings:
    """The embedded default workspace in `data_dir`, whatever TOUCHPOINT_CONFIG says."""
    environ = {key: value for key, value in os.environ.items() if key != "TOUCHPOINT_CONFIG"}
    return load_settings(None, data_dir, environ=environ)


def run_demo(
    *,
    port: int,
    data_dir: Path,
    visitors: int = 300,
    open_browser: bool = True,
    serve_forever: bool = True,
    seed: int = 42,
    console: Console | None = None,
) -> DemoSummary:
    """Serve the default workspace, load simulated shoppers through HTTP, show the result.

    With `serve_forever` (what `touchpoint demo` does) it then serves until Ctrl-C;
    without, it stops the server and returns, which is how tests run it end to end.
    """
    console = console or Console()
    settings = demo_settings(data_dir)
    server = BackgroundServer(settings, host=HOST, port=port)
    server.start()
    try:
        base_url = server.base_url
        write_key = settings.config.sources[0].write_key
        console.print(f"[bold]Touchpoint demo[/bold] serving {base_url}, data in {data_dir}")
        console.print(f"  write key: [green]{write_key}[/green]", soft_wrap=True)
        console.print(f"  secret key: [yellow]{settings.secret_key}[/yellow]", soft_wrap=True)
        catalog = build_catalog()
        start = utcnow() - timedelta(days=DEMO_DAYS)
        journeys = list(
            simulate_journeys(visitors, seed=seed, catalog=catalog, start=start, days=DEMO_DAYS)
        )
        messages = [message for journey in journeys for message in journey.messages]
        console.print(
            f"Sending {len(messages):,} events of {visitors} simulated visitors "
            f"({len(catalog)} products) to POST /v1/batch ..."
        )
        sent = send_events(base_url, write_key, messages)
        console.print(
            f"  accepted [green]{sent.accepted:,}[/green], duplicates {sent.duplicates:,}, "
            f"rejected {sent.rejected:,}, failed batches {sent.failed_batches} "
            f"in {sent.seconds:.1f} s ({sent.events_per_second:,.0f} events/s)"
        )
        if sent.duplicates and not sent.accepted:
            console.print("  (these events were already loaded in this data directory)")
        caught_up = wait_for_processor(base_url)
        console.print(f"The stream processor caught up {caught_up:.1f} s after the last batch.")
        headers = {"authorization": f"Bearer {settings.secret_key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
            urls = _show_profiles(console, client, settings, journeys)
            sizes = _show_segments(console, client)
            _show_metrics(console, client)
        summary = DemoSummary(base_url, sent, caught_up, sizes, tuple(urls))
        if serve_forever:
            console.print(f"Serving at {base_url} (API docs at {base_url}/docs); Ctrl-C stops.")
            if open_browser:
                webbrowser.open(f"{base_url}/docs")
            server.wait()
        return summary
    finally:
        server.stop()
