"""The reference responder: a small autoregressive GRU that predicts, frame by frame, the
responder's face motion (`assets.train.motion`: 2d106 landmark displacements in face-box units)
from the responder's audio and the initiator's preceding audio and motion.

Architecture (``hidden`` = 256, one GRU layer each: about 1 M parameters):

- initiator encoder: a GRU over the last ``init_max_s`` seconds of the initiator clip, one step
  per frame of [log-mel, motion]; its final state starts the decoder (the reply's context);
- responder audio: a 1-D convolution over the log-mel (+-2 frames: lips move slightly ahead of
  the sound they make);
- decoder: a GRU whose step ``t`` reads the audio features of frame ``t`` and the motion of
  frame ``t - 1`` and emits the motion of frame ``t``. Training feeds the true previous motion
  (teacher forcing) with noise and random blanking so the model leans on the audio and is robust
  to its own errors; generation feeds back its own predictions, from 0 (the first frame is the
  reference frame itself).

Features are standardised with the training set's statistics, stored in the checkpoint.
Checkpoints (``last.pt`` in the checkpoint folder, written atomically every ``save_every`` steps
and at the end) hold the model, the optimizer, the step and the random states, so a resumed run
continues exactly where it stopped.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from assets.train.motion import MOTION_DIM, N_MELS

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class PairFeatures:
    """One dialogue pair as the model sees it: per-frame responder audio [T, 40] and motion
    [T, 212], the initiator's last frames' audio [Ti, 40] and motion [Ti, 212]."""

    pair_id: str
    resp_audio: np.ndarray
    resp_motion: np.ndarray
    init_audio: np.ndarray
    init_motion: np.ndarray


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    hidden: int = 256
    layers: int = 1  # 2 layers: 8x slower per step on 2 CPU cores, no better on the demo lake
    crop_frames: int = 50  # responder frames per training sequence (a random 2 s window)
    init_frames: int = 50  # initiator frames the encoder reads (its last 2 s)
    teacher_noise: float = 0.5  # std of the noise on the fed-back motion (standardised units)
    teacher_drop: float = 0.3  # share of steps whose fed-back motion is blanked
    save_every: int = 100
    seed: int = 0
    fps: float = 25.0


@dataclass
class Stats:
    """Standardisation of the features (training-set mean and std per dimension)."""

    audio_mean: list[float] = field(default_factory=list)
    audio_std: list[float] = field(default_factory=list)
    motion_std: list[float] = field(default_factory=list)  # motion is a displacement: mean 0 by construction

    @classmethod
    def of(cls, feats: Sequence[PairFeatures]) -> "Stats":
        audio = np.concatenate([f.resp_audio for f in feats] + [f.init_audio for f in feats])
        motion = np.concatenate([f.resp_motion for f in feats] + [f.init_motion for f in feats])
        # a floor: a landmark that never moved in training must not blow up at generation
        mstd = np.maximum(motion.std(axis=0), 1e-3)
        return cls(audio.mean(axis=0).tolist(), np.maximum(audio.std(axis=0), 1e-3).tolist(), mstd.tolist())

    def audio(self, a: np.ndarray) -> np.ndarray:
        return ((a - np.asarray(self.audio_mean, np.float32)) / np.asarray(self.audio_std, np.float32)).astype(np.float32)

    def motion(self, m: np.ndarray) -> np.ndarray:
        return (m / np.asarray(self.motion_std, np.float32)).astype(np.float32)

    def unmotion(self, m: np.ndarray) -> np.ndarray:
        return (m * np.asarray(self.motion_std, np.float32)).astype(np.float32)


class Responder(nn.Module):
    def __init__(self, hidden: int = 256, layers: int = 1):
        super().__init__()
        self.encoder = nn.GRU(N_MELS + MOTION_DIM, hidden, layers, batch_first=True)
        self.audio = nn.Sequential(nn.Conv1d(N_MELS, hidden, kernel_size=5, padding=2), nn.GELU())
        self.decoder = nn.GRU(hidden + MOTION_DIM, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, MOTION_DIM)

    def context(self, init_audio: torch.Tensor, init_motion: torch.Tensor) -> torch.Tensor:
        """Decoder start state [layers, B, hidden] from the initiator's frames [B, Ti, *]."""
        _, h = self.encoder(torch.cat([init_audio, init_motion], dim=-1))
        return h

    def forward(self, resp_audio: torch.Tensor, prev_motion: torch.Tensor, init_audio: torch.Tensor, init_motion: torch.Tensor) -> torch.Tensor:
        """Teacher-forced motion [B, T, 212] given the previous frames' motion [B, T, 212]."""
        a = self.audio(resp_audio.transpose(1, 2)).transpose(1, 2)
        out, _ = self.decoder(torch.cat([a, prev_motion], dim=-1), self.context(init_audio, init_motion))
        return self.head(out)

    @torch.no_grad()
    def generate(self, resp_audio: torch.Tensor, init_audio: torch.Tensor, init_motion: torch.Tensor) -> torch.Tensor:
        """Autoregressive motion [B, T, 212]: each frame's prediction is the next frame's input."""
        a = self.audio(resp_audio.transpose(1, 2)).transpose(1, 2)
        h = self.context(init_audio, init_motion)
        prev = torch.zeros(a.shape[0], 1, MOTION_DIM, device=a.device)
        out = []
        for t in range(a.shape[1]):
            y, h = self.decoder(torch.cat([a[:, t : t + 1], prev], dim=-1), h)
            prev = self.head(y)
            out.append(prev)
        return torch.cat(out, dim=1)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(prefer: str = "auto", *, cuda_available: bool | None = None) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is an error."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if prefer == "auto":
        return torch.device("cuda" if available else "cpu")
    if prefer == "cuda" and not available:
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    if prefer not in ("cpu", "cuda"):
        raise ValueError(f"device {prefer!r}: expected auto, cpu or cuda")
    return torch.device(prefer)


def _window(f: PairFeatures, stats: Stats, cfg: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A random ``crop_frames`` window of the responder with the motion before each frame."""
    n = len(f.resp_audio)
    start = int(rng.integers(0, max(1, n - cfg.crop_frames + 1)))
    end = min(n, start + cfg.crop_frames)
    motion = stats.motion(f.resp_motion)
    prev = np.concatenate([np.zeros((1, MOTION_DIM), np.float32), motion[:-1]])[start:end]
    return stats.audio(f.resp_audio[start:end]), prev, motion[start:end], stats.audio(f.init_audio[-cfg.init_frames :]), stats.motion(f.init_motion[-cfg.init_frames :])


def _pad(arrays: list[np.ndarray], at_start: bool = False) -> torch.Tensor:
    """[B, max T, D], zero-padded at the end (or at the start: the initiator's last frame stays last)."""
    t = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), t, arrays[0].shape[1]), np.float32)
    for i, a in enumerate(arrays):
        if at_start:
            out[i, t - len(a) :] = a
        else:
            out[i, : len(a)] = a
    return torch.from_numpy(out)


def _batch(feats: Sequence[PairFeatures], stats: Stats, cfg: TrainConfig, rng: np.random.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    items = [_window(feats[i], stats, cfg, rng) for i in rng.integers(0, len(feats), cfg.batch_size)]
    audio, prev, target, ia, im = (list(x) for x in zip(*items))
    mask = _pad([np.ones((len(a), 1), np.float32) for a in audio])
    prev_t = _pad(prev)
    prev_t = prev_t + cfg.teacher_noise * torch.from_numpy(rng.standard_normal(prev_t.shape).astype(np.float32))
    prev_t = prev_t * torch.from_numpy((rng.random(prev_t.shape[:2] + (1,)) >= cfg.teacher_drop).astype(np.float32))
    b = {"audio": _pad(audio), "prev": prev_t, "target": _pad(target), "mask": mask, "init_audio": _pad(ia, True), "init_motion": _pad(im, True)}
    return {k: v.to(device) for k, v in b.items()}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint


def train(
    feats: Sequence[PairFeatures],
    ckpt_dir: Path,
    cfg: TrainConfig,
    *,
    device: torch.device,
    resume: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Train until ``cfg.steps`` (resuming ``ckpt_dir/last.pt`` when there is one and ``resume``);
    returns {"step", "loss" (mean of the last 20 steps), "checkpoint", "parameters"}."""
    if not feats:
        raise ValueError("no training pairs")
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / CHECKPOINT
    torch.manual_seed(cfg.seed)
    model = Responder(cfg.hidden, cfg.layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    step, stats = 0, Stats.of(feats)
    if resume and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, stats = state["step"], Stats(**state["stats"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        log(f"resumed {path} at step {step}")
    losses: list[float] = []

    def checkpoint() -> None:
        _save(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "config": asdict(cfg), "stats": asdict(stats),
                     "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()})

    model.train()
    while step < cfg.steps:
        b = _batch(feats, stats, cfg, rng, device)
        pred = model(b["audio"], b["prev"], b["init_audio"], b["init_motion"])
        loss = (((pred - b["target"]) ** 2) * b["mask"]).sum() / (b["mask"].sum() * MOTION_DIM)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint()
            log(f"step {step}/{cfg.steps} loss {np.mean(losses[-20:]):.4f} -> {path}")
    if not path.exists():
        checkpoint()
    return {"step": step, "loss": float(np.mean(losses[-20:])) if losses else None, "checkpoint": str(path), "parameters": n_parameters(model)}


@dataclass(frozen=True)
class Trained:
    model: Responder
    stats: Stats
    config: TrainConfig
    step: int


def load(ckpt_dir: Path, device: torch.device) -> Trained:
    path = Path(ckpt_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {path}: run `speakerlake baseline train` first")
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = TrainConfig(**state["config"])
    model = Responder(cfg.hidden, cfg.layers).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return Trained(model, Stats(**state["stats"]), cfg, state["step"])


def predict(trained: Trained, f: PairFeatures, device: torch.device) -> np.ndarray:
    """The responder's motion [T, 212] (unstandardised deltas) for every frame of its audio."""
    s, cfg = trained.stats, trained.config
    as_t = lambda a: torch.from_numpy(a[None]).to(device)  # noqa: E731
    out = trained.model.generate(as_t(s.audio(f.resp_audio)), as_t(s.audio(f.init_audio[-cfg.init_frames :])), as_t(s.motion(f.init_motion[-cfg.init_frames :])))
    return s.unmotion(out[0].cpu().numpy())
