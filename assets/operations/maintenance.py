"""Lake maintenance: compact every table's small files, checkpoint its log and vacuum what no
recent version needs (retention: ``lake_vacuum_retention_hours`` in sql/thresholds.csv).

Per-video stages write one small file per batch and table, and every MERGE / predicate
overwrite adds more, so readers open ever more files; a checkpoint saves replaying the whole
commit log. Compaction rewrites the rows, never changes them.
"""

from __future__ import annotations

from orchestration import lake as lake_io
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

RETENTION = "lake_vacuum_retention_hours"


def maintain_lake(lake_uri: str, *, retention_hours: float | None = None) -> dict[str, dict[str, int]]:
    """`orchestration.lake.maintain` on every catalogue table: table -> files before / after / vacuumed."""
    hours = threshold(RETENTION) if retention_hours is None else retention_hours
    return {name: lake_io.maintain(name, lake_uri, retention_hours=hours) for name in TABLES}
