"""Partition leases and group membership: the interface (`base.py`) and one module per
technology (`sqlite.py`, `redis.py`)."""
