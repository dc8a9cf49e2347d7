"""`touchpoint demo`: a retail workspace, simulated shoppers through the real API, a tour.

The demo writes its retail workspace (`demo.workspace`) to `<data_dir>/touchpoint.yaml`,
starts it with uvicorn in a background thread (the storefront page at `/demo`
included), sends a few thousand simulated visitors' events through
`POST /v1/batch`, waits until the stream processor has caught up, lets a sample
of visitors react to the decisions they get (`demo.engagement`), then prints
where to look (`demo.tour`): the storefront URL, a `curl` that gets a decision,
what example visitors are shown and why, the placement reports. It keeps
serving until Ctrl-C, or returns at once for tests.

`send_events` is the demo's client: it posts messages to `/v1/batch` as an SDK does.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import threading
import time
import webbrowser
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from touchpoint.config.settings import Settings, load_settings
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.content import DEMO_PLACEMENTS
from touchpoint.demo.engagement import Engagement, engage, signed
from touchpoint.demo.models import show_models, train_demo_models
from touchpoint.demo.server import BackgroundServer, wait_for_processor
from touchpoint.demo.showcase import identity_of, pick_showcase, showcase_document, write_showcase
from touchpoint.demo.simulate import simulate_journeys
from touchpoint.demo.tour import (
    ExampleDecision,
    ask_decisions,
    example_visitors,
    show_decisions,
    show_metrics,
    show_profiles,
    show_segments,
    show_where_to_look,
)
from touchpoint.demo.workspace import demo_workspace, existing_write_key, write_workspace

logger = logging.getLogger(__name__)

DEMO_DAYS = 14
DEFAULT_VISITORS = 2_500
ENGAGED_VISITORS = 400
HOST = "127.0.0.1"
CONFIG_FILE = "touchpoint.yaml"


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


@dataclass(frozen=True)
class DemoSummary:
    """What one demo run did: where it served, what it sent, what the workspace holds."""

    base_url: str
    sent: SendStats
    caught_up_seconds: float
    segment_sizes: dict[str, int]
    example_profiles: tuple[str, ...] = ()
    storefront_url: str = ""
    config_path: Path | None = None
    examples: tuple[ExampleDecision, ...] = ()
    engagement: Engagement = field(default_factory=Engagement)


def demo_settings(data_dir: Path, config_path: Path) -> Settings:
    """The demo workspace file in `data_dir`, whatever
    TOUCHPOINT_CONFIG says (keys it lacks are generated once in `data_dir`)."""
    environ = {key: value for key, value in os.environ.items() if key != "TOUCHPOINT_CONFIG"}
    return load_settings(config_path, data_dir, environ=environ)


def _print_sent(console: Console, what: str, sent: SendStats) -> None:
    console.print(
        f"  {what}: accepted [green]{sent.accepted:,}[/green], duplicates {sent.duplicates:,}, "
        f"rejected {sent.rejected:,}, failed batches {sent.failed_batches} "
        f"in {sent.seconds:.1f} s ({sent.events_per_second:,.0f} events/s)"
    )


def run_demo(
    *,
    port: int,
    data_dir: Path,
    visitors: int = DEFAULT_VISITORS,
    open_browser: bool = True,
    serve_forever: bool = True,
    seed: int = 42,
    engaged_visitors: int = ENGAGED_VISITORS,
    console: Console | None = None,
) -> DemoSummary:
    """Write the retail workspace, serve it, load simulated shoppers through HTTP, let some
    react to their decisions, and show where to look.

    With `serve_forever` (what `touchpoint demo` does) it then serves until Ctrl-C;
    without, it stops the server and returns, which is how tests run it end to end.
    """
    console = console or Console()
    catalog = build_catalog()
    config_path = data_dir / CONFIG_FILE
    write_key = existing_write_key(config_path) or "wk_demo_" + secrets.token_urlsafe(12)
    workspace = demo_workspace(catalog, write_key=write_key)
    write_workspace(config_path, workspace)
    settings = demo_settings(data_dir, config_path)
    write_key = settings.config.sources[0].write_key  # TOUCHPOINT_WRITE_KEY may override it
    # The shop's backend signs its signed-in visitors' user ids (generated secret, kept in
    # workspace-keys.json): the source lets pages decide, so it verifies identities.
    identity_secret = settings.config.sources[0].identity_verification.secret
    now = utcnow()
    start = now - timedelta(days=DEMO_DAYS)
    journeys = list(
        simulate_journeys(visitors, seed=seed, catalog=catalog, start=start, days=DEMO_DAYS)
    )
    showcase = pick_showcase(journeys, now)
    document = showcase_document(
        showcase,
        catalog,
        workspace=settings.config.workspace,
        placements=DEMO_PLACEMENTS,
        generated_at=now,
        content=workspace["content"],
    )
    write_showcase(data_dir, document)
    server = BackgroundServer(settings, host=HOST, port=port)
    server.start()
    try:
        base_url = server.base_url
        console.print(f"[bold]Touchpoint demo[/bold] serving {base_url}, data in {data_dir}")
        console.print(f"  workspace: {config_path}", highlight=False)
        console.print(f"  write key: [green]{write_key}[/green]", soft_wrap=True)
        console.print(f"  secret key: [yellow]{settings.secret_key}[/yellow]", soft_wrap=True)
        messages = [message for journey in journeys for message in journey.messages]
        console.print(
            f"Sending {len(messages):,} events of {visitors:,} simulated visitors "
            f"({len(catalog)} products in {len(catalog.categories)} categories) "
            "to POST /v1/batch ..."
        )
        sent = send_events(base_url, write_key, signed(messages, identity_secret))
        _print_sent(console, "history", sent)
        if sent.duplicates and not sent.accepted:
            console.print("  (these events were already loaded in this data directory)")
        caught_up = wait_for_processor(base_url)
        console.print(f"The stream processor caught up {caught_up:.1f} s after the last batch.")
        console.print("Training models on the warehouse (touchpoint train) ...")
        show_models(console, train_demo_models(server.workspace, catalog))
        shown = {visitor.value for visitor in showcase}
        others = [identity_of(j) for j in journeys if identity_of(j)[1] not in shown]
        rng = random.Random(seed)  # noqa: S311 (simulation, not secrets)
        sample = rng.sample(others, min(engaged_visitors, len(others)))
        with httpx.Client(base_url=base_url, auth=(write_key, ""), timeout=10.0) as client:
            console.print(
                f"{len(sample):,} visitors ask POST /v1/decide for their page and react "
                "(views, clicks, conversions) ..."
            )
            engaged = engage(client, sample, DEMO_PLACEMENTS, seed=seed, secret=identity_secret)
            if engaged.messages:
                _print_sent(
                    console, "reactions", send_events(base_url, write_key, engaged.messages)
                )
                wait_for_processor(base_url)
            if engaged.failures:
                console.print(
                    f"  [red]{engaged.failures} decisions failed[/red]: "
                    f"{escape(str(engaged.first_failure))}",
                    highlight=False,
                )
            examples = ask_decisions(
                client, example_visitors(showcase), DEMO_PLACEMENTS, secret=identity_secret
            )
        show_decisions(console, examples, DEMO_PLACEMENTS)
        headers = {"authorization": f"Bearer {settings.secret_key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
            urls = show_profiles(console, client, settings.secret_key, journeys)
            sizes = show_segments(console, client)
            show_metrics(console, client)
        show_where_to_look(
            console,
            base_url=base_url,
            write_key=write_key,
            secret_key=settings.secret_key,
            visitor=examples[0].visitor if examples else None,
            placements=DEMO_PLACEMENTS,
            identity_secret=identity_secret,
        )
        storefront = f"{base_url}/demo"
        summary = DemoSummary(
            base_url,
            sent,
            caught_up,
            sizes,
            tuple(urls),
            storefront_url=storefront,
            config_path=config_path,
            examples=tuple(examples),
            engagement=engaged,
        )
        if serve_forever:
            console.print(f"Serving the storefront at [bold]{storefront}[/bold]; Ctrl-C stops.")
            if open_browser:
                webbrowser.open(storefront)
            server.wait()
        return summary
    finally:
        server.stop()
