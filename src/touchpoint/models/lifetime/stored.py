"""How the purchase models (BG/NBD, Pareto/NBD) are written and read: one JSON document with
their kind, parameters, time unit and fit quality (`model.json` in the model's directory, as
every scorer is saved). Never pickle."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

from touchpoint.core.errors import InvalidInput

MODEL_FILE = "model.json"


class StoredPurchaseModel:
    """A mixin for frozen dataclasses with `params` (a dataclass of floats), `unit_days`,
    `log_likelihood` and `people`; `KIND` names the model in its file, `LABEL` in messages,
    `PARAMETERS` is the parameters' class."""

    KIND: ClassVar[str]
    LABEL: ClassVar[str]
    PARAMETERS: ClassVar[type[Any]]

    params: Any
    unit_days: float
    log_likelihood: float
    people: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready description (parameters, unit, fit quality)."""
        return {
            "model": self.KIND,
            "params": asdict(self.params),
            "unit_days": self.unit_days,
            "log_likelihood": self.log_likelihood,
            "people": self.people,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The model `to_dict` described; a wrong kind or missing parameter is
        `InvalidInput`."""
        if data.get("model") != cls.KIND:
            raise InvalidInput(f"not a {cls.LABEL} model file", details={"field": "model"})
        try:
            params = cls.PARAMETERS(**{k: float(v) for k, v in data["params"].items()})
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInput(
                f"bad {cls.LABEL} parameters: {error}", details={"field": "params"}
            ) from error
        return cls(  # type: ignore[call-arg]
            params,
            unit_days=float(data.get("unit_days", 7.0)),
            log_likelihood=float(data.get("log_likelihood", float("nan"))),
            people=int(data.get("people", 0)),
        )

    def save(self, directory: Path) -> None:
        """Write the model as JSON (`model.json`, never pickle) into `directory`, creating
        it."""
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2)
        (directory / MODEL_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model `save` wrote."""
        return cls.from_dict(json.loads((directory / MODEL_FILE).read_text(encoding="utf-8")))
