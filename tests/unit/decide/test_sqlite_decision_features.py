"""A decision-log file made before decisions kept the features a policy read gains the
column when opened; its decisions read back with no features."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from touchpoint.decide.decision_log.base import DecisionRecord
from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog

# The table as the file was created before the `features` column.
OLD_TABLE = """
CREATE TABLE decisions (
    decision_id TEXT NOT NULL, placement TEXT NOT NULL, content_id TEXT, profile_id TEXT,
    subject TEXT NOT NULL, policy TEXT NOT NULL, definitions_version INTEGER NOT NULL,
    reason TEXT NOT NULL, propensity REAL NOT NULL, at TEXT NOT NULL, experiment TEXT,
    arm TEXT, context BLOB NOT NULL, PRIMARY KEY (decision_id, placement));
INSERT INTO decisions VALUES ('old', 'home_hero', 'hero_a', NULL, 'anonymous_id:a', 'priority',
    1, 'eligible', 1.0, '2026-01-01T00:00:00.000Z', NULL, NULL, X'7B7D');
"""


def test_an_older_file_gains_the_features_column(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(OLD_TABLE)
    connection.close()

    log = SqliteDecisionLog(path)
    try:
        (old,) = log.get("old")
        assert old.features == {} and old.content_id == "hero_a"
        new = DecisionRecord(
            "new", "home_hero", "hero_b", None, "anonymous_id:b", "uniform", 1, "eligible",
            0.5, "2026-01-01T00:00:01.000Z", "exp", "arm_b", features={"views_7d": 2},
        )  # fmt: skip
        log.record([new])
        assert log.get("new") == [new] and log.get("new")[0].features == {"views_7d": 2}
    finally:
        log.close()
    again = SqliteDecisionLog(path)  # opening an upgraded file changes nothing
    try:
        assert [record.decision_id for record in again.list().items] == ["new", "old"]
    finally:
        again.close()
