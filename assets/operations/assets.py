"""Dagster wiring of lake maintenance: asset ``lake_maintenance`` (compact, checkpoint, vacuum
every table), job ``maintain_lake`` that runs it alone, and a weekly schedule (off by default)."""

import dagster as dg

from assets.operations.maintenance import RETENTION, maintain_lake
from orchestration.resources import LakeResource
from orchestration.thresholds import threshold

MAINTENANCE_JOB = "maintain_lake"


@dg.asset(
    name="lake_maintenance",
    group_name="operations",
    kinds={"delta"},
    description=(
        "Compacts every Delta table's small files, writes a checkpoint and vacuums files no version younger than "
        "lake_vacuum_retention_hours needs; metadata: data files per table before and after."
    ),
)
def lake_maintenance(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    counts = maintain_lake(lake.uri)
    rows = [f"| {t} | {c['files_before']} | {c['files_after']} | {c['files_vacuumed']} |" for t, c in counts.items() if c["files_before"]]
    context.log.info("maintained %d tables", len(rows))
    return dg.MaterializeResult(
        metadata={
            "retention_hours": threshold(RETENTION),
            "files_before": sum(c["files_before"] for c in counts.values()),
            "files_after": sum(c["files_after"] for c in counts.values()),
            "files_vacuumed": sum(c["files_vacuumed"] for c in counts.values()),
            "per_table": dg.MetadataValue.md("| table | files before | files after | vacuumed |\n|---|---|---|---|\n" + "\n".join(rows)),
            **{f"files_{t}": dg.MetadataValue.json(c) for t, c in counts.items() if c["files_before"]},
        }
    )


maintain_lake_job = dg.define_asset_job(
    MAINTENANCE_JOB,
    selection=dg.AssetSelection.assets("lake_maintenance"),
    description="Compact, checkpoint and vacuum every table of the lake (also: speakerlake maintain).",
)
