"""Simulated shop visitors, as Segment-spec messages an SDK would send.

Each visitor has tastes (one or two favourite categories, a price sensitivity)
and comes back over several days: page views, `Product Viewed` (mostly of the
favourite categories), cart changes, checkouts and orders. Some sign in
(`identify` with `userId` and traits); some of those come back later on a second
device, browse anonymously, and sign in again with the same `userId`, which is
what identity merging has to stitch together. A few update their consent and
some leave a full cart behind.

Everything derives from the seed: the same arguments give the same messages,
ids included. Messages of one visitor come out together, in time order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from touchpoint.core.clock import isoformat
from touchpoint.demo.catalog import Catalog, Product

SHOP_URL = "https://shop.example.com"
LIBRARY = {"name": "touchpoint-demo", "version": "0.1.0"}
PLANS = ("free", "plus", "pro")

_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
_FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas")
_LAST_NAMES = ("Moreau", "Okafor", "Lindqvist", "Tanaka", "Garcia", "Novak", "Reyes", "Schmidt")
_REFERRERS = ("", "", "https://www.google.com/", "https://www.instagram.com/", "https://duck.com/")
_CAMPAIGNS = ("spring_sale", "trail_season", "newsletter")
_IP_PREFIXES = ("192.0.2", "198.51.100", "203.0.113")  # documentation ranges (RFC 5737)


@dataclass(frozen=True)
class Visitor:
    """Who a simulated visitor is: the ids they use and the tastes that drive them."""

    index: int
    anonymous_ids: tuple[str, ...]
    user_id: str | None
    favourite_categories: tuple[str, ...]
    price_sensitivity: float


@dataclass(frozen=True)
class Journey:
    """One visitor and every message they sent, oldest first."""

    visitor: Visitor
    messages: tuple[dict[str, Any], ...]


class _Device:
    """What the SDK on one browser knows: its anonymous id, user agent and address."""

    def __init__(self, rng: random.Random) -> None:
        self.anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.user_agent = rng.choice(_USER_AGENTS)
        self.ip = f"{rng.choice(_IP_PREFIXES)}.{rng.randrange(1, 255)}"
        self.user_id: str | None = None


class _JourneyWriter:
    """Builds the messages of one visitor, advancing a clock between them."""

    def __init__(self, rng: random.Random, clock: datetime) -> None:
        self.rng = rng
        self.clock = clock
        self.device: _Device = _Device(rng)
        self.messages: list[dict[str, Any]] = []
        self.path = "/"
        self.referrer = ""
        self.campaign: dict[str, str] | None = None

    def pause(self, low: float = 4.0, high: float = 60.0) -> None:
        self.clock += timedelta(seconds=self.rng.uniform(low, high))

    def _message(self, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        self.pause()
        device = self.device
        message: dict[str, Any] = {
            "type": kind,
            "messageId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "anonymousId": device.anonymous_id,
            "timestamp": isoformat(self.clock),
            "context": {
                "page": {"path": self.path, "url": SHOP_URL + self.path, "referrer": self.referrer},
                "userAgent": device.user_agent,
                "ip": device.ip,
                "library": dict(LIBRARY),
            },
        }
        if self.campaign is not None:
            message["context"]["campaign"] = dict(self.campaign)
        if device.user_id is not None:
            message["userId"] = device.user_id
        message.update(extra)
        self.messages.append(message)
        return message

    def page(self, name: str, path: str, *, referrer: str | None = None, **extra: Any) -> None:
        """A page view; the referrer is the previous page unless the visit just began."""
        self.referrer = SHOP_URL + self.path if referrer is None else referrer
        self.path = path
        props = {
            "path": path,
            "url": SHOP_URL + path,
            "title": f"{name} | Example Outdoor",
            "referrer": self.referrer,
        }
        props.update(extra)
        self._message("page", {"name": name, "properties": props})

    def track(self, event: str, properties: dict[str, Any]) -> None:
        self._message("track", {"event": event, "properties": properties})

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        self.device.user_id = user_id
        self._message("identify", {"userId": user_id, "traits": dict(traits)})


def _pick_product(
    rng: random.Random, catalog: Catalog, favourites: tuple[str, ...], sensitivity: float
) -> Product:
    """A product to look at: mostly from a favourite category, cheaper ones when sensitive."""
    category = rng.choice(favourites) if rng.random() < 0.8 else rng.choice(catalog.categories)
    products = catalog.in_category(category)
    weights = [(1.0 / product.price) ** sensitivity for product in products]
    return rng.choices(products, weights=weights)[0]


def _line(product: Product, quantity: int) -> dict[str, Any]:
    line = product.properties()
    line["quantity"] = quantity
    return line


def _session_starts(rng: random.Random, start: datetime, days: int) -> list[datetime]:
    """When each visit begins: a first visit early in the window, returns spread after it."""
    span = max(days, 1) * 86_400.0
    first = rng.uniform(0.0, 0.6) * span
    returns = 0
    while returns < 6 and rng.random() < (0.55 if returns == 0 else 0.5):
        returns += 1
    offsets = [first, *sorted(rng.uniform(first + 3_600.0, 0.9 * span) for _ in range(returns))]
    return [start + timedelta(seconds=offset) for offset in offsets if offset < 0.9 * span]


class _Shopper:
    """Plays one visitor's sessions into a `_JourneyWriter`."""

    def __init__(self, rng: random.Random, catalog: Catalog, writer: _JourneyWriter) -> None:
        self.rng = rng
        self.catalog = catalog
        self.writer = writer
        count = 1 if rng.random() < 0.6 else 2
        self.favourites = tuple(rng.sample(catalog.categories, count))
        self.sensitivity = round(rng.uniform(0.0, 1.5), 3)
        self.cart: dict[str, int] = {}
        self.cart_id = f"cart-{rng.getrandbits(48):012x}"
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        self.user_id = f"u-{rng.getrandbits(40):010x}"
        self.traits = {
            "email": f"{first.lower()}.{last.lower()}.{rng.randrange(1000)}@example.com",
            "name": f"{first} {last}",
            "first_name": first,
            "last_name": last,
            "plan": rng.choices(PLANS, weights=(6, 3, 1))[0],
        }

    def land(self, first_visit: bool) -> None:
        """The first page of a visit: home or a favourite category, from outside the shop."""
        rng, writer = self.rng, self.writer
        referrer = rng.choice(_REFERRERS)
        query = ""
        writer.campaign = None
        if first_visit and rng.random() < 0.3:
            name = rng.choice(_CAMPAIGNS)
            writer.campaign = {"name": name, "source": "newsletter", "medium": "email"}
            query = f"?utm_source=newsletter&utm_medium=email&utm_campaign={name}"
        if rng.random() < 0.5:
            writer.page("Home", "/" + query, referrer=referrer)
        else:
            category = rng.choice(self.favourites)
            slug = self.catalog.in_category(category)[0].url_path.split("/")[2]
            writer.page(category, f"/c/{slug}{query}", referrer=referrer, category=category)

    def browse(self, steps: int) -> None:
        rng, writer = self.rng, self.writer
        for _ in range(steps):
            product = _pick_product(rng, self.catalog, self.favourites, self.sensitivity)
            writer.page(product.name, product.url_path, category=product.category)
            writer.track("Product Viewed", product.properties())
            liked = 0.22 if product.category in self.favourites else 0.06
            if rng.random() < liked:
                quantity = 1 if rng.random() < 0.85 else 2
                self.cart[product.product_id] = self.cart.get(product.product_id, 0) + quantity
                writer.track("Product Added", {**_line(product, quantity), "cart_id": self.cart_id})
            if self.cart and rng.random() < 0.06:
                removed = rng.choice(sorted(self.cart))
                quantity = self.cart.pop(removed)
                line = _line(self.catalog.get(removed), quantity)
                writer.track("Product Removed", {**line, "cart_id": self.cart_id})

    def checkout(self) -> None:
        rng, writer = self.rng, self.writer
        if not self.cart or rng.random() < 0.35:
            return  # nothing to buy, or walks away: the cart stays full
        lines = [_line(self.catalog.get(pid), qty) for pid, qty in sorted(self.cart.items())]
        subtotal = round(sum(line["price"] * line["quantity"] for line in lines), 2)
        order_id = f"o-{rng.getrandbits(40):010x}"
        summary = {"order_id": order_id, "value": subtotal, "revenue": subtotal, "currency": "USD"}
        writer.page("Checkout", "/checkout")
        writer.track("Checkout Started", {**summary, "products": lines})
        if rng.random() < 0.3:
            return  # abandons at the payment step
        shipping = 0.0 if subtotal >= 100 else 7.95
        tax = round(subtotal * 0.08, 2)
        total = round(subtotal + shipping + tax, 2)
        order = {**summary, "total": total, "shipping": shipping, "tax": tax, "products": lines}
        writer.track("Order Completed", order)
        self.cart.clear()

    def sign_in(self) -> None:
        self.writer.page("Sign in", "/account/sign-in")
        self.writer.identify(self.user_id, self.traits)

    def update_consent(self) -> None:
        consent = {
            "analytics": True,
            "personalization": self.rng.random() < 0.8,
            "marketing": self.rng.random() < 0.5,
        }
        self.writer.track("Consent Updated", {"consent": consent})


def _journey(index: int, *, seed: int, catalog: Catalog, start: datetime, days: int) -> Journey:
    # A generator per visitor: a visitor's messages do not depend on how many are simulated.
    rng = random.Random(f"touchpoint-demo:{seed}:{index}")  # noqa: S311 (simulation, not secrets)
    writer = _JourneyWriter(rng, start)
    shopper = _Shopper(rng, catalog, writer)
    sessions = _session_starts(rng, start, days)
    signs_in_at = rng.randrange(len(sessions)) if rng.random() < 0.4 else None
    second_device_at = None
    if signs_in_at is not None and signs_in_at + 1 < len(sessions) and rng.random() < 0.6:
        second_device_at = rng.randrange(signs_in_at + 1, len(sessions))
    consent_at = rng.randrange(len(sessions)) if rng.random() < 0.08 else None
    anonymous_ids = [writer.device.anonymous_id]
    for number, session_start in enumerate(sessions):
        writer.clock = max(writer.clock + timedelta(minutes=20), session_start)
        if number == second_device_at:
            writer.device = _Device(rng)
            anonymous_ids.append(writer.device.anonymous_id)
        shopper.land(first_visit=number == 0)
        if number == consent_at:
            shopper.update_consent()
        if number == signs_in_at:
            shopper.sign_in()
        shopper.browse(rng.randint(1, 3) if number == second_device_at else rng.randint(1, 6))
        if number == second_device_at:
            shopper.sign_in()  # the same person signs in on the new device: profiles merge
            shopper.browse(rng.randint(1, 3))
        shopper.checkout()
    visitor = Visitor(
        index=index,
        anonymous_ids=tuple(anonymous_ids),
        user_id=shopper.user_id if signs_in_at is not None else None,
        favourite_categories=shopper.favourites,
        price_sensitivity=shopper.sensitivity,
    )
    return Journey(visitor=visitor, messages=tuple(writer.messages))


def simulate_journeys(
    n_visitors: int, *, seed: int, catalog: Catalog, start: datetime, days: int
) -> Iterator[Journey]:
    """Each visitor with their messages, visitor by visitor (see the module docstring).

    Visits begin within the first 90% of `[start, start + days)` and last minutes, so the
    timestamps stay inside the window (for windows of a few days or more).
    """
    if n_visitors < 0:
        raise ValueError("n_visitors cannot be negative")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    for index in range(n_visitors):
        yield _journey(index, seed=seed, catalog=catalog, start=start, days=days)


def simulate_visitors(
    n_visitors: int, *, seed: int, catalog: Catalog, start: datetime, days: int
) -> Iterator[dict[str, Any]]:
    """The messages of `n_visitors` simulated visitors, as an SDK would send them.

    Deterministic under `seed`; each visitor's messages come out together, in time order.
    """
    for journey in simulate_journeys(
        n_visitors, seed=seed, catalog=catalog, start=start, days=days
    ):
        yield from journey.messages
