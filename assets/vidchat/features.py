"""Feature extractors of VidChatBench's distribution and text metrics (each optional: its weights
do not ship; unset, the metric is reported skipped with the setting to configure).

- ``fid`` (setting ``fid_model``): pytorch-fid's FID Inception-v3 (the TF-FID network most
  papers report, 2048-d final average pool). The setting is the ``pt_inception-2015-12-05``
  state dict file; pytorch-fid's own loader would download it, so its URL loader is pointed
  at the configured file while the library builds the architecture.
- ``fvd`` (setting ``fvd_model``): the TorchScript I3D of StyleGAN-V / common FVD code
  (``i3d_torchscript.pt``, Kinetics-400, a port of the TF-Hub I3D FVD uses): a TorchScript file
  carries its architecture, so none of it is in our code; called as they call it,
  ``detector(videos, rescale=False, resize=False, return_features=True)`` on
  ``[B, 3, 16, 224, 224]`` clips in [-1, 1] (shorter side scaled to 224, centre crop), 400-d.
- ``expression_fid`` (setting ``expression_model``): the paper's FID_Emotion features, the 64
  expression coefficients of Deep3DFaceRecon (``ReconNetWrapper``: a torchvision ResNet-50 —
  or -18 — backbone and seven 1x1 convolution heads id 80, exp 64, tex 80, angle 3, gamma 27,
  trans 2+1). The setting is its ``epoch_20.pth`` checkpoint (``net_recon`` state dict).
  Input: 224x224 RGB in [0, 1]; the face is aligned on its SCRFD 5 keypoints with insightface's
  ArcFace template scaled to 224 px (Deep3DFaceRecon aligns its own 5 points to a slightly
  looser crop: an approximation, the same for prediction and reference).
- ``dialogue_coherence`` (setting ``text_embedding_model_dir``): a transformers encoder
  (``AutoModel`` + ``AutoTokenizer`` directory, e.g. a sentence-transformers model's folder),
  mean-pooled over the attention mask and L2-normalised; the paper uses CLIP text distance.

Fréchet distance: pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``, the stable
version with a diagonal offset for singular products) when both sets hold more samples than
dimensions. With fewer (a small lake: 2048-d Inception features of a few hundred frames) the
covariances have rank below d and the same distance is computed exactly from the samples:
Tr sqrt(S1 S2) is the nuclear norm of Xc1 Xc2^T / sqrt((n-1)(m-1)) (Xc: centred samples), an
n x m problem instead of a d x d matrix square root (about 15 s per distance at d = 2048).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from orchestration.settings import MissingSettingError, require_path, setting_label

BATCH = 16
FVD_CLIP = 16  # frames per I3D clip (FVD's standard)
FVD_SIZE = 224
EXPRESSION_SIZE = 224
# Deep3DFaceRecon's ReconNetWrapper heads: id, exp, tex, angle, gamma, (tx, ty), tz
DEEP3D_HEADS = (80, 64, 80, 3, 27, 2, 1)
DEEP3D_EXP = 1  # index of the expression head


def _load_error(field: str, path: Path, what: str, e: Exception) -> MissingSettingError:
    return MissingSettingError(f"{what}: {setting_label(field)} = {path} could not be loaded ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------------- FID
def load_fid_inception(value: str | None):
    """pytorch-fid's FID Inception-v3 (pool features) with the weights at ``fid_model``."""
    import torch
    from pytorch_fid import inception as pf

    path = require_path(value, "fid_model", what="FID Inception-v3 weights (pytorch-fid pt_inception-2015-12-05 state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # the library builds the architecture; its download is replaced by the configured file
        with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: state):
            net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except (RuntimeError, OSError, KeyError, ValueError, TypeError) as e:
        raise _load_error("fid_model", path, "FID Inception-v3 weights", e) from None
    return net.eval()


def inception_features(net, frames: np.ndarray) -> np.ndarray:
    """[n, 2048] pool features of BGR uint8 frames (the network resizes to 299 itself)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), BATCH):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + BATCH, :, :, ::-1])).permute(0, 3, 1, 2).float() / 255.0
            out.append(net(x)[0].flatten(1).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2048))


# ---------------------------------------------------------------------------- FVD
def load_i3d(value: str | None):
    """The TorchScript I3D FVD detector at ``fvd_model``."""
    import torch

    path = require_path(value, "fvd_model", what="FVD I3D detector (TorchScript i3d_torchscript.pt)")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, OSError, ValueError) as e:
        raise _load_error("fvd_model", path, "FVD I3D detector", e) from None


def fvd_clip_starts(n_frames: int, max_clips: int) -> list[int]:
    """Starts of up to ``max_clips`` non-overlapping 16-frame clips spread over the clip."""
    fit = n_frames // FVD_CLIP
    if fit == 0:
        return []
    k = min(fit, max_clips)
    slots = np.linspace(0, fit - 1, k).round().astype(int)  # evenly over the whole clip
    return sorted({int(s) * FVD_CLIP for s in slots})


def _center_square(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    rh, rw = max(size, round(h * scale)), max(size, round(w * scale))
    img = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (rh - size) // 2, (rw - size) // 2
    return img[y : y + size, x : x + size, ::-1]  # RGB


def i3d_features(net, frames: np.ndarray, starts: list[int]) -> np.ndarray:
    """[len(starts), d] I3D features of the 16-frame clips of BGR uint8 ``frames`` at ``starts``."""
    import torch

    out = []
    with torch.inference_mode():
        for s in starts:
            clip = np.stack([_center_square(f, FVD_SIZE) for f in frames[s : s + FVD_CLIP]])  # [16, 224, 224, 3]
            x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # [1, 3, 16, 224, 224] in [-1, 1]
            out.append(net(x, rescale=False, resize=False, return_features=True).reshape(1, -1).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


# ---------------------------------------------------------------------------- expression FID
def deep3d_recon_net(backbone: str = "resnet50"):
    """Deep3DFaceRecon's ReconNetWrapper: a torchvision ResNet without its fc, seven 1x1 heads."""
    import torch
    import torchvision

    class ReconNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = getattr(torchvision.models, backbone)(weights=None)
            width = self.backbone.fc.in_features
            self.backbone.fc = torch.nn.Identity()  # no parameters: the checkpoint has no backbone.fc
            self.final_layers = torch.nn.ModuleList(torch.nn.Conv2d(width, k, 1, bias=True) for k in DEEP3D_HEADS)

        def forward(self, x):  # the 64 expression coefficients only
            return self.final_layers[DEEP3D_EXP](self.backbone(x)[:, :, None, None]).flatten(1)

    return ReconNet()


def load_expression_net(value: str | None):
    """Deep3DFaceRecon's reconstruction network from its checkpoint at ``expression_model``
    (``{"net_recon": state_dict}`` or the bare state dict; ResNet-50 or -18 read from its keys)."""
    import torch

    path = require_path(value, "expression_model", what="expression features (Deep3DFaceRecon epoch_20.pth checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt.get("net_recon", ckpt)
        backbone = "resnet50" if "backbone.layer1.0.conv3.weight" in state else "resnet18"
        net = deep3d_recon_net(backbone)
        net.load_state_dict(state)
    except (RuntimeError, OSError, KeyError, ValueError, AttributeError, TypeError) as e:
        raise _load_error("expression_model", path, "expression features (Deep3DFaceRecon)", e) from None
    return net.eval()


def expression_features(net, frames: np.ndarray, kps: list[np.ndarray]) -> np.ndarray:
    """[n, 64] expression coefficients of the faces at 5-point ``kps`` of BGR ``frames`` (one per frame)."""
    import torch
    from insightface.utils import face_align

    crops = []
    for frame, k in zip(frames, kps, strict=True):
        with contextlib.redirect_stderr(io.StringIO()):
            crop = face_align.norm_crop(np.ascontiguousarray(frame), landmark=np.asarray(k, dtype=np.float32), image_size=EXPRESSION_SIZE)
        crops.append(crop[:, :, ::-1])
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), BATCH):
            x = torch.from_numpy(np.ascontiguousarray(np.stack(crops[i : i + BATCH]))).permute(0, 3, 1, 2).float() / 255.0
            out.append(net(x).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, DEEP3D_HEADS[DEEP3D_EXP]))


# ---------------------------------------------------------------------------- text
@dataclass(frozen=True)
class TextModels:
    asr: object  # faster_whisper.WhisperModel
    tokenizer: object
    encoder: object  # transformers AutoModel
    language: str | None
    beam_size: int = 5
    transcripts: dict[str, str] = field(default_factory=dict)  # sha1 of the audio samples -> text


def load_text_models(text_dir: str | None, asr_dir: str | None, language: str | None, *, beam_size: int = 5) -> TextModels:
    """The text embedder at ``text_embedding_model_dir`` and the pipeline's Whisper (``asr_model_dir``)."""
    from faster_whisper import WhisperModel
    from transformers import AutoModel, AutoTokenizer

    path = require_path(text_dir, "text_embedding_model_dir", what="text-embedding model (dialogue coherence)")
    asr_path = require_path(asr_dir, "asr_model_dir", what="Whisper model (dialogue coherence transcribes the responses)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    except (OSError, ValueError, KeyError) as e:
        raise _load_error("text_embedding_model_dir", path, "text-embedding model", e) from None
    asr = WhisperModel(str(asr_path), device="cpu", compute_type="int8", local_files_only=True)
    return TextModels(asr, tokenizer, encoder, language, beam_size)


def transcribe(models: TextModels, audio: np.ndarray) -> str:
    """Whisper text of one clip's audio (16 kHz mono). A clip is at most 14 s with the other
    speakers silenced: one Whisper window, so faster-whisper's own decoding is enough. One
    decoding per distinct audio (a prediction that reuses a reference's audio costs nothing)."""
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    key = hashlib.sha1(samples.tobytes()).hexdigest()
    if key not in models.transcripts:
        segments, _ = models.asr.transcribe(samples, language=models.language, beam_size=models.beam_size, condition_on_previous_text=False)
        models.transcripts[key] = " ".join(s.text.strip() for s in segments).strip()
    return models.transcripts[key]


def embed_texts(models: TextModels, texts: list[str]) -> np.ndarray:
    """[n, d] L2-normalised mean-pooled encoder embeddings."""
    import torch

    with torch.inference_mode():
        enc = models.tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
        hidden = models.encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy().astype(np.float64)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------- distance
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to feature sets ``a`` [n, d] and ``b`` [m, d] (n, m >= 2);
    rounding below 0 (equal sets) reads 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if max(len(a), len(b)) <= a.shape[1]:
        return max(0.0, _frechet_from_samples(a, b))
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy.linalg import LinAlgWarning

    # fewer samples than dimensions give singular covariances: sqrtm warns, the library prints
    # when it adds its diagonal offset; both are expected here
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        return max(0.0, float(calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))))


def _frechet_from_samples(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr S_a + Tr S_b - 2 Tr sqrt(S_a S_b) with the sample covariances
    S = Xc^T Xc / (n - 1): the nonzero eigenvalues of S_a S_b are those of C C^T / ((n-1)(m-1)),
    C = Xc_a Xc_b^T, so Tr sqrt(S_a S_b) is C's nuclear norm over sqrt((n-1)(m-1))."""
    n, m = len(a), len(b)
    ac, bc = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    tr_sqrt = float(np.linalg.svd(ac @ bc.T, compute_uv=False).sum()) / np.sqrt((n - 1) * (m - 1))
    return float(diff @ diff + (ac * ac).sum() / (n - 1) + (bc * bc).sum() / (m - 1) - 2.0 * tr_sqrt)
