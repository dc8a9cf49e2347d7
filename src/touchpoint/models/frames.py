"""Reading feature tables: what every model and segmentation needs from a frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput


def numeric_column(frame: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """One column of a feature table as float64 (missing values as NaN); `InvalidInput`
    naming the column when it is absent or not numeric."""
    if column not in frame.columns:
        raise InvalidInput(f"column {column!r} is missing", details={"field": column})
    series = frame[column]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise InvalidInput(
            f"column {column!r} must be numeric, not {series.dtype}", details={"field": column}
        )
    values: npt.NDArray[np.float64] = series.astype("float64").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return values
