"""Dagster wiring of the binding stage: lip-sync scores, voice->face bindings, identities
within each video and listening segments, per ingest batch; then the one serialized,
non-partitioned asset that gives dataset-wide speaker ids."""

from pathlib import Path

import dagster as dg

import numpy as np
import polars as pl

from assets.audio.decode import decode_audio
from assets.binding.pipeline import analyze_binding
from assets.binding.speaker_ids import SpeakerIdUpdate, members_of, touched_speaker_ids, update_speaker_ids
from assets.binding.sync import load_sync_models
from orchestration import lake as lake_io
from orchestration.batch import SPEAKER_IDS, status_rows, videos_needing_ids
from orchestration.checks import key_check_results, key_check_specs, share_check, stage_check_spec
from orchestration.metadata import asset_spec, materialization_metadata
from orchestration.resources import LakeResource, ModelsResource
from orchestration.stage_assets import per_video_stage
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

UPSTREAM = ("face_tracks", "shots", "speaker_turns", "video_speakers", "transcripts")
PER_VIDEO = ("sync_scores", "bindings", "track_identities", "identity_units", "listening_segments")


def setup_binding(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    sync_models = load_sync_models(models.sync_backend, models.syncnet_weights)
    ids = videos["video_id"].to_list()
    upstream = {t: lake_io.read(t, lake_uri, video_ids=ids) for t in UPSTREAM}

    def analyze(video: dict, media_path: Path):
        vid = video["video_id"]
        tables = {t: df.filter(pl.col("video_id") == vid) for t, df in upstream.items()}
        audio = decode_audio(media_path)
        audio = audio if isinstance(audio, np.ndarray) else None  # NoAudio: no voices to bind
        return analyze_binding(vid, audio, tables, sync_models=sync_models, media_path=media_path, fps=video["fps"] or None)

    return analyze


def bound_share_check():
    """Share of the main speakers' speaking seconds whose voice is bound to a face (a warning:
    off-screen hosts are real, but a batch far below the usual share means sync is off)."""
    name = "bindings_bound_share"
    spec = stage_check_spec("bindings", name, "share of the main speakers' speaking seconds bound to a face is at least check_min_bound_share", blocking=False)

    def evaluate(run, lake_uri: str, ids: list[str]) -> list[dg.AssetCheckResult]:
        main = lake_io.read("video_speakers", lake_uri, video_ids=ids).filter(pl.col("is_main"))
        bound = lake_io.read("bindings", lake_uri, video_ids=ids).filter(pl.col("track_id").is_not_null()).select("video_id", "speaker_local", bound=pl.lit(True))
        rows = main.join(bound, on=["video_id", "speaker_local"], how="left").with_columns(pl.col("bound").fill_null(False))
        unbound = rows.filter(~pl.col("bound"))
        offenders = [f"{v}/{s}" for v, s in unbound.select("video_id", "speaker_local").iter_rows()]
        return [
            share_check(
                "bindings", name, numerator=float(rows.filter("bound")["speech_seconds"].sum()), denominator=float(rows["speech_seconds"].sum()),
                limit_name="check_min_bound_share", at_most=False, offenders=offenders, severity=dg.AssetCheckSeverity.WARN,
            )
        ]

    return spec, evaluate


binding = per_video_stage(
    "binding",
    PER_VIDEO,
    setup_binding,
    deps=UPSTREAM,
    checks=[bound_share_check()],
    kinds={"sync_scores": {"numpy"}, "bindings": {"scipy"}, "track_identities": {"insightface"}, "identity_units": {"insightface"}, "listening_segments": {"numpy"}},
)


# ---------------------------------------------------------------- dataset-wide speaker ids
SPEAKER_IDS_STAGE = SPEAKER_IDS


def cluster_members(lake: LakeResource, speaker_ids: list[str]) -> pl.DataFrame:
    """The member units (assignments joined with their identity_units) of ``speaker_ids``."""
    assigned = lake.scan("speaker_assignments").filter(pl.col("speaker_id").is_in(speaker_ids)).collect()
    units = lake.read("identity_units", video_ids=assigned["video_id"].unique().to_list())
    return members_of(assigned, units, speaker_ids)


def compute_speaker_update(lake: LakeResource, video_ids: list[str], threshold: float) -> SpeakerIdUpdate:
    """The update for ``video_ids``, reading only the centroids, those videos' units and
    assignments, and the members of the clusters they touch. A cluster that the update
    brings within reach of one it did not load is loaded too and the update redone."""
    speakers = lake.read("speakers")
    new_units = lake.read("identity_units", video_ids=video_ids)
    gone = sorted(set(video_ids) - set(new_units["video_id"].to_list()))  # reprocessed into no unit at all
    old = lake.read("speaker_assignments", video_ids=video_ids)
    touched = set(touched_speaker_ids(new_units, speakers, old, threshold=threshold))
    while True:
        members = cluster_members(lake, sorted(touched))
        if gone:
            members = members.filter(~pl.col("video_id").is_in(gone))
        update = update_speaker_ids(new_units, speakers, members, threshold=threshold)
        near = set(update.near_untouched["untouched_speaker_id"].to_list()) - touched
        if not near:
            return update
        touched |= near


def write_speaker_update(lake: LakeResource, update: SpeakerIdUpdate) -> None:
    """Write an update as `apply_update` defines it: delete the removed speakers and stale
    assignment keys, then MERGE the new assignments and speakers."""
    if update.removed:
        lake.delete_where("speakers", f"speaker_id IN ({lake_io.sql_list(update.removed)})")
    stale = update.deleted_assignments
    if stale.height:
        lake.delete_where("speaker_assignments", " OR ".join(f"(video_id = '{v}' AND unit = {lake_io.sql_list([u])})" for v, u in stale.iter_rows()))
    lake.write("speaker_assignments", update.assignments)
    lake.write("speakers", update.speakers)


@dg.multi_asset(
    name="speaker_ids",
    specs=[
        asset_spec("speaker_assignments", deps=["identity_units"], group_name="speakers", kinds={"delta", "numpy"}),
        asset_spec("speakers", deps=["identity_units"], group_name="speakers", kinds={"delta", "numpy"}),
    ],
    check_specs=key_check_specs(("speaker_assignments", "speakers")),
    # one at a time across every run of the instance: two batches finishing together must
    # not each found a cluster for the same person
    pool="speaker_ids",
)
def speaker_ids(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource):
    """Dataset-wide speaker ids for every video whose binding changed since its ids were
    given, whichever batch or run it came from (see assets.binding.speaker_ids)."""
    # two stages' status rows (a few small columns per video) decide what is new; the ids
    # themselves read only centroids and the touched clusters' members
    status = lake.scan("stage_status").filter(pl.col("stage").is_in(["binding", SPEAKER_IDS_STAGE])).select("stage", "video_id", "batch_id", "status", "attempts", "updated_at").collect()
    todo = videos_needing_ids(status)
    if not todo:
        context.log.info("no video's binding changed since its speaker ids were given")
        for t in ("speaker_assignments", "speakers"):
            yield dg.MaterializeResult(asset_key=t, metadata={**materialization_metadata(t, 0, lake.count(t)), "videos": 0})
            yield from key_check_results(t, TABLES[t].empty())
        return
    update = compute_speaker_update(lake, todo, threshold("speaker_id_cos"))
    write_speaker_update(lake, update)
    batches = dict(status.filter(pl.col("stage") == "binding").select("video_id", "batch_id").iter_rows())
    done = {v: {"status": "ok"} for v in todo}
    for (batch,), ids in pl.DataFrame({"video_id": todo, "batch_id": [batches[v] for v in todo]}, schema={"video_id": pl.String, "batch_id": pl.String}).group_by(["batch_id"]):
        previous = status.filter((pl.col("stage") == SPEAKER_IDS_STAGE) & pl.col("video_id").is_in(ids["video_id"].to_list()))
        lake.write("stage_status", status_rows(batch, SPEAKER_IDS_STAGE, models.fingerprint(), {v: done[v] for v in ids["video_id"]}, previous))
    # a takedown recorded after the reads above is undone by these writes: apply it again
    from assets.operations.execute import reapply_takedowns  # here: it imports this module

    if again := reapply_takedowns(lake, video_ids=todo, speaker_tables=True):
        context.log.warning(f"speaker_ids: {', '.join(again)} recorded while this step ran; the rows it wrote back were removed again")
    common = {"videos": len(todo), "unassigned_units": update.unassigned.height, "speakers_removed": len(update.removed), **({"takedowns_reapplied": ", ".join(again)} if again else {})}
    yield dg.MaterializeResult(asset_key="speaker_assignments", metadata={**materialization_metadata("speaker_assignments", update.assignments, lake.count("speaker_assignments")), **common})
    yield dg.MaterializeResult(asset_key="speakers", metadata={**materialization_metadata("speakers", update.speakers, lake.count("speakers")), **common})
    yield from key_check_results("speaker_assignments", lake.scan("speaker_assignments").filter(pl.col("video_id").is_in(todo)).select("video_id", "unit").collect())
    yield from key_check_results("speakers", lake.scan("speakers").select("speaker_id").collect())
