"""The modeling loop inside a workspace: warehouse copy, feature tables, training, decisions
filled from the recommender, erasure reaching the warehouse.

Protocol:
1. An embedded workspace (the default one: Segment e-commerce events, a
   `recently_viewed` feature) on a fresh data directory, in-process.
2. The visitor simulator's shoppers over 120 days (3,000 visitors; 800 with `--quick`),
   through the collector and the stream processor (timed, for scale: not this bench's
   subject), then the demo catalog imported as the item catalog.
3. Timed: the warehouse copy of every applied event (`WarehouseWriter.run_once`), the
   feature tables as of now, then `touchpoint train` of every model (each model's own
   time, status and validation metric), and a second training run (drift recorded).
4. Decide, in-process, for known visitors at random, 2,000 decisions each: a placement
   whose content is filled by the recommender (`recommendations: {k: 4}`) against the
   same placement with a rule-based content item: the cost of ML-filled content.
5. One erasure, end to end, with the warehouse rewrite.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import Figure, Options, Section, percentile
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import utcnow
from touchpoint.decide.results import DecideRequest
from touchpoint.definitions.model import parse_definitions
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.models import catalog_table
from touchpoint.demo.simulate import simulate_journeys
from touchpoint.runtime import Workspace

DAYS = 120
DECISIONS = 2_000

DEFINITIONS = {
    "placements": [
        {"name": "recs", "fallback": "recs_rules"},
        {"name": "rules", "fallback": "recs_rules"},
    ],
    "content": [
        {
            "id": "recs_model",
            "placements": ["recs"],
            "priority": 10,
            "recommendations": {"k": 4},
            "template": "{% for item in items %}<li>{{ item.name | escape }}</li>{% endfor %}",
        },
        {
            "id": "recs_rules",
            "placements": ["rules"],
            "eligibility": "features.products_viewed_7d >= 0",
            "payload": {"items": []},
            "template": "{% for p in features.recently_viewed %}<li>{{ p }}</li>{% endfor %}",
        },
    ],
}


def _seconds(start: float) -> float:
    return time.perf_counter() - start


def _decide(workspace: Workspace, people: list[tuple[str, str]], placement: str) -> list[float]:
    timings = []
    for kind, value in people:
        started = time.perf_counter()
        workspace.decider.decide(DecideRequest({kind: value}, [placement]))
        timings.append(_seconds(started) * 1000)
    return timings


def run(options: Options) -> Section:
    """The figures of one run (see the module docstring)."""
    started = time.perf_counter()
    visitors = 800 if options.quick else 3_000
    directory = Path(tempfile.mkdtemp(prefix="tp-bench-models-"))
    settings = load_settings(None, directory, environ={})
    workspace = Workspace.open(settings)
    figures: list[Figure] = []
    notes: list[str] = []
    try:
        catalog = build_catalog()
        now = utcnow()
        journeys = list(
            simulate_journeys(
                visitors, seed=7, catalog=catalog, start=now - timedelta(days=DAYS), days=DAYS
            )
        )
        messages = [message for journey in journeys for message in journey.messages]
        source = settings.config.sources[0]
        load = time.perf_counter()
        for start in range(0, len(messages), 1_000):
            workspace.collector.collect(source, messages[start : start + 1_000])
        while workspace.processor.run_once(2_000):
            pass
        loaded = _seconds(load)
        assert workspace.warehouse is not None and workspace.warehouse_writer is not None
        workspace.warehouse.write_items(catalog_table(catalog))

        copy = time.perf_counter()
        copied = workspace.warehouse_writer.run_once()
        copy_seconds = _seconds(copy)
        figures.append(
            Figure(
                "Warehouse copy of the applied log (Parquet by date, one manifest change)",
                f"{copied.rows:,} events in {copy_seconds:.2f} s "
                f"({copied.rows / max(copy_seconds, 1e-9):,.0f} events/s, {copied.files} files)",
                f"the stream processor applied them at {len(messages) / loaded:,.0f} events/s "
                "(collector + processor, in-process)",
            )
        )
        trainer = workspace.trainer()
        features = time.perf_counter()
        table = trainer.features_at(now)
        figures.append(
            Figure(
                "Person feature table as of now (DuckDB over the events)",
                f"{len(table):,} people in {_seconds(features):.2f} s",
                f"{copied.rows:,} events",
            )
        )
        train = time.perf_counter()
        outcomes = trainer.run(as_of=now)
        train_seconds = _seconds(train)
        for outcome in outcomes:
            metrics = ", ".join(
                f"{name} {value:.3f}"
                for name, value in outcome.metrics.items()
                if name in ("auc", "ndcg@10", "silhouette", "mae", "expected_calibration_error")
            )
            written = outcome.written.get("profiles", 0)
            detail = outcome.reason if outcome.status != "promoted" else metrics
            figures.append(
                Figure(
                    f"train `{outcome.model}`",
                    f"{outcome.status} in {outcome.seconds:.2f} s"
                    + (f"; {detail}" if detail else ""),
                    f"{written:,} profiles written" if written else "",
                )
            )
        figures.append(
            Figure(
                "`touchpoint train`, every model, first run",
                f"{train_seconds:.1f} s",
                "copy and feature tables included",
            )
        )
        again = time.perf_counter()
        second = trainer.run(["propensity"], as_of=now)[0]
        drifted = ""
        if second.version is not None and workspace.registry is not None:
            drift = workspace.registry.get("propensity", second.version).drift
            drifted = f"; drift recorded for {len(drift)} features"
        figures.append(
            Figure(
                "retrain `propensity` on the same data",
                f"{second.status} (version {second.version}) in {_seconds(again):.2f} s{drifted}",
                "the registry compares its validation AUC with the serving version's",
            )
        )

        workspace.definitions.apply(parse_definitions(DEFINITIONS), actor="bench")
        workspace.decider.refresh()
        rng = random.Random(3)
        known = [
            ("user_id", j.visitor.user_id)
            if j.visitor.user_id
            else ("anonymous_id", j.visitor.anonymous_ids[0])
            for j in journeys
        ]
        people = [rng.choice(known) for _ in range(DECISIONS)]
        _decide(workspace, people[:200], "recs")  # warm: model load, catalog, caches
        with_model = _decide(workspace, people, "recs")
        with_rules = _decide(workspace, people, "rules")
        figures.append(
            Figure(
                "Decide, content filled by the recommender (in-process, 1 placement)",
                f"p50 {percentile(with_model, 0.5):.2f} ms, "
                f"p99 {percentile(with_model, 0.99):.2f} ms",
                f"rule-based content, same people: p50 {percentile(with_rules, 0.5):.2f} ms, "
                f"p99 {percentile(with_rules, 0.99):.2f} ms",
            )
        )
        erase = time.perf_counter()
        kind, value = people[0]
        job = workspace.eraser.erase(kind, value, actor="bench")
        figures.append(
            Figure(
                "Erase one person, warehouse included",
                f"{_seconds(erase) * 1000:.0f} ms; warehouse rows removed: "
                f"{job.erased.get('warehouse', {})}",
                f"{len(workspace.warehouse.event_files())} event files scanned by DuckDB",
            )
        )
        notes.append(
            f"{visitors:,} simulated visitors over {DAYS} days: {len(messages):,} events; "
            f"load through the collector and processor {loaded:.1f} s."
        )
        notes.append(
            "Models that predict a 30-day horizon train at now - 60 days and validate at "
            "now - 30 days; the simulator's shoppers have no seasonality, so their AUCs "
            "measure the pipeline more than the models (the real-data figures are MovieLens "
            "and CDNOW above)."
        )
    finally:
        workspace.close()
    return Section(
        "Modeling loop inside a workspace",
        tuple(figures),
        tuple(notes),
        seconds=time.perf_counter() - started,
    )
