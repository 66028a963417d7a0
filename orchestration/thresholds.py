"""Every threshold lives in one data file, sql/thresholds.csv, read by both the SQL
(tiers/branches) and the Python stages, so re-tiering or re-tuning is editing data.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

THRESHOLDS_CSV = Path(__file__).resolve().parent.parent / "sql" / "thresholds.csv"


@lru_cache(maxsize=1)
def _load(path: str = str(THRESHOLDS_CSV)) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["name"]: row["value"] for row in csv.DictReader(f)}


def threshold(name: str) -> float:
    try:
        return float(_load()[name])
    except KeyError:
        raise KeyError(f"threshold {name!r} is not in {THRESHOLDS_CSV}") from None


def setting(name: str) -> str:
    """A non-numeric entry of the thresholds file (e.g. a detector name)."""
    return _load()[name]
