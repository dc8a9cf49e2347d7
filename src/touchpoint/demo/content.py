"""The demo's placements and content: what a merchandiser would set up for the shop.

Three placements (`home_hero`, `product_recs`, `cart_banner`), each with a
fallback, and content whose eligibility reads like the brief: "cart abandoned",
"VIP", "viewed running shoes in the last 7 days", "returning visitor", the
category someone looked at last. Templates are Liquid, rendered by the decision
engine with the profile document (`traits`, `features`, `segments`) plus
`context` and `payload`; the engine escapes every value, and values a visitor
controls also go through `escape` so the templates stay safe anywhere.
`product_promotions` makes one promotion per product, for the decide
benchmark's 500-item catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from touchpoint.demo.catalog import Catalog, Product
from touchpoint.demo.simulate import SHOP_URL

DEMO_PLACEMENTS: tuple[str, ...] = ("home_hero", "product_recs", "cart_banner")
FREE_SHIPPING_FROM = 100
VIP_REVENUE = 500
RUNNING_SHOES = "Running Shoes"
CARDS_PER_PLACEMENT = 4

_NAME = "{% if traits.first_name %}, {{ traits.first_name | escape }}{% endif %}"
_CARD = (
    '<div class="tp-card" data-product-id="{{ p.product_id | escape }}" '
    'data-name="{{ p.name | escape }}" data-category="{{ p.category | escape }}" '
    'data-price="{{ p.price }}"><span class="tp-card-category">{{ p.category | escape }}</span>'
    '<button type="button" class="tp-card-name" data-action="view">{{ p.name | escape }}</button>'
    '<span class="tp-card-price">${{ p.price }}</span>'
    '<button type="button" class="tp-card-add" data-action="add">Add to cart</button></div>'
)
_CARDS = '<div class="tp-cards">{% for p in payload.products %}' + _CARD + "{% endfor %}</div>"
_CART_LINES = (
    "{% for item in features.cart.items limit: 3 %}{{ item.name | escape }}"
    "{% unless forloop.last %}, {% endunless %}{% endfor %}"
)


def slug(category: str) -> str:
    """`Running Shoes` -> `running_shoes`: the part of a content id naming a category."""
    return category.lower().replace(" ", "_").replace("-", "_")


def _card(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "name": product.name,
        "category": product.category,
        "price": product.price,
        "url": SHOP_URL + product.url_path,
    }


def featured(catalog: Catalog, category: str, count: int = CARDS_PER_PLACEMENT) -> list[Product]:
    """A category's showcase: `count` products spread over its price range, cheapest first."""
    products = sorted(catalog.in_category(category), key=lambda item: (item.price, item.sku))
    if len(products) <= count:
        return products
    step = (len(products) - 1) / (count - 1) if count > 1 else 0
    return [products[round(index * step)] for index in range(count)]


def _hero(
    content_id: str, priority: int, eligibility: str | None, title: str, body: str, **extra: Any
) -> dict[str, Any]:
    template = (
        f'<div class="tp-hero tp-{content_id}"><h2>{title}</h2><p>{body}</p>'
        '<button type="button" class="tp-cta" data-action="cta">'
        f"{extra.pop('cta', 'Shop now')}</button>{extra.pop('cards', '')}</div>"
    )
    item: dict[str, Any] = {
        "id": content_id,
        "placements": ["home_hero"],
        "priority": priority,
        "template": template,
        "tags": extra.pop("tags", ["hero"]),
    }
    if eligibility is not None:
        item["eligibility"] = eligibility
    item.update(extra)
    return item


def _hero_content(catalog: Catalog) -> list[dict[str, Any]]:
    running = [_card(product) for product in featured(catalog, RUNNING_SHOES, 3)]
    return [
        _hero(
            "hero_cart_reminder",
            50,
            "segments contains 'cart_abandoner'",
            "{% if traits.first_name %}{{ traits.first_name | escape }}, you{% else %}You"
            "{% endif %} left {{ features.cart.count }} item{% if features.cart.count != 1 %}s"
            "{% endif %} in your cart",
            f"{_CART_LINES}: ${{{{ features.cart.value | round: 2 }}}}. Order today and "
            "shipping is on us.",
            cta="Back to my cart",
            caps=[{"max": 5, "per": "1d"}],
            value=25.0,
            description="Cart abandoned: items in the cart, no order since, idle for an hour.",
        ),
        _hero(
            "hero_vip",
            40,
            "segments contains 'vip'",
            f"Welcome back{_NAME}",
            "You are one of our best customers: the winter collection is yours a week early.",
            cta="See the collection",
            payload={"offer": "vip-early-access"},
            value=40.0,
            description="VIP: lifetime revenue over $500 or three orders.",
        ),
        _hero(
            "hero_running",
            30,
            "features.running_shoe_views_7d >= 2",
            "New season running shoes",
            "You looked at running shoes {{ features.running_shoe_views_7d }} times this week. "
            "These just came in.",
            cards=_CARDS,
            payload={"products": running},
            description="Viewed running shoes (twice or more) in the last 7 days.",
        ),
        _hero(
            "hero_returning",
            20,
            "segments contains 'returning_visitor'",
            f"Welcome back{_NAME}",
            "{% if features.last_viewed_category %}Pick up where you left off in "
            "{{ features.last_viewed_category | escape }}.{% else %}Good to see you again."
            "{% endif %}",
            cta="Continue shopping",
            description="Returning visitor: two visits or more.",
        ),
        _hero(
            "hero_spring_sale",
            10,
            "features.visits >= 1",
            "Spring sale: up to 30% off",
            "Jackets, tents and packs for the season ahead.",
            end="2030-01-01T00:00:00Z",
            description="Any known visitor; ties with hero_trail_season (stable hash decides).",
        ),
        _hero(
            "hero_trail_season",
            10,
            "features.visits >= 1",
            "Trail season is here",
            "Grippy shoes, light packs and everything for long days out.",
            description="Any known visitor; ties with hero_spring_sale (stable hash decides).",
        ),
        _hero(
            "hero_welcome",
            0,
            None,
            "Welcome to Example Outdoor",
            "Gear for every trail. Take 10% off your first order with WELCOME10.",
            payload={"code": "WELCOME10"},
            description="Fallback: first-time visitors and anyone without consent.",
        ),
    ]


def _recs_content(catalog: Catalog) -> list[dict[str, Any]]:
    title = '<h3 class="tp-recs-title">{{ payload.title | escape }}</h3>'
    items: list[dict[str, Any]] = [
        {
            "id": "recs_running_week",
            "placements": ["product_recs"],
            "tags": ["recs"],
            "priority": 30,
            "eligibility": "features.running_shoe_views_7d >= 1",
            "payload": {
                "title": "Running shoes for you",
                "products": [_card(item) for item in featured(catalog, RUNNING_SHOES)],
            },
            "template": title + _CARDS,
            "description": "Viewed running shoes in the last 7 days.",
        }
    ]
    items.append(
        {
            "id": "recs_for_you",
            "placements": ["product_recs"],
            "tags": ["recs"],
            "priority": 25,
            "eligibility": "recommendations exists",
            "recommendations": {"k": CARDS_PER_PLACEMENT, "min_items": CARDS_PER_PLACEMENT},
            "payload": {"title": "Picked for you"},
            "template": title
            + '<div class="tp-cards">{% for p in items %}'
            + _CARD
            + "{% endfor %}</div>",
            "description": "Recommended by the trained model (touchpoint train) for people "
            "active recently; the rules below for everyone else.",
        }
    )
    for category in catalog.categories:
        items.append(
            {
                "id": f"recs_{slug(category)}",
                "placements": ["product_recs"],
                "tags": ["recs", slug(category)],
                "priority": 20,
                "eligibility": f"features.last_viewed_category == '{category}'",
                "payload": {
                    "title": f"More {category}",
                    "products": [_card(item) for item in featured(catalog, category)],
                },
                "template": title + _CARDS,
                "description": f"The last product viewed was in {category}.",
            }
        )
    bestsellers = [_card(featured(catalog, name, 1)[0]) for name in catalog.categories[:4]]
    items.append(
        {
            "id": "recs_bestsellers",
            "placements": ["product_recs"],
            "tags": ["recs"],
            "payload": {"title": "Bestsellers", "products": bestsellers},
            "template": title + _CARDS,
            "description": "Fallback: the same bestsellers for everyone.",
        }
    )
    return items


def _banner(content_id: str, priority: int, eligibility: str | None, text: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": content_id,
        "placements": ["cart_banner"],
        "priority": priority,
        "tags": ["banner"],
        "template": f'<div class="tp-banner">{text} '
        '<button type="button" class="tp-cta" data-action="cta">View cart</button></div>',
    }
    if eligibility is not None:
        item["eligibility"] = eligibility
    return item


def _cart_content() -> list[dict[str, Any]]:
    return [
        {
            **_banner(
                "cart_abandoned",
                30,
                "segments contains 'cart_abandoner'",
                "Still thinking it over? {{ features.cart.count }} item"
                "{% if features.cart.count != 1 %}s{% endif %} "
                "(${{ features.cart.value | round: 2 }}) "
                "{% if features.cart.count != 1 %}are{% else %}is{% endif %}"
                f" waiting in your cart: {_CART_LINES}.",
            ),
            "description": "Cart abandoned.",
        },
        {
            **_banner(
                "cart_vip_shipping",
                25,
                "segments contains 'vip'",
                f"Free express shipping on every order{_NAME}.",
            ),
            "description": "VIP.",
        },
        {
            **_banner(
                "cart_free_shipping",
                20,
                f"features.cart.count > 0 and features.cart.value < {FREE_SHIPPING_FROM}",
                f"Add ${{{{ {FREE_SHIPPING_FROM} | minus: features.cart.value | round: 2 }}}} "
                "more to your cart for free shipping.",
            ),
            "description": f"A cart under ${FREE_SHIPPING_FROM}.",
        },
        {
            **_banner(
                "cart_in_cart",
                15,
                "features.cart.count > 0",
                "{{ features.cart.count }} item{% if features.cart.count != 1 %}s{% endif %} "
                "in your cart, and free shipping unlocked.",
            ),
            "description": f"A cart of ${FREE_SHIPPING_FROM} or more.",
        },
        {
            **_banner("cart_default", 0, None, "Free returns for 30 days on everything."),
            "description": "Fallback.",
        },
    ]


def demo_placements() -> list[dict[str, Any]]:
    """The three placements, with their fallbacks and the events that count as conversions."""
    return [
        {
            "name": "home_hero",
            "description": "The big banner at the top of the home page.",
            "fallback": "hero_welcome",
            "conversion_events": ["Order Completed"],
        },
        {
            "name": "product_recs",
            "description": "A row of product cards under the hero.",
            "tags": ["recs"],
            "fallback": "recs_bestsellers",
            "conversion_events": ["Product Added", "Order Completed"],
        },
        {
            "name": "cart_banner",
            "description": "A strip above the cart and the checkout button.",
            "fallback": "cart_default",
            "conversion_events": ["Checkout Started", "Order Completed"],
        },
    ]


def demo_content(catalog: Catalog) -> list[dict[str, Any]]:
    """Every content item of the demo's placements (see the module docstring)."""
    return [*_hero_content(catalog), *_recs_content(catalog), *_cart_content()]


def product_promotions(
    catalog: Catalog, count: int, *, placements: Sequence[str] = DEMO_PLACEMENTS
) -> list[dict[str, Any]]:
    """`count` promotions, one per product (cycling through the catalog), spread over
    `placements`, each eligible for people whose last viewed category is the product's and
    who viewed at least a few products this week, with its own priority and template."""
    items: list[dict[str, Any]] = []
    for index in range(count):
        product = catalog.products[index % len(catalog.products)]
        threshold = 1 + index % 5
        items.append(
            {
                "id": f"promo_{product.product_id}_{index}",
                "placements": [placements[index % len(placements)]],
                "tags": ["promotion", slug(product.category)],
                "priority": 5 + (index * 7) % 23,
                "eligibility": f"features.last_viewed_category == '{product.category}' "
                f"and features.products_viewed_7d >= {threshold}",
                "payload": {"products": [_card(product)]},
                "template": '<div class="tp-promo">{% for p in payload.products %}'
                + _CARD
                + "{% endfor %}</div>",
                "value": round(product.price * 0.1, 2),
            }
        )
    return items
