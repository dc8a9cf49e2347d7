"""The decision log: every decision and the outcomes joined to it (interface in `base`,
one module per backend)."""
