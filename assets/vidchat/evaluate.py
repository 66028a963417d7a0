"""Score prediction sets against the VidChatBench test split: one row per (set, pair, metric).

A prediction set is a folder with ``<pair_id>.mp4`` per test pair (video + audio), or one of
the built-in reference sets:

- ``ground_truth``: the reference responder clips themselves (the best any set can score);
- ``static_frame``: the responder's first frame repeated, with the reference audio.

Every pair of every set gets a row per metric. ``status`` is ``ok`` (``value`` set) or says why
not, with ``reason``: ``missing`` (no file), ``unreadable`` (not a decodable video),
``wrong_length`` (duration off by more than ``vidchat_duration_tol_s``), ``no_reference``
(the responder clip or its source is gone from the lake), ``no_audio`` (audio metrics of a
prediction or reference without sound), ``no_face`` (no face to score). A bad prediction
never stops the others.

FID, FVD, expression FID and dialogue coherence need feature extractors / a text-embedding
model whose weights do not ship: each is one set-level row (``pair_id`` ``*``) with status
``skipped`` and the setting to configure; this version computes none of them, also when the
setting is given (then the reason says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from assets.binding.params import BindingParams
from assets.vidchat import metrics as m
from assets.vidchat.media import ClipMedia, PredictionError, load_prediction, load_reference, static_frame
from assets.vision.models import FaceModels
from assets.vision.params import VisionParams
from orchestration.settings import setting_label
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

PAIR_METRICS = ("psnr", "ssim", "arcface", "sync_confidence", "sync_offset", "sync_dist", "voice_similarity")
# metric -> the models-resource field of the weights it needs (none ship)
UNCONFIGURED_METRICS = {"fid": "fid_model", "fvd": "fvd_model", "expression_fid": "expression_model", "dialogue_coherence": "text_embedding_model_dir"}
BUILTIN_SETS = ("ground_truth", "static_frame")
SET_LEVEL = "*"  # pair_id of a set-level row (a distribution metric over all pairs)
NOT_READ = ("missing", "unreadable", "wrong_length", "no_reference")  # pair-level failures: no metric was computed


@dataclass(frozen=True)
class EvalParams:
    duration_tol_s: float
    psnr_cap_db: float
    face_fps: float
    min_face_px: float
    sync: BindingParams

    @classmethod
    def from_thresholds(cls) -> "EvalParams":
        vision = VisionParams.from_thresholds()
        return cls(threshold("vidchat_duration_tol_s"), threshold("vidchat_psnr_cap_db"), vision.mouth_fps, vision.min_face_px, BindingParams.from_thresholds("mouth"))

    def face_step(self, fps: float) -> int:
        return max(1, int(round(fps / self.face_fps)))


@dataclass(frozen=True)
class EvalModels:
    faces: FaceModels
    voice_encoder: object  # resemblyzer VoiceEncoder
    optional: dict[str, str | None]  # UNCONFIGURED_METRICS' settings as configured


@dataclass(frozen=True)
class Reference:
    pair_id: str
    media: ClipMedia
    faces: m.FaceSamples
    voice: np.ndarray | None


def prepare_reference(pair_id: str, path: Path, models: EvalModels, params: EvalParams) -> Reference:
    media = load_reference(path)
    faces = m.face_samples(models.faces, media.frames, params.face_step(media.fps), min_face_px=params.min_face_px)
    voice = m.voice_embedding(models.voice_encoder, media.audio) if media.audio is not None else None
    return Reference(pair_id, media, faces, voice)


PredictionSource = Callable[[Reference], ClipMedia]  # raises PredictionError


def folder_source(pred_dir: Path, params: EvalParams) -> PredictionSource:
    def load(ref: Reference) -> ClipMedia:
        path = Path(pred_dir) / f"{ref.pair_id}.mp4"
        if not path.is_file():
            raise PredictionError("missing", f"{path.name} is not in {pred_dir}")
        return load_prediction(path, ref.media, tolerance_s=params.duration_tol_s)

    return load


def builtin_source(name: str) -> PredictionSource:
    if name == "ground_truth":
        return lambda ref: ref.media
    if name == "static_frame":
        return lambda ref: static_frame(ref.media)
    raise ValueError(f"built-in prediction set {name!r}: expected one of {BUILTIN_SETS}")


def _row(set_name: str, pair_id: str, metric: str, value: float | None = None, status: str = "ok", reason: str | None = None) -> dict:
    if value is not None and not math.isfinite(value):
        value, status, reason = None, "error", f"non-finite value {value}"
    return {"prediction_set": set_name, "pair_id": pair_id, "metric": metric, "value": value, "status": status, "reason": reason}


def score_media(set_name: str, ref: Reference, pred: ClipMedia, models: EvalModels, params: EvalParams) -> list[dict]:
    """Every pair metric of one readable prediction (already on the reference's frame grid)."""
    pid = ref.pair_id
    psnr, ssim = m.psnr_ssim(ref.media.frames, pred.frames, psnr_cap_db=params.psnr_cap_db)
    rows = [_row(set_name, pid, "psnr", psnr), _row(set_name, pid, "ssim", ssim)]
    # the same sampled frames as the reference's, so ArcFace compares frame i with frame i
    faces = ref.faces if pred is ref.media else m.face_samples(models.faces, pred.frames, params.face_step(pred.fps), min_face_px=params.min_face_px)
    ident = m.identity_similarity(ref.faces, faces)
    rows.append(_row(set_name, pid, "arcface", ident) if ident is not None else _row(set_name, pid, "arcface", status="no_face", reason="no face in the reference clip"))

    sync_metrics = ("sync_confidence", "sync_offset", "sync_dist")
    if pred.audio is None:
        rows += [_row(set_name, pid, k, status="no_audio", reason="the prediction has no audio stream") for k in sync_metrics]
    else:
        sync = m.clip_sync(faces, len(pred.frames), pred.audio, pred.fps, params.sync)
        if sync is None:
            rows += [_row(set_name, pid, k, status="no_face", reason="fewer than 2 sampled frames of the prediction show a face") for k in sync_metrics]
        else:
            rows += [_row(set_name, pid, "sync_confidence", sync.confidence), _row(set_name, pid, "sync_offset", float(sync.offset)), _row(set_name, pid, "sync_dist", sync.dist)]

    if pred.audio is None or ref.voice is None:
        rows.append(_row(set_name, pid, "voice_similarity", status="no_audio", reason=f"the {'prediction' if pred.audio is None else 'reference'} has no audio"))
    else:
        voice = ref.voice if pred.audio is ref.media.audio else m.voice_embedding(models.voice_encoder, pred.audio)
        rows.append(_row(set_name, pid, "voice_similarity", float(voice @ ref.voice)))
    return rows


def failed_rows(set_name: str, pair_id: str, status: str, reason: str) -> list[dict]:
    return [_row(set_name, pair_id, k, status=status, reason=reason) for k in PAIR_METRICS]


def unconfigured_rows(set_name: str, optional: dict[str, str | None]) -> list[dict]:
    rows = []
    for metric, field in UNCONFIGURED_METRICS.items():
        if optional.get(field):
            reason = f"not_implemented: {setting_label(field)} is set, but this version does not compute {metric}"
        else:
            reason = f"not_configured: set {setting_label(field)} to its feature-extractor weights"
        rows.append(_row(set_name, SET_LEVEL, metric, status="skipped", reason=reason))
    return rows


def evaluate(
    sets: dict[str, PredictionSource],
    references: Iterable[tuple[str, Path | None, str | None]],
    models: EvalModels,
    params: EvalParams,
    *,
    log: Callable[[str], None] = lambda msg: None,
) -> pl.DataFrame:
    """``vidchat_scores`` rows of every set in ``sets`` over ``references``: (pair_id, reference
    mp4, or None and why there is none). Pairs outer, sets inner: one reference in memory at a time."""
    rows: list[dict] = []
    for pair_id, path, missing_reason in references:
        if path is None:
            for name in sets:
                rows += failed_rows(name, pair_id, "no_reference", missing_reason or "no reference clip")
            continue
        ref = prepare_reference(pair_id, path, models, params)
        for name, source in sets.items():
            try:
                pred = source(ref)
            except PredictionError as e:
                log(f"{name}/{pair_id}: {e.status} ({e.reason})")
                rows += failed_rows(name, pair_id, e.status, e.reason)
                continue
            rows += score_media(name, ref, pred, models, params)
    for name in sets:
        rows += unconfigured_rows(name, models.optional)
    spec = TABLES["vidchat_scores"]
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema)) if rows else spec.empty()


def summary(scores: pl.DataFrame, evaluated_at) -> pl.DataFrame:
    """``vidchat_summary``: one row per prediction set, the mean of each metric over its ok rows
    (null when no pair has it), pairs scored / not scored and why."""
    spec = TABLES["vidchat_summary"]
    out = []
    for (name,), s in scores.sort("pair_id", "metric").group_by("prediction_set", maintain_order=True):
        per_pair = s.filter(pl.col("pair_id") != SET_LEVEL)
        status = per_pair.group_by("pair_id", maintain_order=True).agg(pl.col("status").first(), pl.col("reason").first())
        failed = status.filter(pl.col("status").is_in(NOT_READ))
        row = {
            "prediction_set": name,
            "pairs": status.height,
            "scored": status.height - failed.height,
            "not_scored": failed.height,
            "not_scored_pairs": [f"{p}: {st} ({r})" for p, st, r in failed.iter_rows()],
            "skipped_metrics": [f"{k}: {r}" for k, r in s.filter(pl.col("status") == "skipped").select("metric", "reason").iter_rows()],
            "evaluated_at": evaluated_at,
        }
        ok = s.filter(pl.col("status") == "ok")
        for metric in (*PAIR_METRICS, *UNCONFIGURED_METRICS):
            vals = ok.filter(pl.col("metric") == metric)["value"]
            row[metric] = float(vals.mean()) if vals.len() else None
        out.append(row)
    return spec.conform(pl.DataFrame(out, schema=spec.polars_schema)) if out else spec.empty()


def cut_references(
    testset: pl.DataFrame,
    clips: pl.DataFrame,
    videos: pl.DataFrame,
    turns: pl.DataFrame,
    open_media: Callable[[str], object],
    workdir: Path,
) -> list[tuple[str, Path | None, str | None]]:
    """Each test pair's reference responder clip cut to ``workdir/<pair_id>.mp4`` (as the release
    cuts it), in pair order; (pair_id, None, why) for a pair whose clip or video is not in the lake.
    ``open_media(raw_uri)``: a context manager giving a local path of the source video."""
    from assets.vidchat.media import reference_mp4

    workdir.mkdir(parents=True, exist_ok=True)
    clip_rows = {(r["video_id"], r["clip_id"]): r for r in clips.iter_rows(named=True)}
    video_rows = {r["video_id"]: r for r in videos.iter_rows(named=True)}
    out: dict[str, tuple[str, Path | None, str | None]] = {}
    todo: dict[str, list[tuple[str, dict]]] = {}
    for pair in testset.sort("rank", "pair_id").iter_rows(named=True):
        pid, vid = pair["pair_id"], pair["video_id"]
        clip = clip_rows.get((vid, pair["responder_clip_id"]))
        if clip is None or vid not in video_rows:
            out[pid] = (pid, None, f"responder clip {pair['responder_clip_id']} of video {vid} is not in the lake")
        else:
            todo.setdefault(vid, []).append((pid, clip))
    for vid, items in todo.items():  # one source download per video
        v = video_rows[vid]
        vturns = turns.filter(pl.col("video_id") == vid)
        with open_media(v["raw_uri"]) as media_path:
            for pid, clip in items:
                path = workdir / f"{pid}.mp4"
                path.write_bytes(reference_mp4(Path(media_path), clip, vturns, int(v["width"]), int(v["height"]), bool(v["has_audio"])))
                out[pid] = (pid, path, None)
    return [out[p] for p in testset.sort("rank", "pair_id")["pair_id"].to_list()]
