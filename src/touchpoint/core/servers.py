"""What the code that names a server needs without loading the server's client library:
the settings that configure PostgreSQL and Redis, URL redaction, error text, and the check
that a configured server's client is installed.

An embedded workspace (SQLite files, no server) never imports `psycopg` or `redis`: the
modules that do (`core.postgres`, `core.redis` and every server backend) are imported only
once a server is configured (`config.services.Services.open`, the factories'
`build_<kind>`). When one is configured but its client is missing, `require_client` says
exactly what to install.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit, urlunsplit

from touchpoint.core.errors import ServiceUnavailableAtStart

POSTGRES_SETTING = "postgres.url (TOUCHPOINT_POSTGRES_URL)"
REDIS_SETTING = "redis.url (TOUCHPOINT_REDIS_URL)"

# The client modules each server needs, and the line that installs them (the versions
# pyproject.toml requires).
POSTGRES_CLIENT = ("psycopg", "psycopg_pool")
POSTGRES_INSTALL = 'pip install "psycopg[binary]>=3.2" "psycopg-pool>=3.2"'
REDIS_CLIENT = ("redis",)
REDIS_INSTALL = 'pip install "redis[hiredis]>=5.2"'


def require_client(setting: str, server: str, modules: tuple[str, ...], install: str) -> None:
    """Import the client `modules` of `server` (PostgreSQL, Redis), or raise
    `ServiceUnavailableAtStart` naming `setting`, what is missing and the exact install
    line."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ServiceUnavailableAtStart(
                setting,
                f"{server} is configured, but its client library is not installed "
                f"({error}); install it with: {install}",
            ) from None


def require_postgres_client() -> None:
    """`require_client` for PostgreSQL (psycopg and its pool)."""
    require_client(POSTGRES_SETTING, "PostgreSQL", POSTGRES_CLIENT, POSTGRES_INSTALL)


def require_redis_client() -> None:
    """`require_client` for Redis (redis-py)."""
    require_client(REDIS_SETTING, "Redis", REDIS_CLIENT, REDIS_INSTALL)


def redact_url(url: str) -> str:
    """The URL without its password (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def first_line(error: BaseException) -> str:
    """An exception's message, first line only (libpq's are several lines long)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
