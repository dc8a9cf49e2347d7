"""The durable event log: the interface and its factory (`base.py`), one module per
backend (`sqlite.py`, `redis.py`), partition leases (`leases/`) and the coordination of the
workers that share a log's partitions (`coordination.py`)."""
