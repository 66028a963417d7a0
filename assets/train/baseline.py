"""The reference-responder loop over the lake: dialogue pairs (the loader,
`assets.train.loader.LakePairDataset`) -> motion and audio features -> training -> one
``<pair_id>.mp4`` per VidChatBench test pair for `speakerlake vidchat-eval`.

Training pairs: ``dialogue_pairs`` of a tier (default ``sft``) or any SQL condition on that
table, never a pair, responder clip or speaker of the test split (``vidchat_testset``; the
branches already keep test speakers out, the query checks again). Generation: every test pair,
its responder's first frame warped by the motion predicted from its audio and the initiator's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from assets.train import motion as mo
from assets.train.render import warp_frames, write_mp4
from assets.train.responder import PairFeatures, Trained, predict
from assets.vision.models import FaceModels
from assets.vision.mouth import MOUTH

TEST_PAIRS_SQL = "SELECT * FROM vidchat_testset ORDER BY rank, pair_id"


def train_pairs_sql(tier: str | None = "sft", where: str | None = None) -> str:
    """DuckDB query of the training pairs: ``where`` (a condition on ``dialogue_pairs``) or the
    tier, minus everything of the test split."""
    cond = where or (f"tier = '{tier.replace(chr(39), chr(39) * 2)}'" if tier else "TRUE")
    return (
        f"SELECT * FROM dialogue_pairs WHERE ({cond})"
        " AND pair_id NOT IN (SELECT pair_id FROM vidchat_testset)"
        " AND responder_clip_id NOT IN (SELECT responder_clip_id FROM vidchat_testset)"
        " AND responder_speaker_id NOT IN (SELECT responder_speaker_id FROM vidchat_testset UNION SELECT initiator_speaker_id FROM vidchat_testset)"
        " AND initiator_speaker_id NOT IN (SELECT responder_speaker_id FROM vidchat_testset UNION SELECT initiator_speaker_id FROM vidchat_testset)"
        " ORDER BY video_id, pair_id"
    )


def lake_pairs(sql: str, lake_uri: str, *, fps: float, size: tuple[int, int]) -> Iterable[dict]:
    """The loader's pair dicts for ``sql`` (`assets.train.loader`, imported here so the rest of
    this module works without it)."""
    from assets.train.loader import LakePairDataset

    return LakePairDataset(sql, lake_uri, fps=fps, size=size, sample_rate=mo.SAMPLE_RATE)


def clip_features(models: FaceModels, clip: dict, fps: float, *, min_face_px: float = 0.0) -> tuple[np.ndarray, np.ndarray, mo.FaceTrack]:
    """(log-mel [T, 40], motion [T, 212], face track) of one loader clip."""
    frames = clip["frames"]
    track = mo.face_track(models, frames, min_face_px=min_face_px)
    return mo.audio_features(clip["audio"], len(frames), fps), mo.motion_deltas(track), track


def pair_features(models: FaceModels, pair: dict, fps: float, *, min_face_px: float = 0.0) -> PairFeatures:
    ra, rm, _ = clip_features(models, pair["responder"], fps, min_face_px=min_face_px)
    ia, im, _ = clip_features(models, pair["initiator"], fps, min_face_px=min_face_px)
    return PairFeatures(pair["pair_id"], ra, rm, ia, im)


def collect_features(models: FaceModels, pairs: Iterable[dict], fps: float, *, log: Callable[[str], None] = print) -> list[PairFeatures]:
    """Features of every pair; a pair one of whose clips shows no face is skipped with its reason."""
    out = []
    for pair in pairs:
        try:
            out.append(pair_features(models, pair, fps))
        except mo.NoFace as e:
            log(f"pair {pair['pair_id']} skipped: {e}")
    return out


@dataclass(frozen=True)
class Generated:
    pair_id: str
    path: Path | None
    reason: str | None  # why there is no file


def generate_pair(trained: Trained, models: FaceModels, pair: dict, out_dir: Path, device: torch.device) -> Generated:
    """``out_dir/<pair_id>.mp4``: the responder's first frame driven by the predicted motion, with
    the responder's audio, one frame per responder frame."""
    fps = trained.config.fps
    resp = pair["responder"]
    frames = resp["frames"]
    try:
        ref = mo.face_track(models, frames[:1])  # only the reference frame's face: the motion is predicted
        ia, im, _ = clip_features(models, pair["initiator"], fps)
    except mo.NoFace as e:
        return Generated(pair["pair_id"], None, str(e))
    ra = mo.audio_features(resp["audio"], len(frames), fps)
    deltas = predict(trained, PairFeatures(pair["pair_id"], ra, np.zeros((len(frames), mo.MOTION_DIM), np.float32), ia, im), device)
    deltas[0] = 0.0  # frame 0 is the reference frame itself
    # Only the mouth is driven: the model's free-running contour, eye and brow points drift by
    # more than they carry (measured: landmark error above the still frame's with all 106).
    still = np.ones(mo.N_LANDMARKS, bool)
    still[MOUTH] = False
    deltas.reshape(len(deltas), mo.N_LANDMARKS, 2)[:, still] = 0.0
    landmarks = mo.apply_deltas(ref.landmarks[0], ref.boxes[0], deltas)
    video = warp_frames(frames[0], ref.landmarks[0], landmarks)
    path = Path(out_dir) / f"{pair['pair_id']}.mp4"
    write_mp4(path, video, fps, resp["audio"])
    return Generated(pair["pair_id"], path, None)


def generate(trained: Trained, models: FaceModels, pairs: Iterable[dict], out_dir: Path, device: torch.device, *, log: Callable[[str], None] = print) -> list[Generated]:
    out = []
    for pair in pairs:
        g = generate_pair(trained, models, pair, out_dir, device)
        log(f"{g.pair_id}: {g.path or 'not generated: ' + str(g.reason)}")
        out.append(g)
    return out
