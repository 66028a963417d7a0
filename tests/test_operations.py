"""Operations (issue 21): takedown, time travel, lake maintenance.

Takedowns run on copies of the session's ``clean_lake`` (the whole pipeline on conv_a + bikes),
one copy per takedown, with a release exported from it first; the S3 test uploads that copy to
the moto server. Maintenance runs on a table written in 20 small appends.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.binding.assets import compute_speaker_update, write_speaker_update
from assets.branches.branches import build_branches
from assets.ingest import assets as ingest_assets
from assets.ingest.planning import plan_batches
from assets.operations import assets as operations_assets
from assets.operations.execute import take_down
from assets.release.assets import export_lake_release
from assets.tiers.tiers import clip_tiers
from orchestration import lake as lake_io
from orchestration.cli import main, run_sql
from orchestration.resources import LakeResource, default_resources
from orchestration.tables import TABLES
from orchestration.thresholds import threshold
from tests.conftest import _use_s3, materialize_batch


# ---------------------------------------------------------------- helpers
def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def rows_naming(df: pl.DataFrame, needle: str) -> int:
    """Rows of ``df`` with any string (also inside lists and structs) containing ``needle``."""
    return sum(any(needle in s for s in _strings(list(r))) for r in df.iter_rows())


def lake_rows_naming(uri: str, needle: str) -> dict[str, int]:
    """Per table (the takedowns record excluded), rows whose strings contain ``needle``."""
    out = {t: rows_naming(lake_io.read(t, uri), needle) for t in TABLES if t != "takedowns"}
    return {t: n for t, n in out.items() if n}


def parquet_files_naming(uri: str, needle: str) -> tuple[int, list[str]]:
    """(data files scanned, those holding a string containing ``needle``) over every parquet
    data file left under ``<lake>/tables`` (every version's, not only the current one's), but
    the takedowns record's: it keeps the id on purpose, to block it."""
    if lake_io.is_s3(uri):
        bucket, prefix = lake_io.split_s3(uri)
        s3 = lake_io.s3_client()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/tables/") for o in page.get("Contents", [])]
        files = {k: lambda k=k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys if k.endswith(".parquet") and "/_delta_log/" not in k}
    else:
        files = {str(p): p.read_bytes for p in Path(uri, "tables").rglob("*.parquet") if "_delta_log" not in p.parts}
    files = {k: v for k, v in files.items() if "/tables/takedowns/" not in k}
    hits = []
    for name, read in files.items():
        table = pq.read_table(pa.BufferReader(read()))
        if rows_naming(pl.from_arrow(table), needle):
            hits.append(name)
    return len(files), hits


def _copy_lake(src: str, dest: Path) -> str:
    shutil.copytree(src, dest)
    return str(dest)


def _release(uri: str) -> str:
    target = f"{uri}/release"
    export_lake_release(LakeResource(location=uri), target, media=True, shard_samples=4)
    return target


def _release_files(target: str) -> dict[str, bytes]:
    return {str(p.relative_to(target)): p.read_bytes() for p in Path(target).rglob("*") if p.is_file()}


def _conv_a(uri: str) -> str:
    videos = lake_io.read("videos", uri)
    return videos.filter(pl.col("source_uri").str.ends_with("conv_a.mp4"))["video_id"][0]


# ---------------------------------------------------------------- video takedown, time travel, vacuum
def test_video_takedown_removes_every_derived_row_and_file_blocks_reingest_and_vacuum_leaves_no_data_file(clean_lake, inbox, tmp_path, monkeypatch):
    uri = _copy_lake(clean_lake, tmp_path / "lake")
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    vid = _conv_a(uri)
    target = _release(uri)
    before = lake_rows_naming(uri, vid)
    released = json.loads(Path(target, "manifest.json").read_text())["clips"]
    assert {"videos", "clips", "clip_tiers", "face_tracks", "speaker_turns", "stage_status"} <= set(before) and released
    assert any(f.startswith("clips/") for files in released.values() for f in files)  # media exported too
    versions = {t: DeltaTable(lake_io.table_uri(t, uri)).version() for t in ("clips", "videos")}
    just_before = datetime.now(timezone.utc)

    assert main(["takedown", "--video", vid, "--reason", "creator request", "--lake", uri]) == 0

    assert lake_rows_naming(uri, vid) == {}  # clip ids embed the video id: no row anywhere names it
    assert not list(Path(uri, "raw", vid[:2]).glob(f"{vid}*"))
    files = _release_files(target)
    assert not any(vid in name for name in files), "a clip file of the video is left in the release"
    assert all(vid.encode() not in data for name, data in files.items() if name.endswith(".json"))  # lists, manifest, testset
    assert not any(f"merged_anno/{c}.json" in files for c in released)
    record = lake_io.read("takedowns", uri).row(0, named=True)
    assert (record["kind"], record["target_id"], record["reason"]) == ("video", vid, "creator request")
    assert record["sha256"].startswith(vid) and record["rows_removed"] >= sum(before.values()) and record["vacuumed_at"] is None

    # time travel before the vacuum: the removed rows are in the earlier versions, not the current one
    q = f"SELECT count(*) AS n FROM clips WHERE video_id = '{vid}'"
    assert run_sql(q, uri)["n"][0] == 0
    assert run_sql(q, uri, as_of=versions["clips"])["n"][0] == before["clips"] > 0
    assert run_sql(q, uri, as_of=just_before)["n"][0] == before["clips"]
    assert main(["sql", f"SELECT count(*) AS n FROM videos WHERE video_id = '{vid}'", "--as-of", just_before.isoformat(), "--format", "csv", "--lake", uri]) == 0

    # the same takedown again (as after a crash part-way) finishes from its record: nothing left to remove
    again = take_down(LakeResource(location=uri), "video", vid, reason="creator request")
    assert sum(again.rows_removed.values()) == 0 and again.files_removed == []

    # before the vacuum old data files still hold the video; after it none does
    scanned, holding = parquet_files_naming(uri, vid)
    assert holding, "the earlier versions' files should still hold the removed rows before the vacuum"
    assert main(["takedown", "--vacuum", "--lake", uri]) == 0
    scanned, holding = parquet_files_naming(uri, vid)
    assert scanned == sum(lake_io.data_files(t, uri) for t in TABLES if t != "takedowns") and holding == []  # only live files are left
    assert lake_io.read("takedowns", uri)["vacuumed_at"].is_not_null().all()
    with pytest.raises(Exception):
        run_sql(q, uri, as_of=versions["clips"])  # the old version's files are gone

    # the same bytes under another name, in a later batch: a taken_down reject, nothing ingested
    src = tmp_path / "again"
    src.mkdir()
    shutil.copyfile(inbox / "conv_a.mp4", src / "reupload.mp4")
    [batch] = plan_batches(str(src), max_files=10, lake_uri=uri)
    assert materialize_batch([ingest_assets.ingest], uri, batch).success
    reject = lake_io.read("rejects", uri).filter(pl.col("batch_id") == batch)
    assert reject.select("video_id", "reason").rows() == [(vid, "taken_down")]
    assert lake_io.read("videos", uri).filter(pl.col("video_id") == vid).is_empty()
    assert not list(Path(uri, "raw", vid[:2]).glob(f"{vid}*"))


# ---------------------------------------------------------------- a takedown while a step runs
def test_a_video_taken_down_while_its_stage_runs_is_removed_again_after_the_stage_writes(clean_lake, tmp_path, monkeypatch):
    """The binding step reads the video, the takedown lands while it works, then the step
    writes the video's rows back: the step applies the takedown again after its writes."""
    from assets.binding import assets as binding_assets

    uri = _copy_lake(clean_lake, tmp_path / "lake")
    vid = _conv_a(uri)
    batch = lake_io.read("videos", uri, video_ids=[vid])["batch_id"][0]
    analyze = binding_assets.analyze_binding

    def taken_down_midway(video_id, *args, **kwargs):
        out = analyze(video_id, *args, **kwargs)
        if video_id == vid:
            take_down(LakeResource(location=uri), "video", vid, reason="during the step", releases=[])
            assert lake_rows_naming(uri, vid) == {}
        return out

    monkeypatch.setattr(binding_assets, "analyze_binding", taken_down_midway)
    result = materialize_batch([binding_assets.binding], uri, batch, {"ops": {"binding": {"config": {"video_ids": [vid]}}}})

    assert result.success
    assert lake_rows_naming(uri, vid) == {}  # bindings, sync scores, its status row: none came back
    meta = result.asset_materializations_for_node("binding")[0].metadata
    assert meta["takedowns_reapplied"].value == f"video:{vid}"


def test_a_speaker_taken_down_while_speaker_ids_runs_is_not_written_back(clean_lake, tmp_path, monkeypatch):
    """speaker_ids computes its update (holding the speaker), the speaker is taken down, then
    the update's MERGE writes the speaker and its assignments back: applied again after it."""
    from assets.binding import assets as binding_assets

    uri = _copy_lake(clean_lake, tmp_path / "lake")
    vid = _conv_a(uri)
    spk = lake_io.read("speaker_assignments", uri, video_ids=[vid])["speaker_id"].drop_nulls()[0]
    # the video's binding is newer than its ids: speaker_ids has it to do
    lake_io.delete_where("stage_status", f"stage = 'speaker_ids' AND video_id = '{vid}'", uri)
    compute = binding_assets.compute_speaker_update

    def taken_down_midway(lake, video_ids, threshold):
        update = compute(lake, video_ids, threshold)
        assert spk in update.speakers["speaker_id"].to_list()
        take_down(lake, "speaker", spk, reason="during the step", releases=[])
        return update

    monkeypatch.setattr(binding_assets, "compute_speaker_update", taken_down_midway)
    result = materialize_batch([binding_assets.speaker_ids], uri)

    assert result.success
    assert lake_rows_naming(uri, spk) == {}
    meta = result.asset_materializations_for_node("speaker_ids")[0].metadata
    assert meta["takedowns_reapplied"].value == f"speaker:{spk}"
    assert not lake_io.read("speaker_assignments", uri, video_ids=[vid]).is_empty()  # the other person keeps an id


# ---------------------------------------------------------------- speaker takedown and face blocking
def _later_video_of(units: pl.DataFrame, clips: pl.DataFrame, quality: pl.DataFrame, new_vid: str) -> dict[str, pl.DataFrame]:
    """The same identity units (their real ArcFace embeddings) and clips in a new video: a
    later upload of the same people."""
    old = units["video_id"][0]
    rename = pl.col("clip_id").str.replace(old, new_vid, literal=True)
    return {
        "identity_units": units.with_columns(pl.lit(new_vid).alias("video_id")),
        "clips": clips.with_columns(pl.lit(new_vid).alias("video_id"), rename),
        "clip_quality": quality.with_columns(pl.lit(new_vid).alias("video_id"), rename),
    }


def test_speaker_takedown_removes_the_speaker_and_a_later_video_of_the_same_face_is_rejected(clean_lake, tmp_path):
    uri = _copy_lake(clean_lake, tmp_path / "lake")
    lake = LakeResource(location=uri)
    vid = _conv_a(uri)
    clips = lake_io.read("clips", uri, video_ids=[vid])
    assignments = lake_io.read("speaker_assignments", uri, video_ids=[vid])
    spk = clips.group_by("speaker_id").len().sort("len", descending=True)["speaker_id"][0]
    units_before = lake_io.read("identity_units", uri, video_ids=[vid])
    quality_before = lake_io.read("clip_quality", uri, video_ids=[vid])
    tiers_before = lake_io.read("clip_tiers", uri, video_ids=[vid])
    gone_units = assignments.filter(pl.col("speaker_id") == spk)["unit"].to_list()
    kept_units = sorted(set(units_before["unit"].to_list()) - set(gone_units))
    spk_clips = clips.filter(pl.col("identity_unit").is_in(gone_units))["clip_id"].to_list()
    assert spk_clips and kept_units  # conv_a: two people, one of them with clips

    report = take_down(lake, "speaker", spk, reason="face removal")

    assert lake_rows_naming(uri, spk) == {}
    for clip_id in spk_clips:
        assert lake_rows_naming(uri, clip_id) == {}
    for table, col in (("identity_units", "unit"), ("video_speakers", "speaker_local"), ("speaker_turns", "speaker_local"), ("bindings", "speaker_local")):
        left = lake_io.read(table, uri, video_ids=[vid])[col].to_list()
        assert not set(gone_units) & set(left), table
    assert report.rows_removed["face_tracks"] > 0 and report.rows_removed["clips"] == len(spk_clips)
    assert sorted(lake_io.read("identity_units", uri, video_ids=[vid])["unit"].to_list()) == kept_units  # the other person stays
    record = lake_io.read("takedowns", uri).row(0, named=True)
    assert record["kind"] == "speaker" and len(record["embedding"]) == 512

    # a later video of both people: the taken-down face gets a new speaker id, is blocked, its
    # clips are rejected (taken_down) and stay out of every branch; the other person is not blocked
    later = _later_video_of(units_before, clips, quality_before, "later0000000face")
    for table, df in later.items():
        lake.write(table, df, video_ids=["later0000000face"])
    update = compute_speaker_update(lake, ["later0000000face"], threshold("speaker_id_cos"))
    write_speaker_update(lake, update)
    assert len(update.assignments.filter(pl.col("video_id") == "later0000000face")) == len(units_before)  # every unit has an id again
    con = lake.duckdb_connection()
    blocked = con.execute("SELECT video_id, unit FROM blocked_units ORDER BY unit").fetchall()
    assert blocked == [("later0000000face", u) for u in sorted(gone_units)]
    tiers = clip_tiers(con)
    taken = tiers.filter(pl.col("video_id") == "later0000000face")
    assert taken.height == len(spk_clips) and (taken["tier"] == "rejected").all()
    # taken_down is added to whatever the same clip failed before, nothing else changes
    was = dict(zip(tiers_before["clip_id"].str.replace(vid, "later0000000face", literal=True), tiers_before["reasons"].to_list()))
    assert all(set(r) == {"taken_down", *was[c]} for c, r in taken.select("clip_id", "reasons").iter_rows())
    lake.write("clip_tiers", tiers)
    branches, _ = build_branches(lake.duckdb_connection())
    in_branches = {c for df in branches.values() for col in df.columns if col.endswith("clip_id") for c in df[col].to_list()}
    assert not in_branches & set(taken["clip_id"].to_list())


def test_blocked_units_match_another_photo_of_the_taken_down_face_only(photo_faces, tmp_path):
    """Blocking at speaker_id_cos on real ArcFace embeddings of other photos: Yao Ming taken
    down (his portrait), then units of him in a team photo, of a team mate and of six strangers."""
    uri = str(tmp_path / "lake")
    units = {"yao_team": photo_faces["yao_team"], "player": photo_faces["player"], **{f"t1_{i}": e for i, e in enumerate(photo_faces["t1"])}}
    lake_io.write("identity_units", TABLES["identity_units"].frame([{"video_id": "v", "unit": u, "embedding": e.tolist(), "n_tracks": 1, "seconds": 5.0} for u, e in units.items()]), video_ids=["v"], lake=uri)
    lake_io.write("takedowns", TABLES["takedowns"].frame([{"takedown_id": "speaker:yao", "kind": "speaker", "target_id": "yao", "embedding": photo_faces["yao"].tolist()}]), lake=uri)
    blocked = lake_io.duckdb_connection(uri).execute("SELECT unit, cosine FROM blocked_units").fetchall()
    assert [u for u, _ in blocked] == ["yao_team"] and blocked[0][1] >= threshold("speaker_id_cos")


# ---------------------------------------------------------------- the same takedown on S3 (moto)
def test_video_takedown_and_vacuum_on_s3(clean_lake, moto_endpoint, monkeypatch):
    uri = _use_s3(monkeypatch, moto_endpoint)
    bucket, prefix = lake_io.split_s3(uri)
    s3 = lake_io.s3_client()
    for p in Path(clean_lake, "tables").rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(clean_lake)}")
    vid = _conv_a(uri)
    raw = lake_io.raw_uri(vid, ".mp4", uri)
    lake_io.put_file(Path(clean_lake, "raw", vid[:2], f"{vid}.mp4"), raw)
    assert lake_rows_naming(uri, vid)

    assert main(["takedown", "--video", vid, "--vacuum", "--lake", uri]) == 0

    assert lake_rows_naming(uri, vid) == {}
    assert not lake_io.uri_exists(raw)
    scanned, holding = parquet_files_naming(uri, vid)
    assert scanned == sum(lake_io.data_files(t, uri) for t in TABLES if t != "takedowns") and holding == []


# ---------------------------------------------------------------- maintenance
def test_maintenance_compacts_small_files_keeps_rows_and_respects_retention(tmp_path, monkeypatch):
    uri = str(tmp_path / "lake")
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    spec = TABLES["speech_segments"]
    for i in range(20):  # 20 batches of one video each: 20 small files
        lake_io.write("speech_segments", spec.frame([{"video_id": f"v{i:02d}", "segment_id": s, "start": s * 1.0, "end": s + 0.5} for s in range(5)]), video_ids=[f"v{i:02d}"])
    rows = lake_io.read("speech_segments", uri).sort("video_id", "segment_id")
    version = DeltaTable(lake_io.table_uri("speech_segments", uri)).version()
    assert lake_io.data_files("speech_segments", uri) == 20

    result = dg.materialize([operations_assets.lake_maintenance], resources=default_resources(), instance=dg.DagsterInstance.ephemeral())

    assert result.success
    meta = result.asset_materializations_for_node("lake_maintenance")[0].metadata
    assert meta["files_speech_segments"].value == {"files_before": 20, "files_after": 1, "files_vacuumed": 0}
    assert lake_io.read("speech_segments", uri).sort("video_id", "segment_id").equals(rows)
    assert list(Path(uri, "tables", "speech_segments", "_delta_log").glob("*.checkpoint.parquet"))
    # a week's retention keeps the 20 small files: time travel still reads the version before compaction
    assert run_sql("SELECT count(*) AS n FROM speech_segments", uri, as_of=version)["n"][0] == 100
    assert main(["maintain", "--retention-hours", "0", "--lake", uri]) == 0
    assert len(list(Path(uri, "tables", "speech_segments").glob("*.parquet"))) == 1
    assert lake_io.read("speech_segments", uri).sort("video_id", "segment_id").equals(rows)
