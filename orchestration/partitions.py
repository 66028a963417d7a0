"""Ingest-batch partitions.

One Dagster partition per ingest batch (the new files one scan found, capped by
SPEAKERLAKE_BATCH_MAX_FILES), never one per video: 153 K videos would be far past the
~40 K partitions where Dagster degrades. Which files a batch holds lives in the Delta
table ``batch_files``; per-video state lives in the stage tables.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")


def new_batch_id(now: datetime | None = None, salt: str = "") -> str:
    """Sortable, human-readable batch key, e.g. ``b20261125T221500Z-3fa1``."""
    import hashlib

    now = now or datetime.now(timezone.utc)
    suffix = hashlib.sha1(f"{now.isoformat()}|{salt}".encode()).hexdigest()[:4]
    return f"b{now:%Y%m%dT%H%M%S}Z-{suffix}"
