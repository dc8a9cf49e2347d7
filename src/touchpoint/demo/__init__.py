"""The demo: a seeded shop catalog, simulated visitors, a retail workspace, `touchpoint demo`.

`catalog`, `simulate`, `workspace` and `showcase` are pure data generation; `run`,
`engagement` and `tour` do the I/O (the server thread, `send_events`, decisions,
the printed tour). Names are loaded on first use, so importing one module of this
package (the demo router reads `showcase`) loads no server or HTTP client module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Catalog": "touchpoint.demo.catalog",
    "Product": "touchpoint.demo.catalog",
    "build_catalog": "touchpoint.demo.catalog",
    "Journey": "touchpoint.demo.simulate",
    "Visitor": "touchpoint.demo.simulate",
    "simulate_journeys": "touchpoint.demo.simulate",
    "simulate_visitors": "touchpoint.demo.simulate",
    "SendStats": "touchpoint.demo.run",
    "run_demo": "touchpoint.demo.run",
    "send_events": "touchpoint.demo.run",
    "demo_workspace": "touchpoint.demo.workspace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
