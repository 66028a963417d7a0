"""Dagster wiring of the branches: one non-partitioned multi-asset writing ``single``,
``dialogue_pairs``, ``listening_pairs``, ``multi_turn_context``, ``multi_turn_chains`` and
``vidchat_testset`` together, a full recompute of a dataset-wide decision from the tiers
(the test split's speakers are drawn over the whole lake and removed from every training
branch, so the six tables must come from one draw and be written together).

The branches sit downstream of ``sft_subset``, whose Great Expectations contract is blocking:
a broken SFT contract stops them. They are in the ``retier`` job, so re-cutting the tiers
re-cuts the branches.
"""

import dagster as dg

import polars as pl

from assets.branches.branches import BRANCH_TABLES, TestSplit, branch_rows, branch_stats, clip_durations, draw_split
from orchestration.checks import key_check_results, key_check_specs
from orchestration.metadata import asset_spec, markdown_table, materialization_metadata
from orchestration.resources import LakeResource, ThresholdsResource

GROUP = "branches"
# the tiers' pool: one dataset-wide decision at a time across runs (two batches finishing
# together would otherwise both overwrite the tables, and the branches read clip_tiers)
POOL = "tiers"
UPSTREAM = ["clip_tiers", "sft_subset", "clips", "speaker_turns", "video_speakers", "bindings", "speaker_assignments"]


def split_metadata(split: TestSplit) -> dict:
    return {
        "test_pairs": split.pairs,
        "test_pairs_requested": split.requested,
        "test_split_capped": dg.MetadataValue.bool(split.capped),
        "test_speakers": len(split.speakers),
        "test_seed": split.seed,
        "candidate_pairs": split.candidate_pairs,
        "train_loss_share": dg.MetadataValue.float(round(split.train_loss, 4)),
        "train_loss_limit": dg.MetadataValue.float(split.max_train_loss),
    }


@dg.multi_asset(
    name="branches",
    specs=[asset_spec(t, deps=UPSTREAM, group_name=GROUP, kinds={"delta", "duckdb"}) for t in BRANCH_TABLES],
    check_specs=key_check_specs(BRANCH_TABLES),
    pool=POOL,
)
def branches(context: dg.AssetExecutionContext, lake: LakeResource, thresholds: ThresholdsResource):
    """The four branches and the VidChatBench test split from sql/branches.sql over the whole lake."""
    con = lake.duckdb_connection(thresholds.path)
    split = draw_split(con)
    if split.capped:
        context.log.warning(
            "VidChatBench: %d test pairs of %d requested (%d candidate pairs; test speakers hold %.1f%% of the kept talking clips, limit %.0f%%)",
            split.pairs, split.requested, split.candidate_pairs, 100 * split.train_loss, 100 * split.max_train_loss,
        )
    durations = clip_durations(con)
    # one table at a time: only one output is ever held in memory
    results, stats = [], []
    for name in BRANCH_TABLES:
        rows = branch_rows(con, name)
        lake.write(name, rows)
        stats.append(branch_stats(name, rows, durations))
        results.append((name, materialization_metadata(name, rows, rows.height), key_check_results(name, rows)))
        del rows
    summary = pl.DataFrame(stats)
    context.log.info("branches: %s", dict(zip(summary["branch"], summary["rows"])))
    table_md = dg.MetadataValue.md(markdown_table(summary, max_rows=summary.height))
    for (name, meta, checks), st in zip(results, stats):
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                **meta,
                "hours": dg.MetadataValue.float(round(st["hours"], 4)),
                "speaker_ids": st["speaker_ids"],
                "branches": table_md,
                "thresholds_file": dg.MetadataValue.path(thresholds.path),
                **(split_metadata(split) if name == "vidchat_testset" else {"test_speakers_excluded": len(split.speakers)}),
            },
        )
        yield from checks
