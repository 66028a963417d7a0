"""The table catalogue: every Delta table's schema and key, declared once.

Writers (orchestration.lake) cast frames to these schemas and refuse unknown columns,
so a stage can never silently drift from what users' SQL relies on.

Write modes:
- ``merge``: MERGE on ``key`` (insert new keys, update existing ones). Used where rows
  arrive from several batches (videos, rejects, speakers).
- ``replace_videos``: predicate overwrite of every row of the videos being written
  (``video_id IN (...)``). Per-video stages regenerate all of a video's rows at once,
  so a rerun replaces them instead of adding duplicates.
- ``overwrite``: the whole table is replaced in one commit. For dataset-wide decisions
  recomputed from scratch each time (tiers), so a rerun is idempotent and no row of an
  older decision survives.
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
    write: Literal["merge", "replace_videos", "overwrite"]
    description: str
    docs: dict[str, str] = field(default_factory=dict)  # column -> description (UI column schema)
    partition_by: tuple[str, ...] = field(default=())

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema(self.schema)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)

    def frame(self, rows: list[dict]) -> pl.DataFrame:
        """``rows`` (dicts) as a frame of this table: columns they lack are null."""
        return self.conform(pl.DataFrame([{c: r.get(c) for c in self.schema} for r in rows], schema=self.polars_schema, strict=False))

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
        description="Batch-level steps that finished an ingest batch (ingest itself); per-video stages record stage_status instead.",
    ),
    TableSpec(
        "stage_status",
        {
            "stage": pl.String,
            "video_id": pl.String,
            "batch_id": pl.String,
            "status": pl.String,
            "reason": pl.String,
            "message": pl.String,
            "fingerprint": pl.String,
            "attempts": pl.Int32,
            "updated_at": pl.Datetime("us", "UTC"),
        },
        key=("stage", "video_id"),
        write="merge",
        description=(
            "Per-video truth of every per-video stage: status ok (reason set when the video gave the stage nothing "
            "to work on, e.g. no_audio_stream) or error (stage_error, with the message); the models-and-thresholds "
            "fingerprint it ran with; consecutive failed attempts. A video without a row for a stage is pending."
        ),
        docs={
            "stage": "audio | vision | binding | speaker_ids | clips",
            "status": "ok or error",
            "reason": "why the stage produced no rows for an ok video, or stage_error",
            "fingerprint": "hash of every model setting and sql/thresholds.csv the video was processed with",
            "attempts": "consecutive failed attempts (0 after a success)",
        },
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
    TableSpec(
        "takedowns",
        {
            "takedown_id": pl.String,
            "kind": pl.String,
            "target_id": pl.String,
            "sha256": pl.String,
            "embedding": F32_LIST,
            "reason": pl.String,
            "requested_at": pl.Datetime("us", "UTC"),
            "rows_removed": pl.Int64,
            "files_removed": pl.Int32,
            "vacuumed_at": pl.Datetime("us", "UTC"),
        },
        key=("takedown_id",),
        write="merge",
        description=(
            "Every takedown (speakerlake takedown): what was removed from every table and release, and what keeps it out "
            "afterwards: the content hash (a later ingest of the same bytes is a taken_down reject) or the speaker's ArcFace "
            "centroid (identity units reaching speaker_id_cos to it are tier rejected, reason taken_down: sql/views.sql blocked_units)."
        ),
        docs={
            "takedown_id": "kind:target_id",
            "kind": "video or speaker",
            "target_id": "the video_id or speaker_id taken down",
            "sha256": "video: sha256 of the source bytes (its video_id is the first 16 hex)",
            "embedding": "speaker: the speaker's L2-normalised ArcFace centroid when taken down",
            "reason": "free text given with the request",
            "rows_removed": "rows deleted from all tables",
            "files_removed": "raw media and release files deleted",
            "vacuumed_at": "when the tables were vacuumed so no data file holds the removed rows (null: not yet)",
        },
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
            "transition": pl.String,
            "transition_start_frame": pl.Int64,
            "transition_end_frame": pl.Int64,
        },
        key=("video_id", "shot_id"),
        write="replace_videos",
        description=(
            "PySceneDetect shots; end_frame is exclusive. transition: how the shot begins (cut, "
            "dissolve, fade; null for the first shot); transition_start_frame/end_frame: the "
            "blended or faded frames [start, end) around start_frame, which no face track holds."
        ),
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
            "cosine": pl.Float64,
            "reassigned": pl.Boolean,
        },
        key=("video_id", "track_id"),
        write="replace_videos",
        description=(
            "Identity of every face track within its video: its diarized speaker after ArcFace correction "
            "(dataset-wide ids: the SQL view track_speakers, or speaker_assignments on the track's unit)."
        ),
        docs={"speaker_local": "the video's diarized speaker this face is, null when it never speaks", "cosine": "ArcFace cosine to that speaker's centroid", "reassigned": "ArcFace overruled the lip-sync label"},
    ),
    TableSpec(
        "identity_units",
        {"video_id": pl.String, "unit": pl.String, "embedding": F32_LIST, "n_tracks": pl.Int32, "seconds": pl.Float64},
        key=("video_id", "unit"),
        write="replace_videos",
        description=(
            "Per video, each identity unit (a speaker_local, or 'track:<track_id>' for a face track with no speaker_local) "
            "with the L2-normalised duration-weighted mean ArcFace embedding of its tracks; what speaker_ids are given to."
        ),
        docs={"unit": "speaker_local, or track:<track_id> for a face that never speaks", "embedding": "null when no track of the unit has an ArcFace embedding (no speaker_id then)"},
    ),
    TableSpec(
        "speaker_assignments",
        {"video_id": pl.String, "unit": pl.String, "speaker_id": pl.String},
        key=("video_id", "unit"),
        write="merge",
        description="Dataset-wide speaker_id of every identity unit, written only by the serialized speakers asset.",
        docs={"speaker_id": "spk_ + sha1 of the cluster's smallest member key (video_id/unit): a function of the member set"},
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
        description="Dataset-wide identities: clusters of identity units (ArcFace), recomputed from their members by the serialized speakers asset.",
        docs={"centroid": "L2-normalised duration-weighted sum of the member units' embeddings", "n_videos": "videos the speaker appears in"},
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
    # ---- dataset (assets/clips, assets/quality) ----
    TableSpec(
        "clips",
        {
            "clip_id": pl.String,
            "video_id": pl.String,
            "track_id": pl.Int32,
            "speaker_id": pl.String,
            "speaker_local": pl.String,
            "identity_unit": pl.String,
            "start_seconds": pl.Float64,
            "end_seconds": pl.Float64,
            "duration": pl.Float64,
            "is_talking": pl.Boolean,
            "clip_speaker_num": pl.Int32,
            "bbox": F32_LIST,
            "raw_video_width": pl.Int32,
            "raw_video_height": pl.Int32,
            "shot_id": pl.Int32,
            "turn_id": pl.Int32,
            "listening_kind": pl.String,
            "partner_speaker_local": pl.String,
            "text": pl.String,
            "words": pl.List(WORD),
            "language": pl.String,
            "language_prob": pl.Float64,
            "avg_logprob": pl.Float64,
            "no_speech_prob": pl.Float64,
            "compression_ratio": pl.Float64,
            "sync_offset": pl.Int32,
            "sync_confidence": pl.Float64,
            "sync_dist": pl.Float64,
        },
        key=("video_id", "clip_id"),
        write="replace_videos",
        description=(
            "SpeakerVid-5M's unit: 3-14 s single-person clips. Talking: a bound speaker's turn, that speaker's face "
            "track and one shot all overlap; listening: a span of listening_segments. Longer spans are split into "
            "balanced 3-14 s pieces; clip_id = f(video_id, track_id, start in ms) so reruns keep ids."
        ),
        docs={
            "clip_id": "stable id: video_id, track_id and the start in milliseconds",
            "speaker_id": "dataset-wide speaker id of the clip's person when the clip was cut (current: speaker_assignments on identity_unit)",
            "identity_unit": "the unit speaker_assignments keys (speaker_local, or track:<track_id>)",
            "is_talking": "true: the person speaks over the clip; false: a listening clip",
            "clip_speaker_num": "faces on screen in the clip's shot during the clip",
            "bbox": "normalised [x, y, w, h] person crop covering the person over the whole clip, clipped to the frame",
            "shot_id": "the one shot the clip lies in",
            "turn_id": "talking clips: the diarized turn",
            "listening_kind": "listening clips: co_present or not_co_present",
            "partner_speaker_local": "listening clips: whose speech the person listens to",
            "text": "Whisper's text of the words inside the span", "words": "ASR words inside the span",
            "avg_logprob": "duration-weighted over the transcript segments the span's words come from (filter F5)",
            "sync_offset": "lip-sync offset over the clip's own span (frames)", "sync_confidence": "lip-sync confidence over the clip's own span",
            "sync_dist": "lip-sync distance at the best offset over the clip's own span",
        },
    ),
    TableSpec(
        "clip_quality",
        {
            "clip_id": pl.String,
            "video_id": pl.String,
            "n_frames_sampled": pl.Int32,
            "luminance": pl.Float64,
            "clarity": pl.Float64,
            "visual_quality": pl.Float64,
            "visual_quality_backend": pl.String,
            "face_blur": pl.Float64,
            "hands_visible": pl.Boolean,
            "hand_blur": pl.Float64,
            "motion": pl.Float64,
            "motion_score": pl.Int32,
            "motion_backend": pl.String,
            "number_of_people": pl.Int32,
            "facing_direction": pl.String,
            "framing": pl.String,
            "speech_presence": pl.Boolean,
            "motion_level": pl.String,
            "caption": pl.String,
            "caption_backend": pl.String,
            "topic": pl.String,
        },
        key=("video_id", "clip_id"),
        write="replace_videos",
        description="Per-clip quality scores and structured caption fields from frames sampled in the clip (never a second full decode).",
        docs={
            "luminance": "mean luma (0-255) of the person crop",
            "clarity": "video bitrate / (W x H) of the source (bits per pixel per second)",
            "visual_quality": "no-reference quality in [0, 1] (higher is better)",
            "face_blur": "Laplacian-variance sharpness of the 128x128 face crop mapped to [0, 1] (higher is sharper)",
            "hands_visible": "a hand was found in the sampled frames",
            "hand_blur": "as face_blur for the hand crops; null when no hand is visible (hand rules then do not apply)",
            "motion": "mean optical-flow magnitude in the crop (pixels per frame at 128 px crop size)",
            "motion_score": "1 (still) to 5 (large motion), cut points in sql/thresholds.csv",
        },
    ),
    # ---- tiers (assets/tiers): dataset-wide decisions, recomputed whole from clips + clip_quality ----
    TableSpec(
        "clip_tiers",
        {
            "clip_id": pl.String,
            "video_id": pl.String,
            "speaker_id": pl.String,
            "is_talking": pl.Boolean,
            "duration": pl.Float64,
            "tier": pl.String,
            "reasons": pl.List(pl.String),
            "sft_missed": pl.List(pl.String),
        },
        key=("video_id", "clip_id"),
        write="overwrite",
        description=(
            "Every clip's tier (sql/tiers.sql): rejected by any of the paper's filters F1-F6, sft when it also meets "
            "every SFT rule, else pretrain (pre-training and SFT are disjoint, as in the paper). Thresholds are the "
            "stage=tiers rows of sql/thresholds.csv; a clip without clip_quality row is rejected (no_quality)."
        ),
        docs={
            "tier": "rejected | pretrain | sft",
            "reasons": "every filter rule the clip fails (F1_luminance_low, ..., no_quality, taken_down: the face was taken down); empty unless rejected",
            "sft_missed": "every SFT rule the clip misses (SFT_face_blur, ...); empty for sft clips",
        },
    ),
    TableSpec(
        "sft_subset",
        {
            "clip_id": pl.String,
            "video_id": pl.String,
            "speaker_id": pl.String,
            "start_seconds": pl.Float64,
            "end_seconds": pl.Float64,
            "duration": pl.Float64,
            "is_talking": pl.Boolean,
            "bbox": F32_LIST,
            "raw_video_width": pl.Int32,
            "raw_video_height": pl.Int32,
            "text": pl.String,
            "language": pl.String,
            "avg_logprob": pl.Float64,
            "no_speech_prob": pl.Float64,
            "compression_ratio": pl.Float64,
            "luminance": pl.Float64,
            "clarity": pl.Float64,
            "visual_quality": pl.Float64,
            "face_blur": pl.Float64,
            "hand_blur": pl.Float64,
            "motion_score": pl.Int32,
            "caption": pl.String,
        },
        key=("video_id", "clip_id"),
        write="overwrite",
        description=(
            "The SFT subset (the paper's SFT_set.json): clip_tiers rows with tier sft, with the clip and quality "
            "fields a fine-tuning loader needs. Guarded by the blocking Great Expectations contract "
            "(expectations/sft_contract.py)."
        ),
    ),
    # ---- branches (assets/branches, sql/branches.sql): dataset-wide, recomputed whole from the tiers ----
    TableSpec(
        "single",
        {"clip_id": pl.String, "video_id": pl.String, "speaker_id": pl.String, "start_seconds": pl.Float64, "end_seconds": pl.Float64, "duration": pl.Float64, "tier": pl.String},
        key=("video_id", "clip_id"),
        write="overwrite",
        description="Single branch: every kept (pretrain or sft) talking clip whose speaker is not in the VidChatBench test split.",
        docs={"tier": "pretrain | sft"},
    ),
    TableSpec(
        "dialogue_pairs",
        {
            "pair_id": pl.String,
            "video_id": pl.String,
            "initiator_clip_id": pl.String,
            "responder_clip_id": pl.String,
            "initiator_speaker_id": pl.String,
            "responder_speaker_id": pl.String,
            "initiator_speaker_local": pl.String,
            "responder_speaker_local": pl.String,
            "initiator_turn_id": pl.Int32,
            "responder_turn_id": pl.Int32,
            "gap_s": pl.Float64,
            "tier": pl.String,
        },
        key=("video_id", "pair_id"),
        write="overwrite",
        description=(
            "Dialogue branch: consecutive turns of the two bound main speakers of one video (gap <= dialogue_max_gap_s), "
            "initiator clip -> responder clip, both kept; tier sft only when both clips are sft. Test-split speakers excluded."
        ),
        docs={"pair_id": "stable: hash of (initiator_clip_id, responder_clip_id)", "gap_s": "responder start minus initiator end (s; negative: overlap)"},
    ),
    TableSpec(
        "listening_pairs",
        {
            "pair_id": pl.String,
            "video_id": pl.String,
            "listener_clip_id": pl.String,
            "listener_speaker_id": pl.String,
            "speaker_local": pl.String,
            "speaker_id": pl.String,
            "speaker_clip_id": pl.String,
            "audio_start": pl.Float64,
            "audio_end": pl.Float64,
            "kind": pl.String,
            "tier": pl.String,
        },
        key=("video_id", "pair_id"),
        write="overwrite",
        description="Listening branch: the talking speaker's audio span plus the listener's silent clip over the same span (co_present / not_co_present).",
        docs={"speaker_clip_id": "the speaker's own talking clip over the span, when there is one", "audio_start": "the speaker's audio span (s)", "kind": "co_present or not_co_present"},
    ),
    TableSpec(
        "multi_turn_context",
        {
            "pair_id": pl.String,
            "video_id": pl.String,
            "responder_clip_id": pl.String,
            "dialogue_start": pl.Float64,
            "context_clip_ids": pl.List(pl.String),
            "context_speaker_ids": pl.List(pl.String),
            "context_text": pl.String,
            "context_seconds": pl.Float64,
        },
        key=("video_id", "pair_id"),
        write="overwrite",
        description="Contextual multi-turn: for each dialogue pair starting at x, the earlier turns' clips within [x - multi_turn_history_s, x] with their ASR joined as context.",
    ),
    TableSpec(
        "multi_turn_chains",
        {"chain_id": pl.String, "video_id": pl.String, "position": pl.Int32, "clip_id": pl.String, "speaker_id": pl.String, "gap_before_s": pl.Float64},
        key=("video_id", "chain_id", "position"),
        write="overwrite",
        description="Sequential multi-turn: chains of adjacent talking clips of one video whose gaps are < multi_turn_max_gap_s (chain_id, position).",
    ),
    TableSpec(
        "vidchat_testset",
        {
            "pair_id": pl.String,
            "video_id": pl.String,
            "initiator_clip_id": pl.String,
            "responder_clip_id": pl.String,
            "initiator_speaker_id": pl.String,
            "responder_speaker_id": pl.String,
            "rank": pl.Int32,
            "seed": pl.Int64,
        },
        key=("video_id", "pair_id"),
        write="overwrite",
        description=(
            "VidChatBench test split: up to vidchat_test_pairs dialogue pairs (deterministic for vidchat_seed) whose "
            "speakers appear in no training row of any branch (the branches exclude them)."
        ),
    ),
    # ---- evaluation (assets/vidchat) ----
    TableSpec(
        "vidchat_scores",
        {
            "prediction_set": pl.String,
            "pair_id": pl.String,
            "metric": pl.String,
            "value": pl.Float64,
            "status": pl.String,
            "reason": pl.String,
        },
        key=("prediction_set", "pair_id", "metric"),
        write="merge",
        description=(
            "VidChatBench scores: one row per prediction set, test pair and metric, against the reference responder clip "
            "(assets/vidchat). A re-evaluated set replaces all its rows."
        ),
        docs={
            "prediction_set": "name of the scored prediction folder, or a built-in set (ground_truth, static_frame)",
            "pair_id": "vidchat_testset pair; * for set-level metrics (FID, FVD, expression FID) and a skipped optional metric's row",
            "metric": (
                "psnr | ssim | arcface | landmark_error | sync_confidence | sync_offset | sync_dist | voice_similarity | fid | fvd | expression_fid "
                "| dialogue_coherence | coherence_similarity"
            ),
            "value": (
                "null unless status is ok (psnr dB capped at vidchat_psnr_cap_db; sync_offset frames, > 0: audio leads video; landmark_error in "
                "reference face sizes; dialogue_coherence 1 / rank of the true response among the test pairs' reference responses)"
            ),
            "status": "ok, missing, unreadable, wrong_length, no_reference, no_audio, no_face, skipped or error",
            "reason": "why there is no value (the file, the length, the setting to configure)",
        },
    ),
    TableSpec(
        "vidchat_summary",
        {
            "prediction_set": pl.String,
            "pairs": pl.Int32,
            "scored": pl.Int32,
            "not_scored": pl.Int32,
            "psnr": pl.Float64,
            "ssim": pl.Float64,
            "arcface": pl.Float64,
            "sync_confidence": pl.Float64,
            "sync_offset": pl.Float64,
            "sync_dist": pl.Float64,
            "voice_similarity": pl.Float64,
            "landmark_error": pl.Float64,
            "fid": pl.Float64,
            "fvd": pl.Float64,
            "expression_fid": pl.Float64,
            "dialogue_coherence": pl.Float64,
            "coherence_similarity": pl.Float64,
            "not_scored_pairs": pl.List(pl.String),
            "skipped_metrics": pl.List(pl.String),
            "evaluated_at": pl.Datetime("us", "UTC"),
        },
        key=("prediction_set",),
        write="merge",
        description="VidChatBench summary laid out like the paper's table: one row per prediction set, the mean of each metric over its scored pairs.",
        docs={
            "pairs": "test pairs", "scored": "pairs whose prediction was read and scored", "not_scored": "missing, unreadable, wrong-length or reference-less pairs",
            "not_scored_pairs": "pair_id: status (reason) of each pair not scored", "skipped_metrics": "metric: reason of each metric not computed (weights not configured)",
            "sync_offset": "mean lip-sync offset (frames; > 0: audio leads video)",
            "dialogue_coherence": "mean reciprocal rank of each pair's true response (null: text_embedding_model_dir not configured)",
            "fid": "set-level Fréchet Inception distance (null: fid_model not configured)",
        },
    ),
]

# Column meanings the UI's column schema shows (dagster/column_schema). Names used by many
# tables are described once; a table's own ``docs`` win.
COMMON_DOCS = {
    "video_id": "content hash of the source video (first 16 hex of its sha256)",
    "batch_id": "ingest batch (Dagster partition) that first held the video",
    "start": "seconds from the start of the video",
    "end": "seconds from the start of the video (exclusive)",
    "start_frame": "first video frame (0-based)",
    "end_frame": "frame after the last one (exclusive)",
    "speaker_local": "diarized speaker label within one video",
    "track_id": "face track, unique within its video",
    "turn_id": "diarized turn, unique within its video",
    "segment_id": "row number within its video",
    "source_uri": "where the file came from (path, s3:// or http(s) URL)",
    "reason": "machine-readable reason (see README: rejects)",
    "message": "human-readable detail (exception text for stage_error)",
}
COLUMN_DOCS: dict[str, dict[str, str]] = {
    "videos": {
        "sha256": "sha256 of the source bytes", "raw_uri": "the copy in the lake's raw area", "duration_s": "container duration",
        "fps": "average frame rate", "n_frames": "video frames", "has_audio": "has a decodable audio stream",
    },
    "rejects": {"stage": "ingest, audio, vision, binding or clips", "reject_id": "hash of (stage, source, video): a rerun overwrites"},
    "video_speakers": {
        "speech_seconds": "seconds of the speaker's turns", "share": "share of the video's speech", "is_main": "one of the two main speakers",
        "top2_share": "the two main speakers' joint share of speech (SpeakerVid-5M keeps dyadic videos)",
    },
    "speaker_turns": {"overlap": "other speakers' turns cover more than diar_overlap_min_s of it"},
    "transcripts": {
        "text": "Whisper's text of the span", "words": "word, start, end, score (word probability)",
        "avg_logprob": "Whisper's mean token log-probability of the decode (filter F5)", "no_speech_prob": "Whisper's no-speech probability",
        "compression_ratio": "gzip compression ratio of the text (repetition; filter F5)", "language_prob": "Whisper's language-ID probability (filter F6)",
    },
    "shots": {"transition": "how the shot begins: cut, dissolve or fade (null for the first shot)"},
    "face_tracks": {
        "boxes": "per-frame pixel boxes [x1, y1, x2, y2]", "mouth_open": "lip gap / face height per frame (2d106)",
        "embedding": "mean ArcFace embedding (L2-normalised)", "person_box": "[x, y, w, h] normalised to the frame",
        "yaw": "head yaw per frame (degrees)", "pitch": "head pitch per frame (degrees)",
    },
    "sync_scores": {
        "offset": "frames; > 0: the audio leads the video (SyncNet's convention)", "confidence": "median minus minimum of the distance curve",
        "dist": "distance at the best offset",
    },
    "bindings": {"track_id": "the face whose lips move with this voice (null: unbound, see reason)", "shared_seconds": "seconds of the speaker's turns the track is on screen"},
    "listening_segments": {
        "kind": "co_present (the speaker is on screen too) or not_co_present", "speaker_track_id": "the talking face, when on screen",
        "confidence_gap": "speaker's sync confidence minus the listener's over the span",
    },
}

_TABLES = [
    TableSpec(t.name, t.schema, t.key, t.write, t.description, {**{c: d for c, d in COMMON_DOCS.items() if c in t.schema}, **COLUMN_DOCS.get(t.name, {}), **t.docs}, t.partition_by)
    for t in _TABLES
]
TABLES: dict[str, TableSpec] = {t.name: t for t in _TABLES}

