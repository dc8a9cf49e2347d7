"""`make bench` is not run by CI; at least every benchmark module must import, and the
pieces that need no server (workspaces, load generators on a toy server) must work."""

import asyncio
import importlib
import os
from pathlib import Path

import pytest

from bench.common import closed_loop, open_loop, request_head
from bench.run import BENCHMARKS
from touchpoint.config.workspace import load_config_file


@pytest.mark.parametrize("module", sorted(BENCHMARKS.values()))
def test_benchmark_module_imports_and_has_run(module: str) -> None:
    assert callable(importlib.import_module(module).run)


def test_the_decide_benchmark_workspace_has_500_items_over_3_placements(tmp_path: Path) -> None:
    from bench.decide import CATALOG_ITEMS, workspace_file

    path, promotions = workspace_file(tmp_path)
    config = load_config_file(path)
    assert len(config.content) == CATALOG_ITEMS == 500
    assert [placement.name for placement in config.placements] == [
        "home_hero",
        "product_recs",
        "cart_banner",
    ]
    assert promotions == sum(item.id.startswith("promo_") for item in config.content)
    assert config.sources[0].allow_client_decisions


async def _toy_server() -> tuple[asyncio.Server, int]:
    """An HTTP/1.1 keep-alive server answering every request `200 {}` (reads the body)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_load_generators_count_and_time_requests() -> None:
    async def scenario() -> None:
        server, port = await _toy_server()
        body = b'{"x": 1}'
        requests = [(request_head("POST", "/x", port, {}, len(body)), body)]
        closed = await closed_loop(port, os.getpid(), requests, clients=4, seconds=0.3)
        assert closed.ok == closed.requests > 0 and closed.rate > 0
        assert len(closed.latencies) == closed.requests
        opened = await open_loop(port, os.getpid(), requests, rate=200, seconds=0.5)
        assert opened.ok == opened.requests == 100
        assert len(opened.latencies) == len(opened.from_sent) == len(opened.delays) == 100
        pairs = zip(opened.latencies, opened.from_sent, strict=True)
        assert all(due >= sent for due, sent in pairs)
        assert opened.seconds >= 0.49  # the last request is due 0.495 s after the first
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
