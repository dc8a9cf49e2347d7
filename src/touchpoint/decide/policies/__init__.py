"""Policies: how a placement picks one item among its eligible candidates (protocol v2).

`base` holds the protocol (`PolicyInput` in, `Choice` out, `update(outcomes)`), one module
per policy (`priority`, `uniform`), and `registry` builds them by type name.
"""
