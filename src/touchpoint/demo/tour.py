"""What `touchpoint demo` prints once the workspace is loaded: where to look, and why.

Each function asks the running server (through `httpx`) and prints to a rich
console: the decisions a few example visitors get and the reason for each, the
storefront and report URLs with `curl` lines, example profiles, segment sizes and
a metrics excerpt. Nothing here changes the workspace except the decisions it
asks for (which are logged, as every decision is).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from touchpoint.demo.engagement import decide_body
from touchpoint.demo.showcase import ShowcaseVisitor
from touchpoint.demo.simulate import Journey

METRIC_PREFIXES = (
    "touchpoint_events_accepted_total",
    "touchpoint_processor_events_total",
    "touchpoint_profile_merges_total",
    "touchpoint_segment_changes_total",
    "touchpoint_decisions_total",
)


@dataclass(frozen=True)
class ExampleDecision:
    """What one example visitor was shown: placement -> (content id, reason)."""

    visitor: ShowcaseVisitor
    shown: dict[str, tuple[str | None, str]]
    error: str | None = None


def example_visitors(showcase: Sequence[ShowcaseVisitor]) -> list[ShowcaseVisitor]:
    """The first visitor of each group, in the showcase's order: one of each story."""
    seen: set[str] = set()
    picked: list[ShowcaseVisitor] = []
    for visitor in showcase:
        if visitor.group not in seen:
            seen.add(visitor.group)
            picked.append(visitor)
    return picked


def ask_decisions(
    client: httpx.Client,
    visitors: Sequence[ShowcaseVisitor],
    placements: Sequence[str],
    *,
    secret: str | None = None,
) -> list[ExampleDecision]:
    """`POST /v1/decide` for each visitor (the client carries the write key; a user id is
    signed with the source's identity `secret`)."""
    examples: list[ExampleDecision] = []
    for visitor in visitors:
        body = decide_body(visitor.kind, visitor.value, placements, secret=secret)
        try:
            response = client.post("/v1/decide", json=body)
        except httpx.HTTPError as error:
            examples.append(ExampleDecision(visitor, {}, type(error).__name__))
            continue
        if response.status_code != 200:
            refused = f"HTTP {response.status_code}: {response.text[:160]}"
            examples.append(ExampleDecision(visitor, {}, refused))
            continue
        answer: dict[str, Any] = response.json()
        shown = {
            name: (item.get("content_id"), str(item.get("reason")))
            for name, item in (answer.get("placements") or {}).items()
        }
        examples.append(ExampleDecision(visitor, shown))
    return examples


def show_decisions(
    console: Console, examples: Sequence[ExampleDecision], placements: Sequence[str]
) -> None:
    """A table: one row per example visitor, one column per placement, content and reason."""
    table = Table(title="What example visitors get (POST /v1/decide): content id and reason")
    table.add_column("visitor")
    for name in placements:
        table.add_column(name)
    for example in examples:
        who = f"[bold]{escape(example.visitor.label)}[/bold]\n{escape(example.visitor.group)}"
        if example.error is not None:
            table.add_row(who, f"[red]{escape(example.error)}[/red]", *[""] * (len(placements) - 1))
            continue
        cells = []
        for name in placements:
            content_id, reason = example.shown.get(name, (None, "missing"))
            colour = "green" if reason == "eligible" else "yellow"
            cells.append(f"{escape(str(content_id))}\n[{colour}]{escape(reason)}[/{colour}]")
        table.add_row(who, *cells)
    console.print(table)
    for example in examples:
        console.print(
            f"  [cyan]{escape(example.visitor.label)}[/cyan]: "
            f"{escape(example.visitor.description)}",
            highlight=False,
        )


def show_where_to_look(
    console: Console,
    *,
    base_url: str,
    write_key: str,
    secret_key: str,
    visitor: ShowcaseVisitor | None,
    placements: Sequence[str],
    identity_secret: str | None = None,
) -> None:
    """The storefront URL, a decide `curl` for a named visitor, the report URLs."""
    console.print(f"[bold]Storefront[/bold]: {base_url}/demo  (pick a visitor, watch the reasons)")
    if visitor is not None:
        body = json.dumps(
            decide_body(visitor.kind, visitor.value, placements, secret=identity_secret)
        )
        console.print(f"[bold]A decision for {escape(visitor.label)}[/bold]:", highlight=False)
        console.print(
            f"  curl -u {write_key}: {base_url}/v1/decide "
            f"-H 'content-type: application/json' -d {shlex.quote(body)}",
            soft_wrap=True,
            highlight=False,
        )
    console.print("[bold]Placement reports[/bold] (impressions, clicks, conversions per content):")
    for name in placements:
        console.print(
            f"  curl -H 'authorization: Bearer {secret_key}' "
            f"{base_url}/v1/placements/{name}/report",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"[bold]API docs[/bold]: {base_url}/docs")


def _profile_examples(journeys: Sequence[Journey]) -> list[tuple[str, str, str]]:
    """(kind, value, why) of a few profiles worth looking at."""
    found: list[tuple[str, str, str]] = []
    two_devices = next((j for j in journeys if len(j.visitor.anonymous_ids) > 1), None)
    if two_devices is not None and two_devices.visitor.user_id is not None:
        found.append(("user_id", two_devices.visitor.user_id, "signed in on two devices"))
        found.append(
            ("anonymous_id", two_devices.visitor.anonymous_ids[1], "the same person's 2nd device")
        )
    signed_in = next((j for j in journeys if j.visitor.user_id and j is not two_devices), None)
    if signed_in is not None:
        for message in signed_in.messages:
            if message["type"] == "identify":
                found.append(("email", message["traits"]["email"], "looked up by email"))
                break
    return found


def show_profiles(
    console: Console, client: httpx.Client, secret_key: str, journeys: Sequence[Journey]
) -> list[str]:
    """A few merged profiles (the client carries the secret key); their URLs."""
    console.print("[bold]Example profiles[/bold] (GET /v1/profiles/<kind>/<value>)")
    urls: list[str] = []
    for kind, value, why in _profile_examples(journeys):
        path = f"/v1/profiles/{kind}/{value}"
        url = f"{client.base_url}{path}"
        urls.append(url)
        response = client.get(path)
        console.print(f"  [cyan]{why}[/cyan]: {kind} {value}", highlight=False)
        if response.status_code != 200:
            console.print(f"    HTTP {response.status_code}: {escape(response.text[:200])}")
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
            highlight=False,
        )
        console.print(
            f"    curl -H 'authorization: Bearer {secret_key}' {url}",
            soft_wrap=True,
            highlight=False,
        )
    return urls


def show_segments(console: Console, client: httpx.Client) -> dict[str, int]:
    """Segment sizes (the client carries the secret key): the real-time ones with their
    condition, then the batch ones with the model that wrote them."""
    listed = client.get("/v1/segments").json().get("segments", [])
    sizes = {item["name"]: int(item["size"]) for item in listed}
    table = Table(title="Segments (GET /v1/segments)")
    table.add_column("segment")
    table.add_column("size", justify="right")
    table.add_column("condition, or the model that wrote it")
    for item in listed:
        rule = item.get("condition") if item.get("kind") != "batch" else f"model {item['model']}"
        table.add_row(item["name"], str(item["size"]), escape(str(rule)))
    console.print(table)
    return sizes


def show_metrics(console: Console, client: httpx.Client) -> None:
    """A few lines of `/metrics`."""
    text = client.get("/metrics").text
    console.print("[bold]Metrics[/bold] (GET /metrics, excerpt)")
    for line in text.splitlines():
        if line.startswith(METRIC_PREFIXES):
            console.print(f"  {line}", highlight=False)
