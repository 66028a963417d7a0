"""The ``syncnet`` sync backend: the original SyncNet (Chung & Zisserman 2016, the
``syncnet_python`` / ``syncnet-python`` release) on face crops and MFCCs.

Weights: a ``syncnet_v2.model`` state dict at ``SPEAKERLAKE_SYNCNET_WEIGHTS`` (never
downloaded; a missing setting raises ``MissingSettingError`` naming it). The network is
re-declared here layer for layer so that checkpoint's keys (``netcnnaud.*``,
``netfcaud.*``, ``netcnnlip.*``, ``netfclip.*``) load strictly.

Inputs follow the reference pipeline: 224x224 BGR face crops (box side = max(w, h),
widened by ``crop_scale`` = 0.4, taken from the median-smoothed track box, padded with
grey 110), float 0-255, five frames per clip; audio as 13 MFCCs per 10 ms
(python_speech_features defaults: 25 ms rectangular window, 512-point FFT, 26 mel
filters, pre-emphasis 0.97, lifter 22, c0 replaced by log energy) on int16-scaled
16 kHz audio, 20 MFCC frames per 5-video-frame clip. Per window the distance curve is
the mean L2 distance between each clip's lip and audio embeddings at shifts
-max_offset..max_offset; offset/confidence/dist are summarised by
`assets.binding.sync.summarise_curve` exactly like ``SyncNetInstance.evaluate``.

Needs the video frames, so `analyze_binding` must be given ``media_path`` for it. On CPU
it costs roughly a 3-D conv net forward per face per frame: meant for GPU workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from assets.binding.sync import SyncResult, SyncWindow, summarise_curve
from assets.vision.decode import FrameReader
from orchestration.settings import require_path

WEIGHTS_FIELD = "syncnet_weights"
CLIP = 5
CROP = 224


def _net():
    import torch.nn as nn

    def c2(i, o, k, p=(1, 1), s=(1, 1)):
        return [nn.Conv2d(i, o, kernel_size=k, stride=s, padding=p), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    def c3(i, o, k, s=(1, 1, 1), p=(0, 1, 1)):
        return [nn.Conv3d(i, o, kernel_size=k, stride=s, padding=p), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]

    class SyncNet(nn.Module):
        def __init__(self, dim: int = 1024):
            super().__init__()
            self.netcnnaud = nn.Sequential(
                *c2(1, 64, (3, 3)), nn.MaxPool2d((1, 1), (1, 1)),
                *c2(64, 192, (3, 3)), nn.MaxPool2d((3, 3), (1, 2)),
                *c2(192, 384, (3, 3)),
                *c2(384, 256, (3, 3)),
                *c2(256, 256, (3, 3)), nn.MaxPool2d((3, 3), (2, 2)),
                *c2(256, 512, (5, 4), p=(0, 0)),
            )
            self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))
            self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))
            self.netcnnlip = nn.Sequential(
                *c3(3, 96, (5, 7, 7), s=(1, 2, 2), p=(0, 0, 0)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *c3(96, 256, (1, 5, 5), s=(1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                *c3(256, 256, (1, 3, 3)),
                *c3(256, 256, (1, 3, 3)),
                *c3(256, 256, (1, 3, 3)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *c3(256, 512, (1, 6, 6), p=(0, 0, 0)),
            )

        def forward_aud(self, x):  # (N, 1, 13, 20)
            return self.netfcaud(self.netcnnaud(x).flatten(1))

        def forward_lip(self, x):  # (N, 3, 5, 224, 224)
            return self.netfclip(self.netcnnlip(x).flatten(1))

    return SyncNet()


@lru_cache(maxsize=2)
def load_syncnet(path: str | Path | None):
    """The SyncNet module in eval mode, weights from ``path`` (the ``syncnet_weights`` setting);
    loaded once per process and path (later batches on the same worker reuse it)."""
    import torch

    p = require_path(path, WEIGHTS_FIELD, what="SyncNet sync backend (syncnet_v2.model)")
    if p.is_dir():
        cands = sorted(p.glob("*.model")) + sorted(p.glob("*.pt")) + sorted(p.glob("*.pth"))
        if not cands:
            raise FileNotFoundError(f"syncnet_weights={p}: no *.model/*.pt/*.pth file in the directory")
        p = cands[0]
    state = torch.load(str(p), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
    net = _net()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{p}: not a SyncNet checkpoint (missing {missing[:3]}..., unexpected {unexpected[:3]}...)")
    return net.eval()


# ---------------------------------------------------------------- audio features
def mfcc(audio: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """13 x T MFCCs at 100 frames/s with python_speech_features' defaults."""
    from scipy.fft import dct

    x = np.asarray(audio, dtype=np.float64) * 32768.0
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    flen, step, nfft, nfilt = int(round(0.025 * sample_rate)), int(round(0.01 * sample_rate)), 512, 26
    n = 1 if x.size <= flen else 1 + int(np.ceil((x.size - flen) / step))
    x = np.concatenate([x, np.zeros(max((n - 1) * step + flen - x.size, 0))])
    idx = np.arange(flen)[None, :] + step * np.arange(n)[:, None]
    pspec = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy[energy == 0] = np.finfo(float).eps
    mel = np.linspace(0, 2595 * np.log10(1 + (sample_rate / 2) / 700), nfilt + 2)
    bins = np.floor((nfft + 1) * (700 * (10 ** (mel / 2595) - 1)) / sample_rate).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        fb[j, a:b] = (np.arange(a, b) - a) / max(b - a, 1)
        fb[j, b:c] = (c - np.arange(b, c)) / max(c - b, 1)
    feat = pspec @ fb.T
    feat[feat == 0] = np.finfo(float).eps
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    feat *= 1 + 11.0 * np.sin(np.pi * np.arange(13) / 22)
    feat[:, 0] = np.log(energy)
    return feat.T


# ---------------------------------------------------------------- face crops
def crop_face(img: np.ndarray, box: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = box
    bs = max(x2 - x1, y2 - y1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    pad = int(bs * (1 + 2 * crop_scale)) + 1
    fr = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    my, mx = cy + pad, cx + pad
    face = fr[int(my - bs) : int(my + bs * (1 + 2 * crop_scale)), int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale))]
    return cv2.resize(face, (CROP, CROP))


def syncnet_sync(windows: list[SyncWindow], face_tracks: pl.DataFrame, audio: np.ndarray, media_path: str | Path, fps: float, *, max_offset: int, net, batch: int = 16, max_side: int | None = None) -> dict[tuple[int, int], SyncResult]:
    """The ``syncnet`` backend: (track_id, turn_id) -> SyncResult. Face crops come from the
    frames the vision stage saw (same working size, orientation and frame grid)."""
    import torch
    from scipy.signal import medfilt

    cc = mfcc(audio)
    n_vid = int(np.ceil(cc.shape[1] * fps / 100.0)) + 1
    aud_in = []
    for i in range(n_vid):
        a = int(round(i * 100.0 / fps))
        seg = cc[:, a : a + 20]
        aud_in.append(np.pad(seg, ((0, 0), (0, 20 - seg.shape[1]))) if seg.shape[1] < 20 else seg)
    with torch.no_grad():
        aud = torch.cat([net.forward_aud(torch.from_numpy(np.stack(aud_in[i : i + 256])[:, None]).float()) for i in range(0, len(aud_in), 256)])

    need = {w.track_id for w in windows}
    boxes: dict[int, dict[int, np.ndarray]] = {}
    for t in face_tracks.filter(pl.col("track_id").is_in(list(need))).iter_rows(named=True):
        b = np.asarray(t["boxes"], dtype=np.float64)
        k = min(13, len(b) - (1 - len(b) % 2)) if len(b) > 2 else 1
        if k >= 3:
            b = np.stack([medfilt(b[:, c], kernel_size=k) for c in range(4)], 1)
        boxes[int(t["track_id"])] = dict(zip((int(f) for f in t["frames"]), b))
    crops: dict[int, dict[int, np.ndarray]] = {t: {} for t in boxes}
    lip: dict[int, dict[int, torch.Tensor]] = {t: {} for t in boxes}

    def flush(t: int, final: bool) -> None:
        fr = sorted(crops[t])
        starts = [f for f in fr if all(f + d in crops[t] for d in range(CLIP))]
        if not final and len(starts) < batch:
            return
        for i in range(0, len(starts), batch):
            chunk = starts[i : i + batch]
            x = np.stack([np.stack([crops[t][f + d] for d in range(CLIP)], 0) for f in chunk])  # (N, 5, H, W, 3)
            x = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).astype(np.float32))  # (N, 3, 5, 224, 224)
            with torch.no_grad():
                feats = net.forward_lip(x)
            for f, v in zip(chunk, feats):
                lip[t][f] = v
        keep_from = (starts[-1] + 1) if starts else None
        if keep_from is not None:
            crops[t] = {f: c for f, c in crops[t].items() if f >= keep_from}

    with FrameReader(media_path, max_side=max_side) as reader:
        for j, img in reader:
            for t, bx in boxes.items():
                if j in bx:
                    crops[t][j] = crop_face(img, bx[j] * reader.geometry.scale)  # source -> working pixels
            for t in boxes:
                if len(crops[t]) >= batch + CLIP:
                    flush(t, final=False)
    for t in boxes:
        flush(t, final=True)

    out = {}
    zero = torch.zeros(aud.shape[1])
    for w in windows:
        fr = [f for f in range(w.f0, w.f1) if f in lip.get(w.track_id, {})]
        if not fr:
            continue
        v = torch.stack([lip[w.track_id][f] for f in fr])
        curve = []
        for s in range(-max_offset, max_offset + 1):
            a = torch.stack([aud[f + s] if 0 <= f + s < len(aud) else zero for f in fr])
            curve.append(float(torch.nn.functional.pairwise_distance(v, a).mean()))
        out[(w.track_id, w.turn_id)] = summarise_curve(np.array(curve), max_offset)
    return out
