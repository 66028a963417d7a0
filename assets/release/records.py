"""The release's JSON files, built from tables: ``merged_anno/<clip_id>.json`` per kept clip,
``all_data_list.json``, ``SFT_set.json`` and ``testset.json`` (the layout of SpeakerVid-5M's
release, shared/reference/paper-spec.md §2), as canonical bytes.

Canonical = sorted keys, floats rounded to a fixed number of decimals, no NaN, UTF-8, one
trailing newline: the same rows always give the same bytes, which is what lets a re-export
skip unchanged files and compare hashes instead of contents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import polars as pl

# Seconds and scores to the microsecond / 1e-6: finer than any frame or score resolution, and
# coarse enough that float noise from a recomputation does not change the bytes.
FLOAT_DECIMALS = 6
ANNO_DIR = "merged_anno"
RELEASE_FORMAT = 1  # bump when a file's layout changes: every clip's content hash changes with it


def _clean(value: Any) -> Any:
    """JSON-ready value with floats rounded (NaN/inf -> null: JSON has neither)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        r = round(value, FLOAT_DECIMALS)
        return 0.0 if r == 0 else r  # -0.0 and 0.0 would print differently
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def canonical_json(obj: Any) -> bytes:
    return (json.dumps(_clean(obj), sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ": "), indent=1) + "\n").encode()


def video_name(video_id: str, width: int | None, height: int | None) -> str:
    """SpeakerVid-5M's source-video name: ``{id}_{W}x{H}_full_video``."""
    return f"{video_id}_{width}x{height}_full_video"


def anno_file(clip_id: str) -> str:
    return f"{clip_id}.json"


def anno_path(clip_id: str) -> str:
    return f"{ANNO_DIR}/{anno_file(clip_id)}"


def clip_annotation(row: dict) -> dict:
    """One ``merged_anno`` record from a ``release_clips`` row (sql/release.sql)."""
    return {
        "clip_name": row["clip_id"],
        "video_id": row["video_id"],
        "video_name": video_name(row["video_id"], row["video_width"], row["video_height"]),
        "start_seconds": row["start_seconds"],
        "end_seconds": row["end_seconds"],
        "duration": row["end_seconds"] - row["start_seconds"],
        "fps": row["video_fps"],
        "bbox": list(row["bbox"]) if row["bbox"] is not None else None,
        "raw_video_width": row["raw_video_width"],
        "raw_video_height": row["raw_video_height"],
        # 0/1 as in SpeakerVid-5M's files (consumers test it as a number)
        "is_talking": int(bool(row["is_talking"])),
        "clip_speaker_num": row["clip_speaker_num"],
        "listening_kind": row["listening_kind"],
        "speaker_id": row["speaker_id"],
        "tier": row["tier"],
        "quality": {
            "luminance": row["luminance"],
            "clarity": row["clarity"],
            "visual_quality": row["visual_quality"],
            "visual_quality_backend": row["visual_quality_backend"],
            "face_blur": row["face_blur"],
            "hand_blur": row["hand_blur"],
            "motion_score": row["motion_score"],
        },
        "caption": {
            "caption": row["caption"],
            "topic": row["topic"],
            "number_of_people": row["number_of_people"],
            "facing_direction": row["facing_direction"],
            "framing": row["framing"],
        },
        "sync": {"offset": row["sync_offset"], "confidence": row["sync_confidence"], "dist": row["sync_dist"]},
        "asr": {
            "text": row["text"],
            "language": row["language"],
            "language_prob": row["language_prob"],
            "confidence": row["avg_logprob"],  # SpeakerVid-5M's "confidence": Whisper's avg_logprob
            "no_speech_prob": row["no_speech_prob"],
            "compression_ratio": row["compression_ratio"],
            "words": [{"word": w["word"], "start": w["start"], "end": w["end"], "score": w["score"]} for w in (row["words"] or [])],
        },
    }


def annotations(release_clips: pl.DataFrame) -> dict[str, bytes]:
    """``merged_anno`` path -> canonical bytes, per kept clip."""
    return {anno_path(r["clip_id"]): canonical_json(clip_annotation(r)) for r in release_clips.iter_rows(named=True)}


def all_data_list(release_clips: pl.DataFrame) -> bytes:
    """video_name -> sorted clip annotation file names."""
    grouped: dict[str, list[str]] = {}
    for r in release_clips.select("clip_id", "video_id", "video_width", "video_height").iter_rows(named=True):
        grouped.setdefault(video_name(r["video_id"], r["video_width"], r["video_height"]), []).append(anno_file(r["clip_id"]))
    return canonical_json({k: sorted(v) for k, v in grouped.items()})


def sft_set(sft_clip_ids: Iterable[str], released: set[str]) -> bytes:
    """Sorted annotation file names of the SFT clips (only clips that are in the release)."""
    return canonical_json(sorted(anno_file(c) for c in set(sft_clip_ids) if c in released))


def testset(pairs: pl.DataFrame) -> bytes:
    """The VidChatBench split: its dialogue pairs in rank order, clips named by annotation file."""
    rows = pairs.sort("rank", "pair_id").iter_rows(named=True)
    return canonical_json(
        [
            {
                "pair_id": r["pair_id"],
                "video_id": r["video_id"],
                "rank": r["rank"],
                "seed": r["seed"],
                "initiator": anno_file(r["initiator_clip_id"]),
                "responder": anno_file(r["responder_clip_id"]),
                "initiator_speaker_id": r["initiator_speaker_id"],
                "responder_speaker_id": r["responder_speaker_id"],
            }
            for r in rows
        ]
    )
