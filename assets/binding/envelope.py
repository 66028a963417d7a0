"""Per-video-frame signals for lip sync: the speech energy envelope and the mouth signal.

Speech envelope (`speech_envelope`): the 16 kHz mono waveform is band-passed to the speech
band (4th-order Butterworth, zero phase), then the RMS of each video frame's audio
interval ``[j/fps, (j+1)/fps)`` is taken — the same interval convention as SyncNet,
where video frame j meets MFCC frames 4j..4j+3 at 25 fps. The RMS is compressed with a
square root (between linear amplitude and loudness) and smoothed over a few frames: the
vision stage samples the mouth at ~8 fps and interpolates linearly, so both signals end up
with a similar bandwidth.

Both signals are then high-passed by `highpass` (minus a centred moving average over
~1 s), so slow drift — head pose changing the mouth/face-height ratio, loudness changes
between sentences — does not dominate the correlation; what is left is the syllable-rate
modulation (2–8 Hz) that lips and voice share.
"""

from __future__ import annotations

import numpy as np

# SciPy is imported inside the functions that use it: the Dagster code location imports this
# module to define the assets, and every Dagster process (code server, run worker, UI) would
# otherwise pay SciPy's import (about half a second) without running a step.

SAMPLE_RATE = 16_000
SPEECH_BAND_HZ = (250.0, 3500.0)


BLOCK_FRAMES = 1500  # video frames filtered at a time (60 s at 25 fps)
MARGIN_S = 0.5  # audio filtered on either side of a block and dropped: the filter's response has died out


def speech_envelope(audio: np.ndarray, fps: float, n_frames: int, *, sample_rate: int = SAMPLE_RATE, smooth_frames: int = 3) -> np.ndarray:
    """Band-limited RMS envelope, one value per video frame (``n_frames`` values, zero-padded
    past the end of the audio), compressed (sqrt) and smoothed over ``smooth_frames``.

    The zero-phase band-pass runs per block of ``BLOCK_FRAMES`` frames with ``MARGIN_S`` of
    audio on each side: on the whole waveform its float64 copies took about 4 x 8 bytes a
    sample (900 MB for 30 minutes). With the margins the blocks match one whole-file pass; on a
    10-minute conversation the values differ by at most 1e-4 (envelope peak 0.56), at quiet
    frames, from the whole-file cumulative sum's rounding, which per block is smaller."""
    from scipy import signal
    from scipy.ndimage import uniform_filter1d

    x = np.asarray(audio).reshape(-1)
    out = np.zeros(n_frames, dtype=np.float64)
    if x.size == 0 or n_frames <= 0:
        return out
    lo, hi = SPEECH_BAND_HZ
    hi = min(hi, 0.45 * sample_rate)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
    edges = np.clip(np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64), 0, x.size)
    margin = int(MARGIN_S * sample_rate)
    for f0 in range(0, n_frames, BLOCK_FRAMES):
        f1 = min(n_frames, f0 + BLOCK_FRAMES)
        a, b = int(edges[f0]), int(edges[f1])
        if b <= a:
            continue
        lo_s, hi_s = max(0, a - margin), min(x.size, b + margin)
        piece = x[lo_s:hi_s].astype(np.float64)
        if piece.size > 64 and x.size > 64:
            piece = signal.sosfiltfilt(sos, piece)
        piece = piece[a - lo_s : b - lo_s]
        csum = np.concatenate([[0.0], np.cumsum(piece * piece)])
        e = edges[f0 : f1 + 1] - a
        counts = np.diff(e)
        valid = counts > 0
        energy = csum[e[1:]] - csum[e[:-1]]
        out[f0:f1][valid] = np.sqrt(energy[valid] / counts[valid])
    out = np.sqrt(out)
    if smooth_frames > 1:
        out = uniform_filter1d(out, smooth_frames, mode="nearest")
    return out


def highpass(x: np.ndarray, window: int) -> np.ndarray:
    """``x`` minus its centred moving average over ``window`` samples (edges reflected)."""
    from scipy.ndimage import uniform_filter1d

    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x - (x.mean() if x.size else 0.0)
    return x - uniform_filter1d(x, min(window, max(x.size, 1)), mode="reflect")


def fill_nan(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs (held constant at the ends); all-NaN -> zeros."""
    x = np.asarray(x, dtype=np.float64).copy()
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if bad.all():
        return np.zeros_like(x)
    idx = np.arange(x.size)
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return x
