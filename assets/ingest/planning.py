"""Plan ingest batches: new source files (not planned before) split into capped batches.

The plan is persisted in the Delta table ``batch_files`` *before* a partition is added,
so a crash between the two loses nothing: the sensor re-adds any planned batch that has
no Dagster partition yet.
"""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from assets.ingest.sources import SourceFile, discover
from orchestration import lake
from orchestration.partitions import new_batch_id


def new_files(source: str, lake_uri: str | None = None, *, settle_seconds: float = 0.0) -> list[SourceFile]:
    """Files the source holds that no earlier batch planned (same uri + fingerprint)."""
    planned = lake.read("batch_files", lake_uri).select("source_uri", "fingerprint")
    seen = set(zip(planned["source_uri"].to_list(), planned["fingerprint"].to_list()))
    return [f for f in discover(source, settle_seconds=settle_seconds) if (f.uri, f.fingerprint) not in seen]


def plan_batches(
    source: str, max_files: int, lake_uri: str | None = None, now: datetime | None = None, *, settle_seconds: float = 0.0
) -> list[str]:
    """Record new files as batches of at most ``max_files``; returns the new batch ids."""
    files = new_files(source, lake_uri, settle_seconds=settle_seconds)
    now = now or datetime.now(timezone.utc)
    batch_ids, rows = [], []
    for i in range(0, len(files), max(1, max_files)):
        chunk = files[i : i + max_files]
        bid = new_batch_id(now, salt=f"{source}|{i}|{chunk[0].uri}")
        batch_ids.append(bid)
        rows += [
            {
                "batch_id": bid,
                "source_uri": f.uri,
                "fingerprint": f.fingerprint,
                "size_bytes": f.size_bytes,
                "problem": f.problem,
                "discovered_at": now,
            }
            for f in chunk
        ]
    if rows:
        lake.write("batch_files", pl.DataFrame(rows), lake=lake_uri)
    return batch_ids


def planned_batches(lake_uri: str | None = None) -> list[str]:
    return sorted(lake.read("batch_files", lake_uri)["batch_id"].unique().to_list())


def batch_plan(batch_id: str, lake_uri: str | None = None) -> pl.DataFrame:
    return lake.read("batch_files", lake_uri).filter(pl.col("batch_id") == batch_id).sort("source_uri")
