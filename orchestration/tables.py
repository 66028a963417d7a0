"""The table catalogue: every Delta table's schema and key, declared once.

Writers (orchestration.lake) cast frames to these schemas and refuse unknown columns,
so a stage can never silently drift from what users' SQL relies on.

Write modes:
- ``merge``: MERGE on ``key`` (insert new keys, update existing ones). Used where rows
  arrive from several batches (videos, rejects, speakers).
- ``replace_videos``: predicate overwrite of every row of the videos being written
  (``video_id IN (...)``). Per-video stages regenerate all of a video's rows at once,
  so a rerun replaces them instead of adding duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

WORD = pl.Struct({"word": pl.String, "start": pl.Float64, "end": pl.Float64, "score": pl.Float64})
F32_LIST = pl.List(pl.Float32)


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: dict[str, pl.DataType]
    key: tuple[str, ...]
    write: Literal["merge", "replace_videos"]
    description: str
    partition_by: tuple[str, ...] = field(default=())

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema(self.schema)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)

    def conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Cast ``df`` to this table's schema (column order included); fail on drift."""
        extra = set(df.columns) - set(self.schema)
        missing = set(self.schema) - set(df.columns)
        if extra or missing:
            raise ValueError(
                f"table {self.name}: columns do not match the declared schema "
                f"(unexpected {sorted(extra)}, missing {sorted(missing)})"
            )
        return df.select([pl.col(c).cast(t, strict=False) for c, t in self.schema.items()])


_TABLES = [
    TableSpec(
        "batch_files",
        {
            "batch_id": pl.String,
            "source_uri": pl.String,
            "fingerprint": pl.String,
            "size_bytes": pl.Int64,
            "problem": pl.String,
            "discovered_at": pl.Datetime("us", "UTC"),
        },
        key=("source_uri", "fingerprint"),
        write="merge",
        description="Ingest plan: which source files each ingest batch (Dagster partition) holds.",
    ),
    TableSpec(
        "batch_status",
        {
            "batch_id": pl.String,
            "stage": pl.String,
            "videos": pl.Int32,
            "completed_at": pl.Datetime("us", "UTC"),
        },
        key=("batch_id", "stage"),
        write="merge",
        description="Which stage finished which ingest batch: a batch missing a stage (crashed, failed) is run again.",
    ),
    TableSpec(
        "videos",
        {
            "video_id": pl.String,
            "sha256": pl.String,
            "source_uri": pl.String,
            "raw_uri": pl.String,
            "batch_id": pl.String,
            "size_bytes": pl.Int64,
            "container": pl.String,
            "duration_s": pl.Float64,
            "fps": pl.Float64,
            "n_frames": pl.Int64,
            "width": pl.Int32,
            "height": pl.Int32,
            "video_codec": pl.String,
            "video_bitrate": pl.Int64,
            "has_audio": pl.Boolean,
            "audio_codec": pl.String,
            "audio_rate": pl.Int32,
            "audio_channels": pl.Int32,
            "ingested_at": pl.Datetime("us", "UTC"),
        },
        key=("video_id",),
        write="merge",
        description="One row per unique source video (content hash), probed with PyAV; media copied to the lake's raw area.",
    ),
    TableSpec(
        "rejects",
        {
            "reject_id": pl.String,
            "batch_id": pl.String,
            "stage": pl.String,
            "source_uri": pl.String,
            "video_id": pl.String,
            "reason": pl.String,
            "message": pl.String,
            "rejected_at": pl.Datetime("us", "UTC"),
        },
        key=("reject_id",),
        write="merge",
        description="Every unusable input or failed per-video stage, with a machine-readable reason. Nothing is dropped silently.",
    ),
    # ---- audio (assets/audio) ----
    TableSpec(
        "speech_segments",
        {"video_id": pl.String, "segment_id": pl.Int32, "start": pl.Float64, "end": pl.Float64},
        key=("video_id", "segment_id"),
        write="replace_videos",
        description="Voice activity (silero VAD) in seconds.",
    ),
    TableSpec(
        "speaker_turns",
        {
            "video_id": pl.String,
            "turn_id": pl.Int32,
            "speaker_local": pl.String,
            "start": pl.Float64,
            "end": pl.Float64,
            "overlap": pl.Boolean,
        },
        key=("video_id", "turn_id"),
        write="replace_videos",
        description="Diarized speaker turns; speaker_local is a label within one video.",
    ),
    TableSpec(
        "video_speakers",
        {
            "video_id": pl.String,
            "speaker_local": pl.String,
            "speech_seconds": pl.Float64,
            "share": pl.Float64,
            "n_turns": pl.Int32,
            "is_main": pl.Boolean,
            "top2_share": pl.Float64,
        },
        key=("video_id", "speaker_local"),
        write="replace_videos",
        description="Speaking time per diarized speaker; the two main speakers are marked, top2_share is their joint share of speech.",
    ),
    TableSpec(
        "transcripts",
        {
            "video_id": pl.String,
            "segment_id": pl.Int32,
            "speaker_local": pl.String,
            "start": pl.Float64,
            "end": pl.Float64,
            "text": pl.String,
            "language": pl.String,
            "language_prob": pl.Float64,
            "avg_logprob": pl.Float64,
            "no_speech_prob": pl.Float64,
            "compression_ratio": pl.Float64,
            "words": pl.List(WORD),
            "window_id": pl.Int32,
            "asr_coverage": pl.Float64,
        },
        key=("video_id", "segment_id"),
        write="replace_videos",
        description=(
            "whisperx ASR segments with word times and the Whisper quality fields used by filters F5/F6; "
            "window_id = the one-speaker Whisper window the words and quality fields come from, "
            "asr_coverage = share of that window's VAD speech its words cover."
        ),
    ),
    TableSpec(
        "asr_coverage",
        {
            "video_id": pl.String,
            "speech_seconds": pl.Float64,
            "covered_seconds": pl.Float64,
            "coverage": pl.Float64,
            "n_windows": pl.Int32,
            "n_decodes": pl.Int32,
            "uncovered": pl.List(pl.Struct({"start": pl.Float64, "end": pl.Float64})),
        },
        key=("video_id",),
        write="replace_videos",
        description=(
            "Per video: seconds of VAD speech, the seconds within reach of an ASR word, their ratio, first-pass Whisper "
            "windows, windows decoded in all (re-decodes of poorly covered windows included) and the speech spans left without words."
        ),
    ),
    # ---- vision (assets/vision) ----
    TableSpec(
        "shots",
        {
            "video_id": pl.String,
            "shot_id": pl.Int32,
            "start": pl.Float64,
            "end": pl.Float64,
            "start_frame": pl.Int64,
            "end_frame": pl.Int64,
        },
        key=("video_id", "shot_id"),
        write="replace_videos",
        description="PySceneDetect shots; end_frame is exclusive.",
    ),
    TableSpec(
        "face_tracks",
        {
            "video_id": pl.String,
            "track_id": pl.Int32,
            "shot_id": pl.Int32,
            "start": pl.Float64,
            "end": pl.Float64,
            "start_frame": pl.Int64,
            "end_frame": pl.Int64,
            "n_frames": pl.Int32,
            "frames": pl.List(pl.Int64),
            "boxes": pl.List(F32_LIST),
            "det_scores": F32_LIST,
            "yaw": F32_LIST,
            "pitch": F32_LIST,
            "mouth_open": F32_LIST,
            "embedding": F32_LIST,
            "mean_det_score": pl.Float32,
            "person_box": F32_LIST,
        },
        key=("video_id", "track_id"),
        write="replace_videos",
        description=(
            "Face tracks within shots: per-frame pixel boxes [x1,y1,x2,y2], scores, head pose, "
            "mouth opening (lip gap / face height), mean ArcFace embedding, and the person box "
            "[x,y,w,h] normalised to the frame."
        ),
    ),
    # ---- binding (assets/binding) ----
    TableSpec(
        "sync_scores",
        {
            "video_id": pl.String,
            "track_id": pl.Int32,
            "turn_id": pl.Int32,
            "speaker_local": pl.String,
            "start": pl.Float64,
            "end": pl.Float64,
            "offset": pl.Int32,
            "confidence": pl.Float64,
            "dist": pl.Float64,
        },
        key=("video_id", "track_id", "turn_id"),
        write="replace_videos",
        description="SyncNet-style audio-visual sync of each face track over each speaker turn it overlaps.",
    ),
    TableSpec(
        "bindings",
        {
            "video_id": pl.String,
            "speaker_local": pl.String,
            "track_id": pl.Int32,
            "confidence": pl.Float64,
            "shared_seconds": pl.Float64,
            "reason": pl.String,
        },
        key=("video_id", "speaker_local"),
        write="replace_videos",
        description="Each diarized speaker bound to one face track (one-to-one per video); unbound speakers keep a reason.",
    ),
    TableSpec(
        "track_identities",
        {
            "video_id": pl.String,
            "track_id": pl.Int32,
            "speaker_local": pl.String,
            "speaker_id": pl.String,
            "cosine": pl.Float64,
            "reassigned": pl.Boolean,
        },
        key=("video_id", "track_id"),
        write="replace_videos",
        description="Identity of every face track: its diarized speaker after ArcFace correction and its dataset-wide speaker_id.",
    ),
    TableSpec(
        "speakers",
        {
            "speaker_id": pl.String,
            "centroid": F32_LIST,
            "n_videos": pl.Int32,
            "n_tracks": pl.Int32,
            "seconds": pl.Float64,
        },
        key=("speaker_id",),
        write="merge",
        description="Dataset-wide identities (ArcFace clusters); new batches join existing clusters.",
    ),
    TableSpec(
        "listening_segments",
        {
            "video_id": pl.String,
            "track_id": pl.Int32,
            "start": pl.Float64,
            "end": pl.Float64,
            "kind": pl.String,
            "speaker_local": pl.String,
            "speaker_track_id": pl.Int32,
            "confidence_gap": pl.Float64,
        },
        key=("video_id", "track_id", "start"),
        write="replace_videos",
        description="Time spans where a visible face listens while another speaker talks (co_present / not_co_present).",
    ),
]

TABLES: dict[str, TableSpec] = {t.name: t for t in _TABLES}

