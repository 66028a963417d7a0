"""clip_quality for one video: sample frame pairs per clip, measure, assemble one row per clip.

Memory is bounded: frames are consumed pair by pair (assets.quality.sampling); a clip keeps
scalars per sample, plus its few shrunken person crops only while a model backend needs them
and only until the clip's last sample is seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from assets.quality import measures as m
from assets.quality.backends import CAPTION_QUESTION, MOTION_QUESTION, DoverOnnx, QwenVL, TopicLLM, parse_rating
from assets.quality.params import QualityParams
from assets.quality.sampling import iter_pairs, sample_frames_for_clip
from orchestration.tables import TABLES

BRISQUE_BACKEND = "brisque"
DOVER_BACKEND = "dover_onnx"
FLOW_BACKEND = "farneback"
VLM_BACKEND = "qwen2.5-vl"
MEASURED_CAPTION = "measurements"


@dataclass
class QualityBackends:
    """The optional model backends (None: the measurement default is used)."""

    dover: DoverOnnx | None = None
    vlm: QwenVL | None = None
    topic: TopicLLM | None = None


@dataclass
class _ClipAcc:
    row: dict
    samples: list[int]
    lum: list[float] = field(default_factory=list)
    brisque: list[float] = field(default_factory=list)
    face_var: list[float] = field(default_factory=list)
    face_share: list[float] = field(default_factory=list)
    flow: list[float] = field(default_factory=list)
    people: list[int] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    seen: int = 0


def _track_lookup(face_tracks: pl.DataFrame) -> dict[int, tuple[np.ndarray, list, np.ndarray]]:
    """track_id -> (frame indices, pixel boxes, yaw per frame)."""
    out = {}
    for r in face_tracks.select("track_id", "frames", "boxes", "yaw").iter_rows(named=True):
        out[int(r["track_id"])] = (np.asarray(r["frames"] or [], dtype=np.int64), r["boxes"] or [], np.asarray(r["yaw"] or [], dtype=np.float64))
    return out


def _box_at(track, frame: int, max_gap: int):
    """The track's box nearest to ``frame`` (within ``max_gap`` frames), or None."""
    frames, boxes, _ = track
    if not len(frames):
        return None
    i = int(np.argmin(np.abs(frames - frame)))
    return boxes[i] if abs(int(frames[i]) - frame) <= max_gap else None


def _clip_abs_yaw(track, start_f: int, end_f: int) -> float | None:
    frames, _, yaw = track
    if not len(yaw):
        return None
    sel = (frames >= start_f) & (frames < end_f)
    vals = yaw[sel] if sel.any() else yaw
    vals = np.abs(vals[np.isfinite(vals)])
    return float(np.median(vals)) if len(vals) else None


def _speech_spans(transcripts: pl.DataFrame) -> np.ndarray:
    """(n, 2) start/end of every ASR word of the video."""
    if transcripts.is_empty():
        return np.zeros((0, 2))
    words = transcripts.select(pl.col("words").explode()).unnest("words").drop_nulls(["start", "end"])
    return words.select("start", "end").to_numpy().astype(np.float64) if words.height else np.zeros((0, 2))


def analyze_clips(
    video: dict,
    media_path: Path,
    clips: pl.DataFrame,
    face_tracks: pl.DataFrame,
    transcripts: pl.DataFrame,
    *,
    params: QualityParams,
    backends: QualityBackends | None = None,
) -> pl.DataFrame:
    """One clip_quality row per clip of ``video`` (the video's clips, face tracks and transcripts)."""
    backends = backends or QualityBackends()
    spec = TABLES["clip_quality"]
    if clips.is_empty():
        return spec.empty()
    fps = float(video.get("fps") or 25.0)
    height = float(video.get("height") or 0)
    tracks = _track_lookup(face_tracks)
    spans = [(int(t), int(s), int(e)) for t, s, e in face_tracks.select("track_id", "start_frame", "end_frame").iter_rows()]
    words = _speech_spans(transcripts)
    keep_crops = backends.dover is not None or backends.vlm is not None
    max_gap = max(1, int(round(fps / 2)))  # a face box up to half a second away still describes the sample

    accs: list[_ClipAcc] = []
    by_frame: dict[int, list[int]] = {}
    for row in clips.sort("start_seconds").iter_rows(named=True):
        samples = sample_frames_for_clip(row["start_seconds"], row["end_seconds"], fps, params.samples_per_clip)
        accs.append(_ClipAcc(row, samples))
        for f in samples:
            by_frame.setdefault(f, []).append(len(accs) - 1)

    rows: list[dict] = []
    for pair in iter_pairs(media_path, sorted(by_frame), params.flow_step_frames, max_side=params.decode_max_side):
        on_screen = sum(s <= pair.index < e for _, s, e in spans)
        for ci in by_frame[pair.index]:
            acc = accs[ci]
            acc.seen += 1
            crop = m.crop_normalised(pair.frame, acc.row["bbox"])
            if crop is not None:
                small = m.shrink(crop, params.crop_max_px)
                acc.lum.append(m.luminance(small))
                if backends.dover is None and acc.seen == len(acc.samples) // 2 + 1:
                    # BRISQUE on the middle sample only: it is the stage's costliest step (~50 ms
                    # per 256-px crop) and varies far less within a clip than between clips
                    acc.brisque.append(m.brisque_score(small))
                if keep_crops:
                    acc.crops.append(small)
                if pair.later is not None:
                    later = m.crop_normalised(pair.later, acc.row["bbox"])
                    if later is not None:
                        acc.flow.append(m.flow_magnitude(crop, later, params.flow_step_frames))
            acc.people.append(on_screen)
            track = tracks.get(int(acc.row["track_id"])) if acc.row.get("track_id") is not None else None
            box = _box_at(track, pair.index, max_gap) if track else None
            if box is not None:
                face = m.square_crop(pair.frame, np.asarray(box, dtype=np.float64) * pair.scale)  # source -> working pixels
                if face is not None:
                    acc.face_var.append(m.laplacian_variance(face))
                if height:
                    acc.face_share.append((float(box[3]) - float(box[1])) / height)
            if acc.seen == len(acc.samples):
                rows.append(_finish(acc, video, tracks, words, fps, params, backends))
                acc.crops = []
    done = {r["clip_id"] for r in rows}
    rows += [_finish(a, video, tracks, words, fps, params, backends) for a in accs if a.row["clip_id"] not in done]  # samples past the decodable end
    topic = video_topic(transcripts, backends.topic)
    for r in rows:
        r["topic"] = topic
    return pl.DataFrame(rows, schema=spec.schema, orient="row") if rows else spec.empty()


def _finish(acc: _ClipAcc, video: dict, tracks, words: np.ndarray, fps: float, params: QualityParams, backends: QualityBackends) -> dict:
    row = acc.row
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    if backends.dover is not None and acc.crops:
        vq, vq_backend = backends.dover.score(acc.crops), DOVER_BACKEND
    else:
        b = mean(acc.brisque)
        vq, vq_backend = (m.brisque_to_quality(b, params.brisque_worst) if b is not None else None), BRISQUE_BACKEND
    motion = mean(acc.flow)
    score = m.motion_score(motion, params.motion_cuts) if motion is not None else None
    motion_backend = FLOW_BACKEND
    track = tracks.get(int(row["track_id"])) if row.get("track_id") is not None else None
    start_f, end_f = int(round(row["start_seconds"] * fps)), int(round(row["end_seconds"] * fps))
    n_people = int(np.median(acc.people)) if acc.people else None
    facing = m.facing_direction(_clip_abs_yaw(track, start_f, end_f) if track else None, params)
    share = mean(acc.face_share)
    framing = m.framing(share, params)
    speech = bool(((words[:, 0] < row["end_seconds"]) & (words[:, 1] > row["start_seconds"])).any()) if len(words) else False
    caption = caption_backend = None
    if backends.vlm is not None and acc.crops:
        rating = parse_rating(backends.vlm.ask(acc.crops, MOTION_QUESTION))
        if rating is not None:  # an answer without a rating keeps the flow score
            score, motion_backend = rating, VLM_BACKEND
        caption, caption_backend = backends.vlm.ask(acc.crops, CAPTION_QUESTION) or None, VLM_BACKEND
    level = m.MOTION_LEVELS.get(score) if score is not None else None
    if caption is None:
        caption = m.caption_from_fields(n_people, framing, facing, bool(row["is_talking"]), speech, level)
        caption_backend = MEASURED_CAPTION
    return {
        "clip_id": row["clip_id"],
        "video_id": row["video_id"],
        "n_frames_sampled": acc.seen,
        "luminance": mean(acc.lum),
        "clarity": m.clarity(video.get("video_bitrate"), video.get("width"), video.get("height")),
        "visual_quality": vq,
        "visual_quality_backend": vq_backend,
        "face_blur": m.sharpness_score(float(np.median(acc.face_var)), params.blur_half_var) if acc.face_var else None,
        # no hand model ships in a package that runs here (see README): hand rules do not apply
        "hands_visible": False,
        "hand_blur": None,
        "motion": motion,
        "motion_score": score,
        "motion_backend": motion_backend,
        "number_of_people": n_people,
        "facing_direction": facing,
        "framing": framing,
        "speech_presence": speech,
        "motion_level": level,
        "caption": caption,
        "caption_backend": caption_backend,
        "topic": None,
    }


def video_topic(transcripts: pl.DataFrame, llm: TopicLLM | None) -> str | None:
    """The video's topic from its ASR text (segments in time order), when an LLM is configured."""
    if llm is None or transcripts.is_empty():
        return None
    text = " ".join(t for t in transcripts.sort("start")["text"].to_list() if t)
    return llm.topic(text)
