"""The visitors the storefront offers, each with a line saying who they are.

A newcomer picks a visitor on `/demo` and sees the page the decision engine
chose for them; the description says what that visitor did (what they like, how
often they came, what they bought or left in their cart, whether they refused
personalization), so the `reason` beside each placement makes sense. Everything
here is computed from the simulated journeys alone (pure, no I/O except
`write_showcase`); the storefront reads the file through the demo router.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from touchpoint.core.clock import isoformat
from touchpoint.demo.catalog import Catalog
from touchpoint.demo.content import RUNNING_SHOES, VIP_REVENUE, featured
from touchpoint.demo.simulate import SHOP_URL, Journey

VISITORS_FILE = "demo-visitors.json"
PRODUCTS_PER_CATEGORY = 8

# The kinds of visitor worth showing, most specific first (consent overrides everything,
# then the heroes' priorities), with the label the picker groups them under.
KINDS: tuple[tuple[str, str], ...] = (
    ("no_consent", "Said no to personalization"),
    ("cart_abandoner", "Left a full cart"),
    ("vip", "VIP customers"),
    ("running_fan", "Running-shoe browsers this week"),
    ("returning", "Returning visitors"),
    ("two_devices", "Signed in on two devices"),
    ("new", "One visit so far"),
)
# The order the picker and the tour list them in: the refusals last.
DISPLAY_ORDER: tuple[str, ...] = (*(kind for kind, _ in KINDS[1:]), KINDS[0][0])


@dataclass(frozen=True)
class VisitorState:
    """What a visitor's journey left behind, as of a moment: the facts content depends on."""

    visits: int
    orders: int
    revenue: float
    cart_items: int
    cart_value: float
    running_views_7d: int
    devices: int
    personalization: bool
    name: str | None
    favourites: tuple[str, ...]
    last_category: str | None

    @property
    def kinds(self) -> tuple[str, ...]:
        """Which of `KINDS` this visitor belongs to, in `KINDS` order."""
        found = {
            "no_consent": not self.personalization,
            "cart_abandoner": self.cart_items > 0,
            "vip": self.revenue >= VIP_REVENUE or self.orders >= 3,
            "running_fan": self.running_views_7d >= 2,
            "returning": self.visits >= 2,
            "two_devices": self.devices >= 2,
            "new": self.visits <= 1,
        }
        return tuple(kind for kind, _ in KINDS if found[kind])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def journey_state(journey: Journey, now: datetime) -> VisitorState:
    """The state of one simulated visitor at `now`, from their messages alone."""
    week_ago = isoformat(now - timedelta(days=7))
    cart: Counter[str] = Counter()
    prices: dict[str, float] = {}
    visits = orders = running = 0
    revenue = 0.0
    personalization = True
    name: str | None = None
    last_category: str | None = None
    for message in journey.messages:
        event = message.get("event")
        properties = message.get("properties") or {}
        if message["type"] == "page" and not str(properties.get("referrer")).startswith(SHOP_URL):
            visits += 1
        elif message["type"] == "identify":
            name = message.get("traits", {}).get("name") or name
        elif event == "Product Viewed":
            last_category = properties.get("category")
            if last_category == RUNNING_SHOES and message["timestamp"] >= week_ago:
                running += 1
        elif event == "Product Added":
            cart[properties["product_id"]] += properties.get("quantity", 1)
            prices[properties["product_id"]] = float(properties.get("price", 0.0))
        elif event == "Product Removed":
            cart[properties["product_id"]] -= properties.get("quantity", 1)
        elif event == "Order Completed":
            cart.clear()
            orders += 1
            revenue += float(properties.get("revenue", 0.0))
        elif event == "Consent Updated":
            personalization = bool(properties.get("consent", {}).get("personalization", True))
    lines = {product: quantity for product, quantity in cart.items() if quantity > 0}
    return VisitorState(
        visits=visits,
        orders=orders,
        revenue=round(revenue, 2),
        cart_items=sum(lines.values()),
        cart_value=round(sum(prices[product] * qty for product, qty in lines.items()), 2),
        running_views_7d=running,
        devices=len(journey.visitor.anonymous_ids),
        personalization=personalization,
        name=name,
        favourites=journey.visitor.favourite_categories,
        last_category=last_category,
    )


def describe(state: VisitorState) -> str:
    """One line a newcomer reads in the visitor picker."""
    parts = [f"likes {' and '.join(state.favourites)}", _plural(state.visits, "visit")]
    if state.orders:
        parts.append(f"{_plural(state.orders, 'order')} (${state.revenue:,.2f})")
    else:
        parts.append("never ordered")
    if state.cart_items:
        in_cart = _plural(state.cart_items, "item")
        parts.append(f"{in_cart} left in the cart (${state.cart_value:,.2f})")
    if state.running_views_7d:
        parts.append(f"viewed running shoes {state.running_views_7d}x in the last 7 days")
    if state.last_category:
        parts.append(f"last looked at {state.last_category}")
    if state.devices > 1:
        parts.append(f"signed in on {state.devices} devices")
    if not state.personalization:
        parts.append("said no to personalization")
    return "; ".join(parts)


@dataclass(frozen=True)
class ShowcaseVisitor:
    """A visitor the storefront offers: how to name them to the API, and who they are."""

    key: str
    label: str
    kind: str
    value: str
    group: str
    description: str
    tags: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The visitor as the storefront's JSON reads it."""
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "value": self.value,
            "group": self.group,
            "description": self.description,
            "tags": list(self.tags),
        }


def identity_of(journey: Journey) -> tuple[str, str]:
    """How a decide request names this visitor: the user id once they signed in (it reaches
    every device's events), else the anonymous id of their browser."""
    visitor = journey.visitor
    if visitor.user_id is not None:
        return "user_id", visitor.user_id
    return "anonymous_id", visitor.anonymous_ids[-1]


def pick_showcase(
    journeys: Iterable[Journey], now: datetime, *, per_kind: int = 3
) -> list[ShowcaseVisitor]:
    """Up to `per_kind` visitors of each of `KINDS` (each visitor listed once, under the
    first kind they belong to with room left), in `DISPLAY_ORDER`, then simulation order."""
    groups = dict(KINDS)
    chosen: dict[str, list[ShowcaseVisitor]] = {kind: [] for kind, _ in KINDS}
    for journey in journeys:
        state = journey_state(journey, now)
        kinds = state.kinds
        kind = next((k for k in kinds if len(chosen[k]) < per_kind), None)
        if kind is None:
            continue
        id_kind, value = identity_of(journey)
        label = state.name or f"Visitor #{journey.visitor.index}"
        chosen[kind].append(
            ShowcaseVisitor(
                key=f"v{journey.visitor.index}",
                label=label,
                kind=id_kind,
                value=value,
                group=groups[kind],
                description=describe(state),
                tags=kinds,
            )
        )
    return [visitor for kind in DISPLAY_ORDER for visitor in chosen[kind]]


def showcase_document(
    visitors: Sequence[ShowcaseVisitor],
    catalog: Catalog,
    *,
    workspace: str,
    placements: Sequence[str],
    generated_at: datetime,
    content: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """What the storefront loads: the visitors, the placements to ask for, what each
    content item is for (`content`: definitions with `id` and `description`), and a few
    products per category for its "browse the shop" grid."""
    categories = [
        {
            "name": category,
            "products": [
                {
                    "product_id": product.product_id,
                    "name": product.name,
                    "category": product.category,
                    "brand": product.brand,
                    "price": product.price,
                }
                for product in featured(catalog, category, PRODUCTS_PER_CATEGORY)
            ],
        }
        for category in catalog.categories
    ]
    return {
        "workspace": workspace,
        "generated_at": isoformat(generated_at),
        "placements": list(placements),
        "visitors": [visitor.to_json() for visitor in visitors],
        "content": [
            {"id": item["id"], "description": item.get("description", "")} for item in content
        ],
        "catalog": {"categories": categories},
    }


def write_showcase(data_dir: Path, document: dict[str, Any]) -> Path:
    """Write `<data_dir>/demo-visitors.json` atomically; its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / VISITORS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(temporary, path)
    return path
