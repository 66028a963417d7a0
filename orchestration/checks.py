"""Asset checks generated from the table catalogue, plus the per-stage soundness checks.

Every table gets two checks, derived from its declared key: ``<table>_key_unique`` and
``<table>_key_not_null``. They run inside the step that wrote the table (no extra step
process per check) over the rows that step covers: the batch's videos for per-video
tables, the batch for ``videos``/``rejects``, the whole (small) table for global ones.
Each failing check's metadata names the offending rows: a count and the first few keys.

Stage checks say whether a batch is sound (share of rejected inputs, of videos a stage
failed on, of speaking seconds bound to a face); their limits are rows of
``sql/thresholds.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import polars as pl

from orchestration.tables import TABLES
from orchestration.thresholds import threshold

FIRST_KEYS = 5


def key_check_names(table: str) -> tuple[str, str]:
    return f"{table}_key_unique", f"{table}_key_not_null"


def key_check_specs(tables: Iterable[str], **kw) -> list[dg.AssetCheckSpec]:
    specs = []
    for t in tables:
        unique, not_null = key_check_names(t)
        key = ", ".join(TABLES[t].key)
        specs.append(dg.AssetCheckSpec(unique, asset=t, description=f"no two rows share the key ({key})", **kw))
        specs.append(dg.AssetCheckSpec(not_null, asset=t, description=f"no key column ({key}) is null", **kw))
    return specs


def _keys_text(df: pl.DataFrame, key: tuple[str, ...]) -> str:
    return "; ".join("/".join(str(v) for v in r) for r in df.select(list(key)).head(FIRST_KEYS).iter_rows())


def key_check_results(table: str, rows: pl.DataFrame) -> list[dg.AssetCheckResult]:
    """Evaluate the generated key checks of ``table`` on ``rows`` (the rows a run covers)."""
    key = TABLES[table].key
    unique, not_null = key_check_names(table)
    dup = rows.group_by(list(key)).len().filter(pl.col("len") > 1)
    nulls = rows.filter(pl.any_horizontal([pl.col(k).is_null() for k in key]))
    return [
        dg.AssetCheckResult(
            asset_key=table,
            check_name=unique,
            passed=dup.is_empty(),
            metadata={"duplicated_keys": dup.height, "first_keys": _keys_text(dup, key), "rows_checked": rows.height},
        ),
        dg.AssetCheckResult(
            asset_key=table,
            check_name=not_null,
            passed=nulls.is_empty(),
            metadata={"rows_with_null_key": nulls.height, "first_keys": _keys_text(nulls, key), "rows_checked": rows.height},
        ),
    ]


# ---------------------------------------------------------------- stage soundness
def share_check(
    asset: str,
    name: str,
    *,
    numerator: float,
    denominator: float,
    limit_name: str,
    at_most: bool,
    offenders: list[str] | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """A share (numerator / denominator) against a limit from the thresholds file."""
    limit = threshold(limit_name)
    share = numerator / denominator if denominator else 0.0
    passed = share <= limit if at_most else share >= limit or denominator == 0
    offenders = offenders or []
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=passed,
        severity=severity,
        metadata={
            "share": round(share, 4),
            "limit": limit,
            "limit_setting": limit_name,
            "count": len(offenders),
            "first_offenders": ", ".join(offenders[:FIRST_KEYS]),
        },
    )


def stage_check_spec(asset: str, name: str, description: str, **kw) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, **kw)

