"""Running a takedown and a vacuum against a lake (local or S3: all I/O goes through
``orchestration.lake`` / ``LakeResource``). What to remove is decided in
`assets.operations.takedown`; this module reads the tables it needs, deletes, purges the
raw media and the exported releases, and records the takedown."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath

import polars as pl

from assets.binding.assets import cluster_members, write_speaker_update
from assets.binding.speaker_ids import drop_videos
from assets.ingest.sources import MEDIA_EXTENSIONS
from assets.operations.takedown import RECORD_TABLE, Removal, close_over_pairs, pair_tables, predicate, purged_tables, role_columns, speaker_closure
from assets.release.assets import ReleaseConfig, export_lake_release
from assets.release.export import MANIFEST, SHARD_DIR, SHARD_PATTERN
from assets.release.target import ReleaseTarget
from orchestration import lake as lake_io
from orchestration.resources import LakeResource
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

KINDS = ("video", "speaker")


class UnknownTarget(ValueError):
    """The video or speaker to take down is not in the lake (nor taken down before)."""


@dataclass
class TakedownReport:
    takedown_id: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    files_removed: list[str] = field(default_factory=list)


def takedown_id(kind: str, target_id: str) -> str:
    return f"{kind}:{target_id}"


def _record(lake: LakeResource, kind: str, target_id: str) -> tuple[dict, list[str]]:
    """The takedown's blocking evidence (the video's content hash or the speaker's centroid)
    and the raw media files to delete. A takedown that died part-way is finished from its
    record (written first), the target's own row being gone by then."""
    earlier = lake.scan(RECORD_TABLE).filter(pl.col("takedown_id") == takedown_id(kind, target_id)).collect()
    if kind == "video":
        row = lake.scan("videos").filter(pl.col("video_id") == target_id).collect()
        if not row.is_empty():
            # the copy in this lake's raw area (a copied lake's raw_uri column still names the original's)
            suffixes = {PurePosixPath(u).suffix or ".mp4" for u in row["raw_uri"].drop_nulls().to_list()}
            return {"sha256": row["sha256"][0], "embedding": None}, [lake_io.raw_uri(target_id, s, lake.uri) for s in sorted(suffixes)]
        if not earlier.is_empty():
            return {"sha256": earlier["sha256"][0], "embedding": None}, [lake_io.raw_uri(target_id, s, lake.uri) for s in sorted(MEDIA_EXTENSIONS)]
        raise UnknownTarget(f"no video {target_id} in the lake")
    row = lake.scan("speakers").filter(pl.col("speaker_id") == target_id).collect()
    if not row.is_empty():
        return {"sha256": None, "embedding": row["centroid"][0]}, []
    if not earlier.is_empty():
        return {"sha256": None, "embedding": earlier["embedding"][0]}, []
    raise UnknownTarget(f"no speaker {target_id} in the lake")


def _removal(lake: LakeResource, kind: str, target_id: str) -> Removal:
    removal = Removal()
    if kind == "video":
        removal.videos.add(target_id)
        # the video's own source and the duplicate copies rejected in its name
        removal.sources |= set(lake.scan("videos").filter(pl.col("video_id") == target_id).collect()["source_uri"].to_list())
        removal.sources |= set(lake.scan("rejects").filter(pl.col("video_id") == target_id).collect()["source_uri"].drop_nulls().to_list())
    else:
        removal.speakers.add(target_id)
        speaker_closure(removal.speakers, lake.scan("speaker_assignments"), lake.scan("track_identities"), removal)
    # lazy scans of the columns a match needs: only the matching rows are read into memory
    close_over_pairs(removal, lake.scan("clips").select(role_columns("clips")), {t: lake.scan(t).select(role_columns(t)) for t in pair_tables()})
    return removal


def _purge_release(uri: str, lake: LakeResource) -> list[str]:
    """Re-export a release from the purged tables, with the media choice and shard size it was
    made with: the export deletes the files of clips that left it and rewrites the lists and shards."""
    target = ReleaseTarget(uri)
    raw = target.read(MANIFEST)
    if raw is None:
        return []
    manifest = json.loads(raw)
    report = export_lake_release(lake, uri, media=bool(manifest.get("media")), shard_samples=release_shard_samples(target, manifest))
    return [f"{report.target}/{f}" for f in report.deleted]


def release_shard_samples(target: ReleaseTarget, manifest: dict) -> int:
    """Clips per WebDataset shard of an exported release: the first shard's when there are
    several (all but the last are full), else the ReleaseConfig default (one shard held them all)."""
    first, second = (f"{SHARD_DIR}/{SHARD_PATTERN.format(n)}" for n in (0, 1))
    if second not in manifest["files"]:
        return ReleaseConfig().shard_samples
    with tarfile.open(fileobj=io.BytesIO(target.read(first))) as tar:
        # WebDataset members of one sample share the name before the first dot
        return len({name.split(".", 1)[0] for name in tar.getnames()})


def purge_rows(lake: LakeResource, kind: str, target_id: str) -> dict[str, int]:
    """Delete every row derived from ``target_id`` from every table (rows deleted per table);
    for a video, the speakers its identity units were members of get their centroids
    recomputed from the remaining members."""
    removal = _removal(lake, kind, target_id)
    speaker_update = None
    if kind == "video":
        touched = sorted(set(lake.read("speaker_assignments", video_ids=[target_id])["speaker_id"].drop_nulls().to_list()))
        speaker_update = drop_videos([target_id], lake.read("speakers"), cluster_members(lake, touched), threshold=threshold("speaker_id_cos"))
    removed = {}
    for table in purged_tables():
        where = predicate(table, removal)
        if where:
            removed[table] = lake.delete_where(table, where)
    if speaker_update is not None:
        write_speaker_update(lake, speaker_update)
    return removed


def reapply_takedowns(lake: LakeResource, *, video_ids: Sequence[str] = (), speaker_tables: bool = False) -> list[str]:
    """Take down again what a step wrote back while a takedown ran; returns those takedown ids.

    A step reads its inputs, works, then writes: a takedown recorded and purged in between
    is undone by that write (a per-video stage rewrites the video's rows; `speaker_ids` MERGEs
    the speakers and assignments it computed from what it read). Each such step calls this
    after its writes. The takedown record is written before the purge, so whichever of the two
    commits last, the target's rows end up removed. ``video_ids``: the videos the step wrote;
    ``speaker_tables``: the step wrote ``speakers`` / ``speaker_assignments``. The records are
    a small table; the check reads only the matching keys."""
    records = lake.scan(RECORD_TABLE).select("kind", "target_id").collect()
    if records.is_empty():
        return []
    taken_videos = records.filter(pl.col("kind") == "video")["target_id"].to_list()
    taken_speakers = records.filter(pl.col("kind") == "speaker")["target_id"].to_list()
    videos = set(taken_videos) & set(video_ids)
    speakers: set[str] = set()
    if speaker_tables:
        assignments = lake.scan("speaker_assignments").filter(pl.col("video_id").is_in(taken_videos) | pl.col("speaker_id").is_in(taken_speakers))
        back = assignments.select("video_id", "speaker_id").collect()
        videos |= set(back["video_id"].to_list()) & set(taken_videos)
        speakers |= set(back["speaker_id"].drop_nulls().to_list()) & set(taken_speakers)
        speakers |= set(lake.scan("speakers").filter(pl.col("speaker_id").is_in(taken_speakers)).select("speaker_id").collect()["speaker_id"].to_list())
    again = [("video", v) for v in sorted(videos)] + [("speaker", s) for s in sorted(speakers)]
    for kind, target in again:
        purge_rows(lake, kind, target)
    return [takedown_id(kind, target) for kind, target in again]


def take_down(lake: LakeResource, kind: str, target_id: str, *, reason: str = "", releases: list[str] | None = None) -> TakedownReport:
    """Remove ``target_id`` (a video_id or speaker_id) and every row derived from it from every
    table, delete a video's raw media, purge it from each release target in ``releases``
    (default: ``<lake>/release`` when exported), and record the takedown. The removed rows stay
    reachable by time travel until `vacuum_lake`."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    record, raw_uris = _record(lake, kind, target_id)
    report = TakedownReport(takedown_id(kind, target_id))
    row = {"takedown_id": report.takedown_id, "kind": kind, "target_id": target_id, **record, "reason": reason, "requested_at": datetime.now(timezone.utc)}
    # recorded first: if the takedown dies part-way, later ingests and tiers already keep it out,
    # and a step that writes the target's rows back after this point removes them again
    # (`reapply_takedowns`)
    lake.write(RECORD_TABLE, TABLES[RECORD_TABLE].frame([row]))
    report.rows_removed = purge_rows(lake, kind, target_id)
    for uri in raw_uris:
        if lake_io.delete_uri(uri):
            report.files_removed.append(uri)
    for target in releases if releases is not None else [f"{lake.uri}/release"]:
        report.files_removed += _purge_release(target, lake)
    lake.write(RECORD_TABLE, TABLES[RECORD_TABLE].frame([{**row, "rows_removed": sum(report.rows_removed.values()), "files_removed": len(report.files_removed)}]))
    return report


def vacuum_lake(lake: LakeResource) -> dict[str, int]:
    """Vacuum every table with retention 0, so no data file still holds a taken-down row (time
    travel then reaches only the current version); stamps the takedowns not vacuumed yet.
    Returns files deleted per table."""
    deleted = {name: lake_io.vacuum(name, lake.uri, retention_hours=0) for name in TABLES}
    pending = lake.scan(RECORD_TABLE).filter(pl.col("vacuumed_at").is_null()).collect()
    if pending.height:
        lake.write(RECORD_TABLE, pending.with_columns(pl.lit(datetime.now(timezone.utc)).cast(TABLES[RECORD_TABLE].schema["vacuumed_at"]).alias("vacuumed_at")))
        # the stamp itself left an old file of the record behind
        deleted[RECORD_TABLE] += lake_io.vacuum(RECORD_TABLE, lake.uri, retention_hours=0)
    return deleted
