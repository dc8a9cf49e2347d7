"""The rejected store: events refused at collection, kept for inspection and replay
(interface in `base`, one module per backend)."""
