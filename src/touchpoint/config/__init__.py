"""The workspace file (`touchpoint.yaml`): its schema, the settings a process runs with,
and the server connections (PostgreSQL, Redis) it configures."""
