"""The demo: a seeded shop catalog, simulated visitors, and `touchpoint demo`.

`simulate` and `catalog` are pure data generation; `run` does the I/O (the server
thread, `send_events`, the tour). Importing this package loads no server module:
the app is built only when `run_demo` starts it.
"""

from touchpoint.demo.catalog import Catalog, Product, build_catalog
from touchpoint.demo.run import SendStats, run_demo, send_events
from touchpoint.demo.simulate import Journey, Visitor, simulate_journeys, simulate_visitors

__all__ = [
    "Catalog",
    "Journey",
    "Product",
    "SendStats",
    "Visitor",
    "build_catalog",
    "run_demo",
    "send_events",
    "simulate_journeys",
    "simulate_visitors",
]
