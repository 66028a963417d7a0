"""Import pyannote.audio without the torchcodec probe it cannot use here.

``pyannote.audio.core.io`` tries ``import torchcodec`` when it is first imported (by
whisperx's ``load_model``, which builds a pyannote VAD, and by the diarizer's segmentation
model). torchcodec dlopens the system FFmpeg 4-7 shared libraries (``libavutil.so.5x``),
which this stack does not install: PyAV, which decodes all our media, bundles its own
FFmpeg. pyannote catches the failure and prints a 20-line ``UserWarning`` holding the
loader's traceback, on every run, although nothing failed: speakerlake never asks
pyannote to read a file. Audio is decoded once with PyAV and given to pyannote's models as
in-memory tensors, the first of the remedies the warning itself lists.

So pyannote.audio is imported once, here, with exactly that warning filtered. Every other
warning still shows, and ``pyannote.audio.core.io.TORCHCODEC_AVAILABLE`` stays False: if
some code did hand pyannote a file path it would fail loudly.
"""

from __future__ import annotations

import logging
import warnings

TORCHCODEC_WARNING = r"\s*torchcodec is not installed correctly so built-in audio decoding will fail"


def import_pyannote_audio():
    """``pyannote.audio`` imported without its torchcodec decoder probe warning (idempotent)."""
    # Loading the PyanNet checkpoint (ours and whisperx's VAD) upgrades its Lightning format in
    # memory and logs an INFO line that suggests rewriting the file in site-packages; the
    # upgrade is harmless and the advice does not apply to a wheel's file.
    for name in ("lightning.pytorch.utilities.migration.utils", "pytorch_lightning.utilities.migration.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHCODEC_WARNING, category=UserWarning)
        import pyannote.audio
        import pyannote.audio.core.io  # noqa: F401 - the module whose import probes torchcodec

    return pyannote.audio
