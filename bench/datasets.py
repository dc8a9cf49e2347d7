"""Real benchmark data, read out of the wheels that ship it (../shared/BENCHMARKS.md).

No machine here reaches the internet beyond the package registries, so the data
comes from wheels: `pip download --no-deps <name>==<version>` into the git-ignored
`bench/.data/` folder, then the files are read out of the zip. The packages are
never installed, and the files (MovieLens's licence forbids redistribution) are
never committed.

    movielens_100k()   -> the ratings of MovieLens 100k (recbole==1.2.1)
    cdnow_transactions() -> every CDNOW purchase (Lifetimes==0.11.3)
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).with_name(".data")

MOVIELENS_WHEEL = ("recbole", "1.2.1")
MOVIELENS_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
CDNOW_WHEEL = ("Lifetimes", "0.11.3")


def wheel(name: str, version: str) -> Path:
    """The wheel file of `name==version`, downloaded once into bench/.data/."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    prefix = name.lower().replace("-", "_")
    found = [path for path in DATA_DIR.glob("*.whl") if _matches(path, prefix, version)]
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--dest", str(DATA_DIR), f"{name}=={version}"]
        subprocess.run(command, check=True)
        found = [path for path in DATA_DIR.glob("*.whl") if _matches(path, prefix, version)]
    if not found:
        raise FileNotFoundError(f"pip download {name}=={version} left no wheel in {DATA_DIR}")
    return found[0]


def _matches(path: Path, prefix: str, version: str) -> bool:
    parts = path.name.split("-")
    return len(parts) > 2 and parts[0].lower() == prefix and parts[1] == version


def wheel_member(name: str, version: str, member: str) -> bytes:
    """One file's bytes out of a wheel."""
    with zipfile.ZipFile(wheel(name, version)) as archive:
        return archive.read(member)


@cache
def movielens_100k() -> pd.DataFrame:
    """MovieLens 100k ratings: `user_id, item_id, rating, timestamp` (100,000 rows)."""
    raw = wheel_member(*MOVIELENS_WHEEL, f"{MOVIELENS_PREFIX}.inter")
    frame = pd.read_csv(io.BytesIO(raw), sep="\t")
    frame.columns = [column.split(":")[0] for column in frame.columns]
    return frame[["user_id", "item_id", "rating", "timestamp"]]


@cache
def movielens_items() -> pd.DataFrame:
    """MovieLens 100k movies: `item_id, movie_title, release_year, class` (genres, space
    separated)."""
    raw = wheel_member(*MOVIELENS_WHEEL, f"{MOVIELENS_PREFIX}.item")
    frame = pd.read_csv(io.BytesIO(raw), sep="\t")
    frame.columns = [column.split(":")[0] for column in frame.columns]
    return frame


@cache
def cdnow_transactions(*, sample: bool = False) -> pd.DataFrame:
    """CDNOW purchases: `customer_id, date, quantity, amount`, one row per purchase line
    (not yet merged per day). `sample`: the 2,357-customer sample of the published papers'
    cohort instead of the whole master file."""
    member = f"lifetimes/datasets/CDNOW_{'sample' if sample else 'master'}.txt"
    raw = wheel_member(*CDNOW_WHEEL, member)
    frame = pd.read_csv(
        io.BytesIO(raw),
        sep=r"\s+",
        header=None,
        skiprows=0 if sample else 1,  # the master file has a header line
        names=(
            ["customer_id", "customer_index", "date", "quantity", "amount"]
            if sample
            else ["customer_id", "date", "quantity", "amount"]
        ),
    )
    frame["date"] = pd.to_datetime(frame["date"].astype(str), format="%Y%m%d")
    return frame[["customer_id", "date", "quantity", "amount"]]
