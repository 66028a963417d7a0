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
from scipy import signal
from scipy.ndimage import uniform_filter1d

SAMPLE_RATE = 16_000
SPEECH_BAND_HZ = (250.0, 3500.0)


def speech_envelope(audio: np.ndarray, fps: float, n_frames: int, *, sample_rate: int = SAMPLE_RATE, smooth_frames: int = 3) -> np.ndarray:
    """Band-limited RMS envelope, one value per video frame (``n_frames`` values, zero-padded
    past the end of the audio), compressed (sqrt) and smoothed over ``smooth_frames``."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    out = np.zeros(n_frames, dtype=np.float64)
    if x.size == 0 or n_frames <= 0:
        return out
    lo, hi = SPEECH_BAND_HZ
    hi = min(hi, 0.45 * sample_rate)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
    if x.size > 64:
        x = signal.sosfiltfilt(sos, x)
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    edges = np.clip(edges, 0, x.size)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    counts = np.diff(edges)
    energy = csum[edges[1:]] - csum[edges[:-1]]
    valid = counts > 0
    out[valid] = np.sqrt(energy[valid] / counts[valid])
    out = np.sqrt(out)
    if smooth_frames > 1:
        out = uniform_filter1d(out, smooth_frames, mode="nearest")
    return out


def highpass(x: np.ndarray, window: int) -> np.ndarray:
    """``x`` minus its centred moving average over ``window`` samples (edges reflected)."""
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
