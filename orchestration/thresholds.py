"""Every threshold lives in one data file, sql/thresholds.csv, read by both the SQL
(tiers/branches) and the Python stages, so re-tiering or re-tuning is editing data.

Stages read the shipped file through :func:`threshold` / :func:`setting`; the dataset-wide
tier decision reads the file the ``thresholds`` resource names
(:class:`orchestration.resources.ThresholdsResource`), so a copy can be tried without
touching the shipped one.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

THRESHOLDS_CSV = Path(__file__).resolve().parent.parent / "sql" / "thresholds.csv"


def load(path: str | Path = THRESHOLDS_CSV) -> dict[str, str]:
    """name -> value (as written) of every row of a thresholds file."""
    with open(path, newline="") as f:
        return {row["name"]: row["value"] for row in csv.DictReader(f)}


@lru_cache(maxsize=1)
def _shipped() -> dict[str, str]:
    return load(THRESHOLDS_CSV)


def threshold(name: str) -> float:
    try:
        return float(_shipped()[name])
    except KeyError:
        raise KeyError(f"threshold {name!r} is not in {THRESHOLDS_CSV}") from None


def setting(name: str) -> str:
    """A non-numeric entry of the thresholds file (e.g. a detector name)."""
    return _shipped()[name]
