"""Durable per-person timers: a store (one interface, a backend per technology) and the
background runner that fires due timers through a handler per kind."""
