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

Optional metrics (their weights do not ship; `assets.vidchat.features` says which model each
loads and why). Configured, each runs; unset, it is one set-level row (``pair_id`` ``*``) with
status ``skipped`` and the setting to configure in ``reason``:

- ``fid``, ``fvd``, ``expression_fid`` (set-level, ``pair_id`` ``*``): Fréchet distance between
  the set's features and its reference clips' features, over the pairs the set scored.
  FID: Inception pool features of the frames sampled at ``vidchat_feature_fps``; FVD: I3D
  features of up to ``vidchat_fvd_clips_per_pair`` non-overlapping 16-frame clips per pair;
  expression FID: Deep3DFaceRecon expression coefficients of the face in each frame sampled
  at ``vidchat_feature_fps`` (frames without a face are left out). A set with fewer than two
  samples on a side gets ``skipped`` with the count.
- ``dialogue_coherence``, ``coherence_similarity`` (per pair; setting
  ``text_embedding_model_dir``, and ``asr_model_dir`` for Whisper): the response's speech is
  transcribed (the pipeline's Whisper) and embedded. The candidates are the reference
  responses (Whisper text of every test pair's reference clip): the true one and the other
  pairs' (answers to other initiators). ``coherence_similarity`` = cosine of the generated
  response's embedding with its own pair's reference response; ``dialogue_coherence`` =
  1 / rank of the true response among all candidates by that cosine (1: the generated answer
  is nearer its own reference answer than any other pair's; the set mean is the mean
  reciprocal rank). SpeakerVid-5M ranks five LLM-written candidates per sample with CLIP text
  distance; those candidates are not in the lake, the other pairs' real answers stand in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from assets.binding.params import BindingParams
from assets.binding.sync import SyncModels
from assets.vidchat import features as feat
from assets.vidchat import metrics as m
from assets.vidchat.media import ClipMedia, PredictionError, load_prediction, load_reference, static_frame
from assets.vision.models import FaceModels
from assets.vision.params import VisionParams
from orchestration.settings import setting_label
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

PAIR_METRICS = ("psnr", "ssim", "arcface", "landmark_error", "sync_confidence", "sync_offset", "sync_dist", "voice_similarity")
# optional metric -> the models-resource field of the weights it needs (none ship)
OPTIONAL_METRICS = {"fid": "fid_model", "fvd": "fvd_model", "expression_fid": "expression_model", "dialogue_coherence": "text_embedding_model_dir"}
DISTRIBUTION_METRICS = ("fid", "fvd", "expression_fid")  # set-level Fréchet distances
TEXT_METRICS = ("dialogue_coherence", "coherence_similarity")  # per pair, with text_embedding_model_dir
SUMMARY_METRICS = (*PAIR_METRICS, *DISTRIBUTION_METRICS, *TEXT_METRICS)
BUILTIN_SETS = ("ground_truth", "static_frame")
SET_LEVEL = "*"  # pair_id of a set-level row (a distribution metric over all pairs)
RANK_TIE = 1e-9  # cosine margin: a candidate ranks above the true response only if strictly nearer
NOT_READ = ("missing", "unreadable", "wrong_length", "no_reference")  # pair-level failures: no metric was computed


@dataclass(frozen=True)
class EvalParams:
    duration_tol_s: float
    psnr_cap_db: float
    face_fps: float
    min_face_px: float
    sync: BindingParams
    feature_fps: float
    fvd_clips_per_pair: int

    @classmethod
    def from_thresholds(cls, sync_backend: str = "mouth") -> "EvalParams":
        vision = VisionParams.from_thresholds()
        return cls(
            threshold("vidchat_duration_tol_s"), threshold("vidchat_psnr_cap_db"), vision.mouth_fps, vision.min_face_px, BindingParams.from_thresholds(sync_backend),
            threshold("vidchat_feature_fps"), int(threshold("vidchat_fvd_clips_per_pair")),
        )

    def face_step(self, fps: float) -> int:
        return max(1, int(round(fps / self.face_fps)))

    def feature_stride(self) -> int:
        """Every how many face samples a FID / expression sample is taken."""
        return max(1, int(round(self.face_fps / self.feature_fps)))


@dataclass(frozen=True)
class EvalModels:
    faces: FaceModels
    voice_encoder: object  # resemblyzer VoiceEncoder
    sync: SyncModels | None = None  # the sync_backend setting (None: mouth)
    # optional metrics' models (None: not configured, the metric is skipped)
    fid: object | None = None  # pytorch-fid InceptionV3
    fvd: object | None = None  # TorchScript I3D
    expression_fid: object | None = None  # Deep3DFaceRecon ReconNet
    text: feat.TextModels | None = None  # Whisper + text embedder (dialogue_coherence)

    def configured(self, metric: str) -> bool:
        return getattr(self, "text" if metric == "dialogue_coherence" else metric) is not None


@dataclass(frozen=True)
class Features:
    """Optional-metric features of one clip (None: the metric is not configured)."""

    fid: np.ndarray | None = None
    fvd: np.ndarray | None = None
    expression_fid: np.ndarray | None = None
    text: str | None = None  # Whisper text of the audio (None: not configured or no audio)


@dataclass(frozen=True)
class Reference:
    pair_id: str
    media: ClipMedia
    faces: m.FaceSamples
    voice: np.ndarray | None
    features: Features


def clip_features(media: ClipMedia, faces: m.FaceSamples, models: EvalModels, params: EvalParams, *, visual: bool = True, text: bool = True) -> Features:
    """The configured optional metrics' features of one clip (face samples already taken);
    ``visual`` / ``text`` False: those parts are not computed (None)."""
    sampled = np.arange(0, len(faces.frames), params.feature_stride())
    with_face = sampled[faces.has_face[sampled]]
    out = Features()
    if visual:
        out = Features(
            fid=feat.inception_features(models.fid, media.frames[faces.frames[sampled]]) if models.fid is not None else None,
            fvd=feat.i3d_features(models.fvd, media.frames, feat.fvd_clip_starts(len(media.frames), params.fvd_clips_per_pair)) if models.fvd is not None else None,
            expression_fid=(
                feat.expression_features(models.expression_fid, media.frames[faces.frames[with_face]], list(faces.kps[with_face]))
                if models.expression_fid is not None
                else None
            ),
        )
    if text and models.text is not None and media.audio is not None:
        out = replace(out, text=feat.transcribe(models.text, media.audio))
    return out


def prepare_reference(pair_id: str, path: Path, models: EvalModels, params: EvalParams) -> Reference:
    media = load_reference(path)
    faces = m.face_samples(models.faces, media.frames, params.face_step(media.fps), min_face_px=params.min_face_px)
    voice = m.voice_embedding(models.voice_encoder, media.audio) if media.audio is not None else None
    return Reference(pair_id, media, faces, voice, clip_features(media, faces, models, params))


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


def score_media(set_name: str, ref: Reference, pred: ClipMedia, models: EvalModels, params: EvalParams) -> tuple[list[dict], Features]:
    """Every pair metric of one readable prediction (already on the reference's frame grid) and
    its optional-metric features (for the set-level and text metrics)."""
    pid = ref.pair_id
    psnr, ssim = m.psnr_ssim(ref.media.frames, pred.frames, psnr_cap_db=params.psnr_cap_db)
    rows = [_row(set_name, pid, "psnr", psnr), _row(set_name, pid, "ssim", ssim)]
    # the reference's own frames (the ground truth, a copy of the reference file): its analysis is reused
    same_frames = pred.frames is ref.media.frames or np.array_equal(pred.frames, ref.media.frames)
    same_audio = pred.audio is ref.media.audio or (pred.audio is not None and ref.media.audio is not None and np.array_equal(pred.audio, ref.media.audio))
    # the same sampled frames as the reference's, so ArcFace compares frame i with frame i
    faces = ref.faces if same_frames else m.face_samples(models.faces, pred.frames, params.face_step(pred.fps), min_face_px=params.min_face_px)
    no_ref_face = "no face in the reference clip"
    ident = m.identity_similarity(ref.faces, faces)
    rows.append(_row(set_name, pid, "arcface", ident) if ident is not None else _row(set_name, pid, "arcface", status="no_face", reason=no_ref_face))
    lmk = m.landmark_error(ref.faces, faces)
    rows.append(_row(set_name, pid, "landmark_error", lmk) if lmk is not None else _row(set_name, pid, "landmark_error", status="no_face", reason=no_ref_face))

    sync_metrics = ("sync_confidence", "sync_offset", "sync_dist")
    if pred.audio is None:
        rows += [_row(set_name, pid, k, status="no_audio", reason="the prediction has no audio stream") for k in sync_metrics]
    else:
        sync = m.clip_sync(faces, pred.frames, pred.audio, pred.fps, params.sync, models.sync)
        if sync is None:
            rows += [_row(set_name, pid, k, status="no_face", reason="fewer than 2 sampled frames of the prediction show a face") for k in sync_metrics]
        else:
            rows += [_row(set_name, pid, "sync_confidence", sync.confidence), _row(set_name, pid, "sync_offset", float(sync.offset)), _row(set_name, pid, "sync_dist", sync.dist)]

    if pred.audio is None or ref.voice is None:
        rows.append(_row(set_name, pid, "voice_similarity", status="no_audio", reason=f"the {'prediction' if pred.audio is None else 'reference'} has no audio"))
    else:
        voice = ref.voice if same_audio else m.voice_embedding(models.voice_encoder, pred.audio)
        rows.append(_row(set_name, pid, "voice_similarity", float(voice @ ref.voice)))

    if same_frames and same_audio:
        return rows, ref.features
    own = clip_features(pred, faces, models, params, visual=not same_frames, text=not same_audio)
    visual = ref.features if same_frames else own
    return rows, Features(visual.fid, visual.fvd, visual.expression_fid, ref.features.text if same_audio else own.text)


def failed_rows(set_name: str, pair_id: str, status: str, reason: str, models: EvalModels) -> list[dict]:
    metrics = PAIR_METRICS + (TEXT_METRICS if models.text is not None else ())
    return [_row(set_name, pair_id, k, status=status, reason=reason) for k in metrics]


def skipped_rows(set_name: str, models: EvalModels) -> list[dict]:
    """One set-level ``skipped`` row per optional metric whose setting is not configured."""
    return [
        _row(set_name, SET_LEVEL, metric, status="skipped", reason=f"not_configured: set {setting_label(field)} to its model's weights")
        for metric, field in OPTIONAL_METRICS.items()
        if not models.configured(metric)
    ]


def distribution_rows(set_name: str, predictions: dict[str, Features], references: dict[str, Features], models: EvalModels) -> list[dict]:
    """Set-level Fréchet distances of the configured feature extractors over the set's scored pairs."""
    rows = []
    for metric in DISTRIBUTION_METRICS:
        if not models.configured(metric):
            continue
        pairs = sorted(predictions)
        # a clip shorter than one I3D clip, or without a face, adds no sample
        pred = [x for x in (getattr(predictions[p], metric) for p in pairs) if len(x)]
        ref = [x for x in (getattr(references[p], metric) for p in pairs) if len(x)]
        n_pred, n_ref = sum(len(x) for x in pred), sum(len(x) for x in ref)
        if min(n_pred, n_ref) < 2:
            rows.append(_row(set_name, SET_LEVEL, metric, status="skipped", reason=f"too few samples: {n_pred} generated, {n_ref} reference (2 needed on each side)"))
            continue
        rows.append(_row(set_name, SET_LEVEL, metric, feat.frechet_distance(np.concatenate(pred), np.concatenate(ref))))
    return rows


def text_rows(set_name: str, predictions: dict[str, Features], references: dict[str, Features], models: EvalModels, embed: Callable[[str], np.ndarray]) -> list[dict]:
    """Per-pair dialogue coherence (module doc): candidates are all test pairs' reference responses."""
    if models.text is None:
        return []
    candidates = [p for p in sorted(references) if references[p].text is not None]
    cand = np.stack([embed(references[p].text) for p in candidates]) if candidates else np.zeros((0, 0))
    rows = []
    for pid in sorted(predictions):
        if references[pid].text is None or predictions[pid].text is None:
            which = "reference" if references[pid].text is None else "prediction"
            rows += [_row(set_name, pid, k, status="no_audio", reason=f"the {which} has no audio to transcribe") for k in TEXT_METRICS]
            continue
        sims = cand @ embed(predictions[pid].text)
        own = float(sims[candidates.index(pid)])
        rank = 1 + int(np.sum(sims > own + RANK_TIE))
        rows += [_row(set_name, pid, "dialogue_coherence", 1.0 / rank), _row(set_name, pid, "coherence_similarity", own)]
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
    mp4, or None and why there is none). Pairs outer, sets inner: one reference in memory at a
    time; only the optional metrics' features (small vectors, text) are kept across pairs."""
    rows: list[dict] = []
    ref_features: dict[str, Features] = {}
    set_features: dict[str, dict[str, Features]] = {name: {} for name in sets}
    for pair_id, path, missing_reason in references:
        if path is None:
            for name in sets:
                rows += failed_rows(name, pair_id, "no_reference", missing_reason or "no reference clip", models)
            continue
        ref = prepare_reference(pair_id, path, models, params)
        ref_features[pair_id] = ref.features
        for name, source in sets.items():
            try:
                pred = source(ref)
            except PredictionError as e:
                log(f"{name}/{pair_id}: {e.status} ({e.reason})")
                rows += failed_rows(name, pair_id, e.status, e.reason, models)
                continue
            pair_rows, set_features[name][pair_id] = score_media(name, ref, pred, models, params)
            rows += pair_rows
    embed = text_embedder(models)
    for name in sets:
        rows += skipped_rows(name, models)
        rows += distribution_rows(name, set_features[name], ref_features, models)
        rows += text_rows(name, set_features[name], ref_features, models, embed)
    spec = TABLES["vidchat_scores"]
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema)) if rows else spec.empty()


def text_embedder(models: EvalModels) -> Callable[[str], np.ndarray]:
    """One embedding per distinct text, each encoded alone (no padding): equal texts get equal vectors."""
    cache: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = feat.embed_texts(models.text, [text])[0]
        return cache[text]

    return embed


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
        for metric in SUMMARY_METRICS:
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
