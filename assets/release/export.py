"""The release export: deterministic and incremental.

Every file of a release has a content hash: the sha256 of its bytes for JSON files, and for
clip media the sha256 of what the media is made of (source video hash, span, crop, the other
speakers' turns, codec and PyAV version), so unchanged media is known without encoding it.
``manifest.json`` maps each file to its hash. A re-export writes only files whose hash
changed (or that the old manifest does not list), deletes the files of clips that left the
release, and writes the manifest last: a crash part-way leaves a manifest that makes the
next export redo whatever was not finished.

Layout (README: Release):
    all_data_list.json        video_name -> sorted clip annotation file names
    SFT_set.json              sorted annotation file names of the SFT clips
    testset.json              the VidChatBench dialogue pairs
    merged_anno/<clip>.json   one per kept clip (schema/merged_anno.schema.json)
    clips/<clip>.mp4          media only: person crop over [start, end) with the clip's audio
    clips/<clip>.wav          media only: cleaned audio, other speakers silenced
    shards/release-NNNNNN.tar media only: WebDataset shards of {json, mp4, wav} per clip
    schema/*.schema.json      the JSON Schemas the files follow
    manifest.json             file -> content hash, clip -> its files
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import polars as pl

from assets.release import media as clip_media
from assets.release import records
from assets.release.target import ReleaseTarget

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
MANIFEST = "manifest.json"
MEDIA_DIR = "clips"
SHARD_DIR = "shards"
SHARD_PATTERN = "release-{:06d}.tar"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ExportReport:
    target: str
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0
    clips: int = 0
    videos: int = 0
    shards: int = 0


class _Writer:
    """Writes a file only when its hash differs from the old manifest's; records the new one."""

    def __init__(self, target: ReleaseTarget, old: dict[str, str], report: ExportReport):
        self.target, self.old, self.report = target, old, report
        self.files: dict[str, str] = {}

    def unchanged(self, rel: str, digest: str) -> bool:
        return self.old.get(rel) == digest

    def put(self, rel: str, digest: str, data: bytes) -> None:
        self.files[rel] = digest
        if self.unchanged(rel, digest):
            self.report.unchanged += 1
            return
        self.target.write(rel, data)
        self.report.written.append(rel)
        self.report.bytes_written += len(data)

    def keep(self, rel: str, digest: str) -> None:
        self.files[rel] = digest
        self.report.unchanged += 1

    def put_json(self, rel: str, data: bytes) -> None:
        self.put(rel, sha256(data), data)


def media_hash(row: dict, box: clip_media.CropBox, spans: list[tuple[float, float]]) -> str:
    """What a clip's crop and cleaned audio are made of (not their bytes: those need encoding)."""
    return sha256(
        records.canonical_json(
            {
                "format": records.RELEASE_FORMAT,
                "pyav": av.__version__,
                "video_codec": clip_media.VIDEO_CODEC,
                "audio_codec": clip_media.AUDIO_CODEC,
                "video_sha256": row["video_sha256"],
                "has_audio": bool(row["has_audio"]),
                "start": row["start_seconds"],
                "end": row["end_seconds"],
                "box": [box.x, box.y, box.w, box.h],
                "silenced": spans,
            }
        )
    )


def shard_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A tar of ``members`` (name, bytes) in the given order with fixed metadata (mtime 0, uid 0,
    mode 0644, no user names), so equal members give equal bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _clip_media(
    rows: list[dict], turns: pl.DataFrame, writer: _Writer, open_media: Callable[[str], contextlib.AbstractContextManager[Path]]
) -> dict[str, list[str]]:
    """Crop and cleaned audio of one video's clips (encoded only when their media hash changed);
    returns clip_id -> its media files."""
    plans = []
    for row in rows:
        box = clip_media.crop_box(row["bbox"], row["video_width"], row["video_height"])
        spans = clip_media.other_speaker_spans(turns, row["speaker_local"], row["start_seconds"], row["end_seconds"])
        files = [f"{MEDIA_DIR}/{row['clip_id']}.mp4"] + ([f"{MEDIA_DIR}/{row['clip_id']}.wav"] if row["has_audio"] else [])
        plans.append((row, box, spans, files, media_hash(row, box, spans)))
    todo = [p for p in plans if not all(writer.unchanged(f, p[4]) for f in p[3])]
    stale = {p[0]["clip_id"] for p in todo}
    for row, _, _, files, digest in plans:
        if row["clip_id"] not in stale:
            for f in files:
                writer.keep(f, digest)
    if todo:
        with open_media(rows[0]["raw_uri"]) as path:
            for row, box, spans, files, digest in todo:
                audio = clip_media.read_audio(path, row["start_seconds"], row["end_seconds"]) if row["has_audio"] else None
                mp4, _ = clip_media.crop_mp4(path, row["start_seconds"], row["end_seconds"], box, audio)
                writer.put(files[0], digest, mp4)
                if audio is not None:
                    writer.put(files[1], digest, clip_media.wav_bytes(clip_media.silenced(audio, spans)))
    return {p[0]["clip_id"]: p[3] for p in plans}


def _by_video(release_clips: pl.DataFrame) -> Iterator[tuple[str, list[dict]]]:
    for (video_id,), group in release_clips.sort("video_id", "clip_id").group_by("video_id", maintain_order=True):
        yield video_id, group.to_dicts()


def export_release(
    release_clips: pl.DataFrame,
    sft_clip_ids: list[str],
    testset_pairs: pl.DataFrame,
    target: ReleaseTarget,
    *,
    media: bool = False,
    turns_for: Callable[[str], pl.DataFrame] | None = None,
    open_media: Callable[[str], contextlib.AbstractContextManager[Path]] | None = None,
    shard_samples: int = 500,
) -> ExportReport:
    """Export ``release_clips`` (rows of sql/release.sql's ``release_clips``) to ``target``.

    ``media``: also cut clip media; then ``turns_for(video_id)`` gives the video's
    speaker_turns and ``open_media(raw_uri)`` a local path of its source file.
    """
    if media and (turns_for is None or open_media is None):
        raise ValueError("media export needs turns_for and open_media")
    report = ExportReport(target=target.uri)
    old_manifest = target.read(MANIFEST)
    old = json.loads(old_manifest)["files"] if old_manifest else {}
    writer = _Writer(target, old, report)
    clip_files: dict[str, list[str]] = {}

    for video_id, rows in _by_video(release_clips):
        report.videos += 1
        for row in rows:
            rel = records.anno_path(row["clip_id"])
            writer.put_json(rel, records.canonical_json(records.clip_annotation(row)))
            clip_files[row["clip_id"]] = [rel]
        if media:
            for clip_id, files in _clip_media(rows, turns_for(video_id), writer, open_media).items():
                clip_files[clip_id] += files
    report.clips = len(clip_files)

    if media:
        ids = sorted(clip_files)
        for n, start in enumerate(range(0, len(ids), shard_samples)):
            members = [f for c in ids[start : start + shard_samples] for f in clip_files[c]]
            rel = f"{SHARD_DIR}/{SHARD_PATTERN.format(n)}"
            digest = sha256(records.canonical_json([[f, writer.files[f]] for f in members]))
            report.shards += 1
            if writer.unchanged(rel, digest):
                writer.keep(rel, digest)
                continue
            # WebDataset groups a sample's files by the name before the first dot: <clip_id>.json/.mp4/.wav
            writer.put(rel, digest, shard_bytes([(Path(f).name, target.read(f)) for f in members]))

    writer.put_json("all_data_list.json", records.all_data_list(release_clips))
    writer.put_json("SFT_set.json", records.sft_set(sft_clip_ids, set(clip_files)))
    writer.put_json("testset.json", records.testset(testset_pairs))
    for schema in sorted(SCHEMA_DIR.glob("*.schema.json")):
        writer.put_json(f"schema/{schema.name}", schema.read_bytes())

    for rel in sorted(set(old) - set(writer.files)):
        target.delete(rel)
        report.deleted.append(rel)

    manifest = records.canonical_json(
        {
            "format": records.RELEASE_FORMAT,
            "media": media,
            "files": writer.files,
            "clips": {c: sorted(f) for c, f in clip_files.items()},
        }
    )
    if manifest != old_manifest:
        target.write(MANIFEST, manifest)
        report.written.append(MANIFEST)
        report.bytes_written += len(manifest)
    return report
