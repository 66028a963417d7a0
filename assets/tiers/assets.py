"""Dagster wiring of the quality tiers: ``clip_tiers`` (every clip's tier and reasons) and
``sft_subset`` (the SFT clips), both non-partitioned full recomputes of a dataset-wide
decision (the F3 clarity cut ranks the whole lake), and the blocking Great Expectations
contract on ``sft_subset``: a failing contract stops every asset downstream of it.

Re-cutting the tiers after a threshold edit is job ``retier`` (these two assets and the
branches built on them (assets/branches) and the dataset report that summarises them; no model
stage); the ``thresholds`` resource names the file, so an edited copy can be tried.
"""

import dagster as dg
import polars as pl

from assets.branches.branches import BRANCH_TABLES
from assets.report import REPORT_ASSET  # re-cut tiers change the report's numbers
from assets.tiers.tiers import clip_tiers as decide_tiers
from assets.tiers.tiers import reason_counts, sft_rows, tier_summary
from expectations.sft_contract import validate
from orchestration.checks import key_check_results, key_check_specs
from orchestration.metadata import asset_spec, markdown_table, materialization_metadata
from orchestration.resources import LakeResource, ThresholdsResource

GROUP = "tiers"
RETIER_JOB = "retier"
TIER_ASSETS = ("clip_tiers", "sft_subset")
# one tier decision at a time across runs: two batches finishing together would otherwise
# both overwrite the whole table (a commit conflict at best)
POOL = "tiers"


def _rule_table(counts: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(counts, max_rows=counts.height) if counts.height else "(none)")


@dg.multi_asset(
    name="clip_tiers",
    specs=[asset_spec("clip_tiers", deps=["clips", "clip_quality"], group_name=GROUP, kinds={"delta", "duckdb"})],
    check_specs=key_check_specs(["clip_tiers"]),
    pool=POOL,
)
def clip_tiers(context: dg.AssetExecutionContext, lake: LakeResource, thresholds: ThresholdsResource):
    """Every clip's tier from sql/tiers.sql over the whole lake."""
    tiers = decide_tiers(lake.duckdb_connection(thresholds.path))
    lake.write("clip_tiers", tiers)
    summary = tier_summary(tiers)
    context.log.info("tiers: %s", dict(zip(summary["tier"], summary["clips"])))
    yield dg.MaterializeResult(
        asset_key="clip_tiers",
        metadata={
            **materialization_metadata("clip_tiers", tiers.height, tiers.height),
            **{f"clips_{t}": int(n) for t, n in zip(summary["tier"], summary["clips"])},
            **{f"hours_{t}": dg.MetadataValue.float(float(h)) for t, h in zip(summary["tier"], summary["hours"])},
            "tiers": dg.MetadataValue.md(markdown_table(summary, max_rows=summary.height)),
            "reasons": _rule_table(reason_counts(tiers, "reasons")),
            "sft_missed_by_kept_clips": _rule_table(reason_counts(tiers.filter(pl.col("tier") != "rejected"), "sft_missed")),
            "thresholds_file": dg.MetadataValue.path(thresholds.path),
        },
    )
    yield from key_check_results("clip_tiers", tiers)


@dg.multi_asset(
    name="sft_subset",
    specs=[asset_spec("sft_subset", deps=["clip_tiers", "clips", "clip_quality"], group_name=GROUP, kinds={"delta", "duckdb"})],
    check_specs=key_check_specs(["sft_subset"]),
    pool=POOL,
)
def sft_subset(context: dg.AssetExecutionContext, lake: LakeResource, thresholds: ThresholdsResource):
    """The clips clip_tiers put in the SFT tier, with their clip and quality fields."""
    rows = sft_rows(lake.duckdb_connection(thresholds.path))
    lake.write("sft_subset", rows)
    yield dg.MaterializeResult(
        asset_key="sft_subset",
        metadata={
            **materialization_metadata("sft_subset", rows, rows.height),
            "hours": dg.MetadataValue.float(float(rows["duration"].sum() or 0.0) / 3600),
            "speakers": rows["speaker_id"].n_unique(),
        },
    )
    yield from key_check_results("sft_subset", rows)


@dg.asset_check(
    asset="sft_subset",
    name="sft_contract",
    blocking=True,
    description=(
        "Great Expectations contract of the SFT subset (expectations/sft_contract.py): columns, non-null keys, unique clip ids, "
        "3-14 s clips, person box inside the frame, every SFT threshold. Blocking: when it fails nothing downstream runs."
    ),
)
def sft_contract(lake: LakeResource, thresholds: ThresholdsResource) -> dg.AssetCheckResult:
    result = validate(lake.read("sft_subset"), thresholds.values())
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": result.rows,
            "expectations": result.evaluated,
            "failed_expectations": dg.MetadataValue.md(result.markdown()),
            # one entry per failed expectation with its unexpected row count, so the UI lists them
            **{f.expectation: (f.unexpected_count if f.unexpected_count is not None else dg.MetadataValue.text(f.detail or "failed")) for f in result.failures},
        },
    )


# Dataset-wide tables: each is one decision over the whole lake (F3's clarity cut ranks every
# clip, the test split draws from every speaker). They are recomputed by job ``retier`` once
# after new batches (``speakerlake run`` launches it after its batches; sensor
# ``refresh_dataset`` after batch runs launched elsewhere) and after a threshold edit, not
# inside each batch run: per batch that would read the whole lake (tens of seconds at 5 M
# clips) and grow the cost of a small batch with the size of the lake.
DATASET_ASSETS = (*TIER_ASSETS, *BRANCH_TABLES, REPORT_ASSET)
# what the dataset-wide tables are computed from (the per-batch stages write these last)
DATASET_INPUTS = ("clips", "clip_quality", "speaker_assignments", "bindings", "speaker_turns", "takedowns")

retier = dg.define_asset_job(
    RETIER_JOB,
    selection=dg.AssetSelection.assets(*DATASET_ASSETS),
    description=(
        "The dataset-wide tables: clip_tiers and sft_subset (sql/thresholds.csv), then the branches and the VidChatBench "
        "split built on them (and their checks), then the dataset report; no model stage. Runs after new batches and "
        "after a threshold edit."
    ),
)


def dataset_stale(lake_uri: str) -> bool:
    """True when an input of the dataset-wide tables (:data:`DATASET_INPUTS`) was written after
    ``clip_tiers``, or ``clip_tiers`` is missing while an input exists: e.g. a run that died
    between its last batch and the ``retier`` run. Compares Delta commit times only."""
    from orchestration import lake

    inputs = [t for t in (lake.last_commit_ms(n, lake_uri) for n in DATASET_INPUTS) if t is not None]
    if not inputs:
        return False
    tiers = lake.last_commit_ms("clip_tiers", lake_uri)
    return tiers is None or max(inputs) > tiers
