"""`touchpoint demo` end to end: the real server, simulated shoppers, decisions with reasons."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from touchpoint.config.workspace import load_config_file
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.run import run_demo
from touchpoint.demo.showcase import VISITORS_FILE
from touchpoint.demo.simulate import simulate_visitors
from touchpoint.testing import free_port

pytestmark = pytest.mark.slow

START = datetime(2025, 3, 1, tzinfo=UTC)  # ids and counts do not depend on the start


def test_run_demo_shows_different_content_for_visible_reasons(tmp_path: Path) -> None:
    output = io.StringIO()
    data_dir = tmp_path / "data"
    summary = run_demo(
        port=free_port(),
        data_dir=data_dir,
        visitors=80,
        engaged_visitors=30,
        open_browser=False,
        serve_forever=False,
        console=Console(file=output, width=220),
    )
    expected = list(simulate_visitors(80, seed=42, catalog=build_catalog(), start=START, days=14))
    assert summary.sent.accepted == len(expected) and summary.sent.failed_batches == 0
    batch = ("rfm_", "cluster_", "value_", "lifecycle_")
    realtime = {name for name in summary.segment_sizes if not name.startswith(batch)}
    assert realtime == {"returning_visitor", "buyer", "vip", "cart_abandoner", "running_fan"}
    assert summary.segment_sizes["buyer"] > 0
    # `touchpoint train` ran on the history: batch segments written by the models.
    assert any(name.startswith("rfm_") for name in summary.segment_sizes)
    assert "touchpoint train" in output.getvalue()

    # The workspace file and the storefront's visitors were written for `serve --config`.
    assert summary.config_path is not None
    config = load_config_file(summary.config_path)
    assert config.sources[0].allow_client_decisions
    visitors = json.loads((data_dir / VISITORS_FILE).read_text(encoding="utf-8"))
    assert len(visitors["visitors"]) >= 5
    assert summary.storefront_url == f"{summary.base_url}/demo"

    # Decisions: every example answered, and two visitors see different content for
    # different reasons on the same placement.
    examples = summary.examples
    assert len(examples) >= 4 and all(example.error is None for example in examples)
    found = {(name, *example.shown[name]) for example in examples for name in example.shown}
    differing = [
        (a, b) for a in found for b in found if a[0] == b[0] and a[1] != b[1] and a[2] != b[2]
    ]
    assert differing, found
    heroes = {example.shown["home_hero"] for example in examples}
    assert len({content for content, reason in heroes if reason == "eligible"}) >= 2

    # Simulated visitors reacted to their decisions.
    engaged = summary.engagement
    assert engaged.failures == 0 and engaged.decisions == 30
    assert engaged.events["Decision Viewed"] >= 30

    text = output.getvalue()
    assert f"{summary.base_url}/demo" in text
    assert "curl -u " in text and "/v1/decide" in text
    assert "/v1/placements/home_hero/report" in text
    assert "anonymous_id x2" in text  # two devices merged into one profile
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{summary.base_url}/healthz", timeout=1.0)  # stopped when it returned
