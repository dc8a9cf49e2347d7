"""The model registry: every trained version, which one serves, and why.

Layout under the registry root (`<data_dir>/models`):

    <model>/v0003/meta.json       version, training window, parameters, metrics, drift
    <model>/v0003/...             the artifact, as the model saved it (JSON, npz, text)
    <model>/registry.json         the serving version and the promotion history

A version directory is written under a temporary name and renamed whole, so a reader
never sees half an artifact. `registry.json` is replaced by rename too. A new version
serves only once promoted, and `promote` refuses one whose validation metric is worse
than the serving version's beyond the tolerance. `rollback` goes back to the version
that served before. Loading falls back to the previous promoted versions when the
serving one cannot be read, so a broken artifact never stops serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.core.files import file_lock

logger = logging.getLogger(__name__)

T = TypeVar("T")

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_VERSION_DIR = re.compile(r"^v(\d{4,})$")

CANDIDATE, PROMOTED, REJECTED, RETIRED = "candidate", "promoted", "rejected", "retired"


@dataclass(frozen=True)
class ModelVersion:
    """One trained version of a model.

    `window`: the training data's `start`/`end` (and any cutoffs) as ISO-8601 text;
    `metric`: the name of the validation metric promotion compares, `higher_is_better`
    its direction, `metrics` every figure measured on validation; `status`: candidate,
    promoted, rejected or retired, with `reason` for a rejection.
    """

    model: str
    version: int
    created_at: str
    kind: str
    window: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric: str | None = None
    higher_is_better: bool = True
    status: str = CANDIDATE
    reason: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0

    @property
    def score(self) -> float | None:
        """The validation metric's value, None if there is none."""
        if self.metric is None:
            return None
        value = self.metrics.get(self.metric)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class Promotion:
    """What `promote` decided: `promoted`, and why (`reason`)."""

    promoted: bool
    reason: str
    version: ModelVersion


class ModelRegistry:
    """Versions of every model under `root`; see the module docstring. Safe for several
    processes on one machine (a file lock serializes writers)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- writing ------------------------------------------------------------------------------

    def register(self, version: ModelVersion, save: Callable[[Path], None]) -> ModelVersion:
        """Store a new version: `save(directory)` writes the artifact, then the version is
        numbered (the next free number), described by `meta.json` and renamed into place.
        The returned version carries its number; it serves only once promoted."""
        name = _check_name(version.model)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".staging-{os.getpid()}-{id(version)}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            save(staging)
            with self._lock(name):
                number = max((v.version for v in self.versions(name)), default=0) + 1
                stored = replace(version, version=number, status=CANDIDATE)
                _write_json(staging / "meta.json", stored.to_dict())
                os.replace(staging, directory / f"v{number:04d}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("registered %s version %d", name, number)
        return stored

    def rewrite(self, model: str, version: int, save: Callable[[Path, Path], bool]) -> bool:
        """Replace a stored version's artifact with another (erasure: the same model without
        some people); whether it was replaced. `save(current, staging)` writes the new
        artifact into `staging` from the one in `current`, returning False when nothing
        changes. The version keeps its number, `meta.json`, status and every file `save`
        did not write; the directory is swapped by two renames and the old one deleted, files
        and all (a loader looking in between falls back to another version, as for any
        unreadable one). `registry.json` is rewritten too, so servers reload the model."""
        name = _check_name(model)
        directory = self.path(name, version)
        staging = directory.with_name(f".rewrite-{os.getpid()}-{directory.name}")
        retired = directory.with_name(f".retired-{os.getpid()}-{directory.name}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            with self._lock(name):
                if not save(directory, staging):
                    return False
                for path in directory.iterdir():
                    if path.is_file() and not (staging / path.name).exists():
                        shutil.copy2(path, staging / path.name)
                os.replace(directory, retired)
                os.replace(staging, directory)
                self._write_state(name, self._state(name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)
        logger.info("rewrote %s version %d", name, version)
        return True

    def promote(
        self, model: str, version: int, *, tolerance: float = 0.0, force: bool = False
    ) -> Promotion:
        """Make `version` the serving one if its validation metric is not worse than the
        serving version's by more than `tolerance` (absolute), or `force`. A refused
        version is marked rejected with the reason."""
        name = _check_name(model)
        with self._lock(name):
            candidate = self.get(name, version)
            current = self.current(name)
            verdict, reason = _compare(candidate, current, tolerance)
            if force and not verdict:
                verdict, reason = True, f"forced: {reason}"
            state = self._state(name)
            if verdict:
                history = [*state.get("history", []), {"version": version, "at": _now()}]
                self._write_state(name, {"current": version, "history": history})
                self._set_status(candidate, PROMOTED, reason)
                if current is not None and current.version != version:
                    self._set_status(current, RETIRED, f"replaced by version {version}")
            else:
                self._set_status(candidate, REJECTED, reason)
        logger.info(
            "%s version %d %s: %s", name, version, "promoted" if verdict else "rejected", reason
        )
        return Promotion(verdict, reason, self.get(name, version))

    def rollback(self, model: str, *, to: int | None = None) -> ModelVersion:
        """Serve the version that served before the current one (or version `to`)."""
        name = _check_name(model)
        with self._lock(name):
            state = self._state(name)
            history = list(state.get("history", []))
            if to is None:
                if len(history) < 2:
                    raise InvalidInput(
                        f"{name} has no earlier promoted version to roll back to",
                        details={"field": "model"},
                    )
                to = int(history[-2]["version"])
            target = self.get(name, to)
            current = self.current(name)
            history.append({"version": to, "at": _now(), "rollback": True})
            self._write_state(name, {"current": to, "history": history})
            self._set_status(target, PROMOTED, "rolled back to")
            if current is not None and current.version != to:
                self._set_status(current, RETIRED, f"rolled back to version {to}")
        return self.get(name, to)

    # -- reading ------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Every model with at least one version."""
        return sorted(path.name for path in self.root.iterdir() if MODEL_NAME.match(path.name))

    def versions(self, model: str) -> list[ModelVersion]:
        """Every version of a model, oldest first (unreadable ones are skipped, logged)."""
        directory = self.root / _check_name(model)
        found = []
        for path in sorted(directory.glob("v*")) if directory.exists() else ():
            if not _VERSION_DIR.match(path.name):
                continue
            try:
                found.append(
                    ModelVersion.from_dict(orjson.loads((path / "meta.json").read_bytes()))
                )
            except (OSError, ValueError, TypeError) as error:
                logger.warning("skipping unreadable model version %s: %s", path, error)
        return found

    def get(self, model: str, version: int) -> ModelVersion:
        path = self.path(model, version) / "meta.json"
        try:
            return ModelVersion.from_dict(orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            raise NotFound(f"{model} has no version {version}", details={"model": model}) from None

    def path(self, model: str, version: int) -> Path:
        """The directory of a version's artifact."""
        return self.root / _check_name(model) / f"v{version:04d}"

    def current(self, model: str) -> ModelVersion | None:
        """The serving version, None before the first promotion."""
        number = self._state(_check_name(model)).get("current")
        return None if number is None else self.get(model, int(number))

    def load(self, model: str, loader: Callable[[Path], T]) -> tuple[ModelVersion, T] | None:
        """The serving version loaded with `loader(directory)`; when it cannot be loaded,
        the previous promoted versions, newest first (logged). None when nothing loads."""
        name = _check_name(model)
        state = self._state(name)
        tried = []
        candidates = [state.get("current")] + [
            entry["version"] for entry in reversed(state.get("history", []))
        ]
        for number in candidates:
            if number is None or number in tried:
                continue
            tried.append(number)
            try:
                version = self.get(name, int(number))
                return version, loader(self.path(name, int(number)))
            except Exception:
                logger.exception("cannot load %s version %s; trying the previous one", name, number)
        return None

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """A lock across the processes of one machine for a job (`training`): yields False
        at once when another process holds it."""
        return file_lock(self.root / f".{_check_name(name)}.lock", wait=False)

    # -- internals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / name / ".lock"):
            yield

    def _state(self, name: str) -> dict[str, Any]:
        try:
            state = orjson.loads((self.root / name / "registry.json").read_bytes())
        except FileNotFoundError:
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        _write_json(self.root / name / "registry.json", state)

    def _set_status(self, version: ModelVersion, status: str, reason: str) -> None:
        updated = replace(version, status=status, reason=reason)
        _write_json(self.path(version.model, version.version) / "meta.json", updated.to_dict())


def _compare(
    candidate: ModelVersion, current: ModelVersion | None, tolerance: float
) -> tuple[bool, str]:
    """Whether the candidate may replace the current version, and why."""
    if current is None:
        return True, "first version"
    if current.version == candidate.version:
        return True, "already serving"
    new, old = candidate.score, current.score
    if new is None or old is None or candidate.metric != current.metric:
        return True, "no comparable validation metric"
    worse = (old - new) if candidate.higher_is_better else (new - old)
    name = candidate.metric
    if worse > tolerance:
        return False, (
            f"{name} {new:.4f} is worse than the serving version's {old:.4f} "
            f"by more than the tolerance {tolerance:g}"
        )
    return True, f"{name} {new:.4f} against {old:.4f} (tolerance {tolerance:g})"


def _check_name(name: str) -> str:
    if not MODEL_NAME.match(name):
        raise InvalidInput(f"not a model name: {name!r}", details={"field": "model"})
    return name


def _now() -> str:
    return isoformat(utcnow())


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(temporary, path)
