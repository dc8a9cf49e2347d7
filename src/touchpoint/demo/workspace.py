"""The demo's retail workspace: a real `touchpoint.yaml`, built from the catalog.

`demo_workspace` returns the configuration as a plain mapping (what YAML would
load): a web source that may ask for decisions from the browser, the features
the content reads (visits, running-shoe views in the last 7 days, the cart,
orders and revenue, what was viewed last), segments, consent purposes, and the
placements and content of `demo.content`. `write_workspace` writes it where
`touchpoint serve --config` can use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from touchpoint.demo.catalog import Catalog
from touchpoint.demo.content import RUNNING_SHOES, VIP_REVENUE, demo_content, demo_placements
from touchpoint.demo.simulate import SHOP_URL

WORKSPACE_NAME = "demo-shop"
WEB_SOURCE = "web"

_TRACKING_PLAN: dict[str, Any] = {
    "allow_unplanned": True,
    "events": {
        "Product Viewed": {
            "properties": {
                "type": "object",
                "properties": {
                    "product_id": {"type": ["string", "integer"]},
                    "price": {"type": "number", "minimum": 0},
                    "category": {"type": "string"},
                },
            }
        },
        "Product Added": {
            "properties": {
                "type": "object",
                "required": ["product_id"],
                "properties": {
                    "product_id": {"type": ["string", "integer"]},
                    "quantity": {"type": "integer", "minimum": 1},
                    "price": {"type": "number", "minimum": 0},
                },
            }
        },
        "Order Completed": {
            "properties": {
                "type": "object",
                "properties": {
                    "revenue": {"type": "number", "minimum": 0},
                    "products": {"type": "array"},
                },
            }
        },
        "Decision Viewed": {
            "properties": {"type": "object", "required": ["decision_id"]},
        },
        "Decision Clicked": {
            "properties": {"type": "object", "required": ["decision_id"]},
        },
    },
}

FEATURES: tuple[dict[str, Any], ...] = (
    {
        # A visit starts on a page reached from outside the shop (or typed in).
        "name": "visits",
        "type": "count",
        "event": "type:page",
        "where": f"not (properties.referrer starts_with '{SHOP_URL}')",
    },
    {"name": "page_views_7d", "type": "count", "event": "type:page", "window": "7d"},
    {"name": "products_viewed_7d", "type": "count", "event": "Product Viewed", "window": "7d"},
    {
        "name": "running_shoe_views_7d",
        "type": "count",
        "event": "Product Viewed",
        "window": "7d",
        "where": f"properties.category == '{RUNNING_SHOES}'",
    },
    {
        "name": "recently_viewed",
        "type": "last_distinct",
        "event": "Product Viewed",
        "property": "name",
        "n": 4,
    },
    {
        "name": "recent_categories",
        "type": "last_distinct",
        "event": "Product Viewed",
        "property": "category",
        "n": 3,
    },
    {
        "name": "last_viewed_category",
        "type": "last",
        "event": "Product Viewed",
        "property": "category",
    },
    {"name": "orders", "type": "count", "event": "Order Completed"},
    {"name": "lifetime_revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
    {"name": "last_order_at", "type": "last_time", "event": "Order Completed"},
    {"name": "cart", "type": "cart"},
)

SEGMENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "returning_visitor",
        "description": "Came to the shop on two visits or more.",
        "condition": "features.visits >= 2",
    },
    {"name": "buyer", "description": "Ordered at least once.", "condition": "features.orders >= 1"},
    {
        "name": "vip",
        "description": f"Spent ${VIP_REVENUE} or more, or ordered three times.",
        "condition": f"features.lifetime_revenue >= {VIP_REVENUE} or features.orders >= 3",
    },
    {
        "name": "cart_abandoner",
        "description": "Items in the cart (no order since), untouched for an hour.",
        "condition": "features.cart.count > 0 and features.cart.updated_at older_than 1h",
    },
    {
        "name": "running_fan",
        "description": "Looked at running shoes twice or more in the last 7 days.",
        "condition": "features.running_shoe_views_7d >= 2",
    },
)


def demo_workspace(
    catalog: Catalog,
    *,
    write_key: str,
    secret_key: str | None = None,
    hash_secret: str | None = None,
    identity_secret: str | None = None,
    extra_content: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The demo's `touchpoint.yaml` as a mapping (parse_config accepts it as is).

    Keys left out (`secret_key`, `hash_secret`, the source's `identity_secret`) are
    generated once per data directory by `load_settings`, so the file holds only the
    public write key. The source lets pages decide, so it verifies identities.
    """
    config: dict[str, Any] = {
        "workspace": WORKSPACE_NAME,
        "sources": [
            {
                "name": WEB_SOURCE,
                "write_key": write_key,
                "tracking_plan_mode": "flag",
                "allow_client_decisions": True,
            }
        ],
        "tracking_plan": _TRACKING_PLAN,
        "features": [dict(feature) for feature in FEATURES],
        "segments": [dict(segment) for segment in SEGMENTS],
        "consent": {
            "purposes": {
                "analytics": {"default": True, "description": "Collect and profile behaviour."},
                "personalization": {"default": True, "description": "Personalize the shop."},
                "marketing": {"default": False, "description": "Send marketing messages."},
            },
            "without_analytics": "anonymize",
        },
        "placements": demo_placements(),
        "content": [*demo_content(catalog), *extra_content],
    }
    if identity_secret is not None:
        config["sources"][0]["identity_verification"] = {"secret": identity_secret}
    if secret_key is not None:
        config["secret_key"] = secret_key
    if hash_secret is not None:
        config["identity"] = {"hash_secret": hash_secret}
    return config


def write_workspace(path: Path, config: dict[str, Any]) -> Path:
    """Write the configuration as YAML (a header says where it came from); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# The `touchpoint demo` retail workspace, written by the demo on every start.\n"
        "# Serve it yourself: touchpoint serve --config <this file> --data-dir <its folder>\n"
    )
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(header + text, encoding="utf-8")
    return path


def existing_write_key(path: Path) -> str | None:
    """The web source's write key in a workspace file written earlier, if there is one, so
    a demo restarted on the same data directory keeps the key its pages already use."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    for source in data.get("sources") or ():
        if isinstance(source, dict) and source.get("name") == WEB_SOURCE:
            key = source.get("write_key")
            return key if isinstance(key, str) and len(key) >= 8 else None
    return None
