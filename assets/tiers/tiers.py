"""Quality tiers: the paper's filters F1-F6 and the SFT cut, decided in DuckDB SQL
(sql/tiers.sql) over the lake's views, so re-cutting the tiers is editing sql/thresholds.csv.

Functions take a DuckDB connection that already has the lake's views
(:func:`orchestration.lake.duckdb_connection`) and return tables; the Dagster wiring is in
``assets/tiers/assets.py``.
"""

from __future__ import annotations

import duckdb
import polars as pl

from orchestration.lake import SQL_DIR, run_sql_with_limits

TIERS_SQL = SQL_DIR / "tiers.sql"
TIERS = ("rejected", "pretrain", "sft")


def prepare(con: duckdb.DuckDBPyConnection) -> dict:
    """Create the tier views (tier_limits, clip_tier_decisions, sft_rows) on ``con`` and return
    the limits they use; refuses a thresholds file that lacks one."""
    return run_sql_with_limits(con, TIERS_SQL, "tier_limits")


def clip_tiers(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every clip's tier, failed filter rules and missed SFT rules (sql/tiers.sql)."""
    prepare(con)
    # no ORDER BY: a Delta table has no row order, and sorting 5 M rows would double the cost
    return pl.from_arrow(con.execute("SELECT * FROM clip_tier_decisions").to_arrow_table())


def sft_rows(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The SFT subset: the materialized clip_tiers rows with tier sft, with clip and quality fields."""
    prepare(con)
    return pl.from_arrow(con.execute("SELECT * FROM sft_rows ORDER BY video_id, clip_id").to_arrow_table())


def tier_summary(tiers: pl.DataFrame) -> pl.DataFrame:
    """Clips and hours per tier (every tier listed, also when empty)."""
    counts = tiers.group_by("tier").agg(pl.len().alias("clips"), (pl.col("duration").sum() / 3600).alias("hours"))
    return (
        pl.DataFrame({"tier": list(TIERS)})
        .join(counts, on="tier", how="left")
        .with_columns(pl.col("clips").fill_null(0).cast(pl.Int64), pl.col("hours").fill_null(0.0))
    )


def reason_counts(tiers: pl.DataFrame, column: str = "reasons") -> pl.DataFrame:
    """Clips per rule in ``column`` (a clip counts once for each rule it fails), most frequent first."""
    return (
        tiers.select(pl.col(column).alias("rule")).explode("rule").drop_nulls()
        .group_by("rule").len(name="clips").sort(["clips", "rule"], descending=[True, False])
    )
