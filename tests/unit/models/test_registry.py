"""The model registry: versions, promotion by validation metric, rollback, safe loading."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.models.registry import ModelRegistry, ModelVersion


def version(auc: float | None, *, higher: bool = True) -> ModelVersion:
    return ModelVersion(
        model="propensity",
        version=0,
        created_at="2026-11-24T00:00:00.000Z",
        kind="lightgbm",
        window={"start": "2026-01-01", "end": "2026-11-01"},
        params={"leaves": 31},
        metrics={} if auc is None else {"auc": auc},
        metric="auc",
        higher_is_better=higher,
    )


def saver(text: str):
    def save(directory: Path) -> None:
        (directory / "weights.json").write_text(text)

    return save


def load(directory: Path) -> str:
    return orjson.loads((directory / "weights.json").read_bytes())


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_versions_are_numbered_and_described(registry: ModelRegistry) -> None:
    first = registry.register(version(0.7), saver('"one"'))
    second = registry.register(version(0.8), saver('"two"'))
    assert (first.version, second.version) == (1, 2)
    assert [v.status for v in registry.versions("propensity")] == ["candidate", "candidate"]
    assert registry.current("propensity") is None
    assert registry.get("propensity", 2).window["end"] == "2026-11-01"
    assert registry.models() == ["propensity"]


def test_the_first_version_is_promoted_and_a_better_one_replaces_it(
    registry: ModelRegistry,
) -> None:
    one = registry.register(version(0.70), saver('"one"'))
    assert registry.promote("propensity", one.version).reason == "first version"
    two = registry.register(version(0.75), saver('"two"'))
    assert registry.promote("propensity", two.version, tolerance=0.01).promoted
    assert registry.current("propensity").version == 2  # type: ignore[union-attr]
    assert registry.get("propensity", 1).status == "retired"
    loaded = registry.load("propensity", load)
    assert loaded is not None and loaded[1] == "two"


def test_a_worse_version_beyond_the_tolerance_is_rejected(registry: ModelRegistry) -> None:
    registry.promote("propensity", registry.register(version(0.80), saver('"a"')).version)
    slightly = registry.register(version(0.795), saver('"b"'))
    assert registry.promote("propensity", slightly.version, tolerance=0.01).promoted
    worse = registry.register(version(0.70), saver('"c"'))
    verdict = registry.promote("propensity", worse.version, tolerance=0.01)
    assert not verdict.promoted and "worse" in verdict.reason
    assert registry.get("propensity", worse.version).status == "rejected"
    assert registry.current("propensity").version == slightly.version  # type: ignore[union-attr]
    assert registry.promote("propensity", worse.version, force=True).promoted


def test_lower_is_better_metrics_compare_the_other_way(registry: ModelRegistry) -> None:
    registry.promote(
        "propensity", registry.register(version(0.5, higher=False), saver("1")).version
    )
    higher_loss = registry.register(version(0.6, higher=False), saver("2"))
    assert not registry.promote("propensity", higher_loss.version, tolerance=0.05).promoted


def test_rollback_serves_the_previous_version(registry: ModelRegistry) -> None:
    registry.promote("propensity", registry.register(version(0.7), saver('"one"')).version)
    registry.promote("propensity", registry.register(version(0.8), saver('"two"')).version)
    back = registry.rollback("propensity")
    assert back.version == 1 and registry.current("propensity").version == 1  # type: ignore[union-attr]
    assert registry.load("propensity", load)[1] == "one"  # type: ignore[index]
    assert registry.rollback("propensity", to=2).version == 2


def test_rollback_without_history_is_a_clear_error(registry: ModelRegistry) -> None:
    registry.promote("propensity", registry.register(version(0.7), saver("1")).version)
    with pytest.raises(InvalidInput, match="no earlier promoted version"):
        registry.rollback("propensity")


def test_a_broken_artifact_falls_back_to_the_previous_version(registry: ModelRegistry) -> None:
    registry.promote("propensity", registry.register(version(0.7), saver('"one"')).version)
    two = registry.register(version(0.8), saver("not json"))
    registry.promote("propensity", two.version)
    loaded = registry.load("propensity", load)
    assert loaded is not None and loaded[0].version == 1 and loaded[1] == "one"


def test_nothing_to_load_before_a_promotion(registry: ModelRegistry) -> None:
    assert registry.load("propensity", load) is None
    registry.register(version(0.7), saver("1"))
    assert registry.load("propensity", load) is None


def test_a_failing_save_leaves_no_version(registry: ModelRegistry) -> None:
    def broken(directory: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.register(version(0.7), broken)
    assert registry.versions("propensity") == []


def test_names_and_versions_are_checked(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInput):
        registry.versions("../etc")
    with pytest.raises(NotFound):
        registry.get("propensity", 9)


def test_a_rewrite_replaces_the_artifact_and_keeps_the_version(registry: ModelRegistry) -> None:
    first = registry.register(version(0.7), saver('"one"'))
    registry.promote("propensity", first.version)
    directory = registry.path("propensity", 1)
    (directory / "sample.parquet").write_bytes(b"kept")

    def rewrite(current: Path, staging: Path) -> bool:
        assert load(current) == "one"
        (staging / "weights.json").write_text('"one, forgetting"')
        return True

    assert registry.rewrite("propensity", 1, rewrite) is True
    assert load(directory) == "one, forgetting"
    assert (directory / "sample.parquet").read_bytes() == b"kept"
    assert registry.get("propensity", 1).status == "promoted"
    assert registry.current("propensity") == registry.get("propensity", 1)
    assert sorted(p.name for p in directory.parent.iterdir() if p.name.startswith(".")) == [".lock"]
    assert registry.rewrite("propensity", 1, lambda current, staging: False) is False
    assert load(directory) == "one, forgetting"
