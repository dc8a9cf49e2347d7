"""What the model jobs share: the minimum data and small file helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.models.errors import NotEnoughData

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.training import TrainingData

MIN_PEOPLE = 20


def people_of(data: TrainingData, minimum: int = MIN_PEOPLE) -> pd.DataFrame:
    """The person feature table of the run, or NotEnoughData when it has too few people."""
    frame = data.features
    if len(frame) < minimum:
        raise NotEnoughData(
            f"{len(frame)} people in the warehouse before {data.as_of:%Y-%m-%d %H:%M}; "
            f"at least {minimum} are needed"
        )
    return frame


def write_json(path: Path, data: Any) -> None:
    """A small JSON artifact (sorted keys, readable)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
