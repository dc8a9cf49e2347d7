"""The profile store and identity graph: the interface in `base`, one module per backend
(`sqlite`, `postgres`), and the Redis read-through cache in `redis_cache`."""
