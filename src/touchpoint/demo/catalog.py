"""A seeded outdoor-retail catalog for the demo, the simulator and the benchmarks.

Pure data generation: the same seed always gives the same products, ids, names
and prices, so demo output and benchmark inputs are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PRODUCTS = 300
DEFAULT_CATALOG_SEED = 7


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """How to make products of one category: price range, brands and product nouns."""

    name: str
    slug: str
    low_price: float
    high_price: float
    brands: tuple[str, ...]
    nouns: tuple[str, ...]


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "Running Shoes",
        "running-shoes",
        59.0,
        219.0,
        ("Stride", "Northpace", "Velo", "Kinetic"),
        ("Road Runner", "Tempo", "Racer", "Cushion", "Daily Trainer"),
    ),
    CategorySpec(
        "Trail Shoes",
        "trail-shoes",
        79.0,
        239.0,
        ("Ridgeline", "Northpace", "Scree", "Talus"),
        ("Trail Runner", "Mountain Grip", "Ultra", "Fell Racer"),
    ),
    CategorySpec(
        "Jackets",
        "jackets",
        69.0,
        449.0,
        ("Cirrus", "Ridgeline", "Boreal", "Stratus"),
        ("Rain Shell", "Down Jacket", "Wind Shell", "Insulated Parka", "Softshell"),
    ),
    CategorySpec(
        "Tents",
        "tents",
        129.0,
        899.0,
        ("Basecamp", "Boreal", "Talus"),
        ("Ultralight Tent", "Family Tent", "Expedition Dome", "Bivy"),
    ),
    CategorySpec(
        "Backpacks",
        "backpacks",
        39.0,
        329.0,
        ("Basecamp", "Scree", "Ridgeline", "Packhorse"),
        ("Daypack", "Trekking Pack", "Running Vest", "Travel Pack"),
    ),
    CategorySpec(
        "Watches",
        "watches",
        99.0,
        899.0,
        ("Chrono", "Velo", "Summit"),
        ("GPS Watch", "Multisport Watch", "Altimeter Watch", "Fitness Band"),
    ),
    CategorySpec(
        "Sleeping Bags",
        "sleeping-bags",
        59.0,
        549.0,
        ("Boreal", "Basecamp", "Cirrus"),
        ("Three-Season Bag", "Winter Bag", "Summer Quilt", "Down Mummy"),
    ),
    CategorySpec(
        "Socks",
        "socks",
        9.0,
        34.0,
        ("Stride", "Packhorse", "Talus"),
        ("Running Socks", "Merino Hikers", "Compression Socks", "Liner Socks"),
    ),
)

_VARIANTS = ("Pro", "Lite", "GTX", "2", "3", "Elite", "Classic", "Plus", "X", "Evo")


@dataclass(frozen=True, slots=True)
class Product:
    """One product: what `Product Viewed` / `Product Added` events carry."""

    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    price: float
    url_path: str

    def properties(self) -> dict[str, Any]:
        """The product as Segment e-commerce event properties."""
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
        }


@dataclass(frozen=True)
class Catalog:
    """An immutable product list with lookups by id and by category."""

    products: tuple[Product, ...]
    _by_id: dict[str, Product] = field(init=False, repr=False, compare=False)
    _by_category: dict[str, tuple[Product, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_category: dict[str, list[Product]] = {}
        for product in self.products:
            by_category.setdefault(product.category, []).append(product)
        object.__setattr__(self, "_by_id", {item.product_id: item for item in self.products})
        object.__setattr__(
            self, "_by_category", {name: tuple(items) for name, items in by_category.items()}
        )

    def __len__(self) -> int:
        return len(self.products)

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories that have at least one product, in catalog order."""
        return tuple(self._by_category)

    def in_category(self, category: str) -> tuple[Product, ...]:
        """The products of one category (empty if there is none)."""
        return self._by_category.get(category, ())

    def get(self, product_id: str) -> Product:
        """The product with this id; KeyError if there is none."""
        return self._by_id[product_id]


def _price(rng: random.Random, spec: CategorySpec) -> float:
    # Log-uniform prices ending in .99 or .00 look like a real shop's.
    raw = spec.low_price * (spec.high_price / spec.low_price) ** rng.random()
    return round(round(raw) - 0.01, 2) if rng.random() < 0.7 else float(round(raw))


def build_catalog(
    n_products: int = DEFAULT_PRODUCTS, *, seed: int = DEFAULT_CATALOG_SEED
) -> Catalog:
    """A deterministic catalog of `n_products` spread evenly over `CATEGORIES`."""
    if n_products < len(CATEGORIES):
        raise ValueError(f"a catalog needs at least {len(CATEGORIES)} products, one per category")
    rng = random.Random(seed)  # noqa: S311 (sample data, not secrets)
    products: list[Product] = []
    seen_names: set[str] = set()
    for index in range(n_products):
        spec = CATEGORIES[index % len(CATEGORIES)]
        brand = rng.choice(spec.brands)
        name = f"{brand} {rng.choice(spec.nouns)} {rng.choice(_VARIANTS)}"
        if name in seen_names:
            name = f"{name} {index}"
        seen_names.add(name)
        product_id = f"p{index + 1:04d}"
        products.append(
            Product(
                product_id=product_id,
                sku=f"{spec.slug[:3].upper()}-{rng.randrange(10_000, 99_999)}",
                name=name,
                category=spec.name,
                brand=brand,
                price=_price(rng, spec),
                url_path=f"/products/{spec.slug}/{product_id}",
            )
        )
    return Catalog(tuple(products))
