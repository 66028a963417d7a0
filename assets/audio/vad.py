"""Voice activity detection with silero VAD (ONNX, run by onnxruntime; no torch).

The model file comes from ``SPEAKERLAKE_VAD_MODEL``. Two ONNX layouts of silero v5/v6
exist and both are accepted:

* the *streaming* export of the ``silero-vad`` package: inputs ``input`` (1, 64+512),
  ``state`` (2, 1, 128) and ``sr``; one 32 ms chunk per call;
* the *batched* export shipped by faster-whisper (``assets/silero_vad_v6.onnx``): inputs
  ``input`` (n, 64+512), ``h`` and ``c``; all chunks in one call.

`speech_probabilities` gives one speech probability per 32 ms frame; `speech_regions`
turns them into segments with silero's hysteresis (start at ``threshold``, end after
``min_silence_s`` below ``threshold - 0.15``), drops short blips and pads the rest.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from orchestration.tables import TABLES

SAMPLE_RATE = 16_000
CHUNK = 512  # samples per VAD frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of left context silero v5+ expects in front of every chunk
FRAME_S = CHUNK / SAMPLE_RATE


@lru_cache(maxsize=4)
def load_vad(model_path: str):
    """An onnxruntime session for the silero model at ``model_path`` (cached per path)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"silero VAD model {model_path} is not a file")
    return ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])


def speech_probabilities(session, audio: np.ndarray) -> np.ndarray:
    """Speech probability of every 32 ms frame of 16 kHz mono ``audio`` (last frame zero-padded).

    The model input (each chunk with its 64 samples of left context) is built per block of
    ``BLOCK`` frames, never for the whole waveform at once (it would be 1.1x the waveform)."""
    n = int(np.ceil(len(audio) / CHUNK))
    if n == 0:
        return np.zeros(0, np.float32)
    names = {i.name for i in session.get_inputs()}
    probs = np.empty(n, np.float32)
    if {"h", "c"} <= names:  # faster-whisper's batched export
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for i in range(0, n, BLOCK):  # the block is built inside the call: one block alive at a time
            p, h, c = session.run(None, {"input": _model_inputs(audio, i, min(n, i + BLOCK)), "h": h, "c": c})
            probs[i : i + BLOCK] = np.asarray(p).reshape(-1)
        return probs
    if "state" in names:  # the silero-vad package's streaming export
        state = np.zeros((2, 1, 128), np.float32)
        sr = np.array(SAMPLE_RATE, np.int64)
        for k in range(n):
            if k % BLOCK == 0:
                x = None  # free the previous block before building the next: one alive at a time
                x = _model_inputs(audio, k, min(n, k + BLOCK))
            p, state = session.run(None, {"input": x[k % BLOCK : k % BLOCK + 1], "state": state, "sr": sr})
            probs[k] = float(np.asarray(p).reshape(-1)[0])
        return probs
    raise ValueError(f"unrecognised silero ONNX inputs {sorted(names)}")


BLOCK = 10_000  # VAD frames per model call: 320 s of audio, 23 MB of input


def _model_inputs(audio: np.ndarray, i0: int, i1: int) -> np.ndarray:
    """(i1 - i0, CONTEXT + CHUNK): frames i0..i1-1, each after the last CONTEXT samples of the
    frame before (zeros before the first frame and past the end of the audio)."""
    x = np.zeros((i1 - i0, CONTEXT + CHUNK), np.float32)
    body = audio[i0 * CHUNK : i1 * CHUNK]
    full = len(body) // CHUNK
    x[:full, CONTEXT:] = body[: full * CHUNK].reshape(full, CHUNK)
    rest = body[full * CHUNK :]
    if len(rest):  # the last frame, zero-padded
        x[full, CONTEXT : CONTEXT + len(rest)] = rest
    x[1:, :CONTEXT] = x[:-1, -CONTEXT:]
    if i0:
        x[0, :CONTEXT] = audio[i0 * CHUNK - CONTEXT : i0 * CHUNK]
    return x


def speech_regions(
    probs: np.ndarray,
    *,
    duration: float,
    threshold: float,
    min_speech_s: float,
    min_silence_s: float,
    pad_s: float,
) -> list[tuple[float, float]]:
    """Speech segments (start, end) in seconds from per-frame probabilities."""
    neg = max(threshold - 0.15, 0.01)
    segs: list[list[float]] = []
    start: int | None = None
    silence_from: int | None = None
    min_sil = max(1, int(round(min_silence_s / FRAME_S)))
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, silence_from = i, None
            continue
        if p >= threshold:
            silence_from = None
        elif p < neg:
            if silence_from is None:
                silence_from = i
            if i - silence_from >= min_sil:
                segs.append([start * FRAME_S, silence_from * FRAME_S])
                start, silence_from = None, None
    if start is not None:
        segs.append([start * FRAME_S, (silence_from if silence_from is not None else len(probs)) * FRAME_S])
    segs = [s for s in segs if s[1] - s[0] >= min_speech_s]
    # pad, never past the neighbours (split a short gap in the middle) or the file
    for k, s in enumerate(segs):
        lo = 0.0 if k == 0 else (segs[k - 1][1] + s[0]) / 2
        hi = duration if k == len(segs) - 1 else (s[1] + segs[k + 1][0]) / 2
        s[0], s[1] = max(lo, s[0] - pad_s), min(hi, s[1] + pad_s)
    return [(round(a, 3), round(b, 3)) for a, b in segs if b > a]


def speech_segments_table(video_id: str, regions: list[tuple[float, float]]) -> pl.DataFrame:
    df = pl.DataFrame(
        {
            "video_id": [video_id] * len(regions),
            "segment_id": list(range(len(regions))),
            "start": [a for a, _ in regions],
            "end": [b for _, b in regions],
        },
        schema_overrides={"video_id": pl.String, "segment_id": pl.Int32, "start": pl.Float64, "end": pl.Float64},
    )
    return TABLES["speech_segments"].conform(df)
