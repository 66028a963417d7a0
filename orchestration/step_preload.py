"""Imported once per multiprocess run by the forkserver (see orchestration.execution), so
that the step processes forked from it start with these libraries already imported.

Only imports: no model is loaded and no thread pool is started here (a forked child must
not inherit running OpenMP or ONNX Runtime threads). A library that is not installed is
skipped: the step that needs it reports the error itself. Great Expectations is not here:
only job retier uses it, and retier runs in one process (its steps run one after another).
"""

from __future__ import annotations

import importlib

from assets.audio.pyannote_import import import_pyannote_audio

import_pyannote_audio()  # first: whisperx imports pyannote.audio, whose torchcodec probe warns
# the stage code imports SciPy, trackers and supervision inside its functions so that a
# process that only defines the assets starts faster; the step processes get them from here
for _name in (
    "torch", "av", "cv2", "onnxruntime", "insightface.app", "faster_whisper", "whisperx", "duckdb", "deltalake",
    "scipy.signal", "scipy.ndimage", "scipy.optimize", "trackers", "supervision",
):
    try:
        importlib.import_module(_name)
    except ImportError:
        pass
