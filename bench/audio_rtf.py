"""Audio stage RTF against the ASR model's own inference time on the same audio.

    python bench/audio_rtf.py --corpus data/demo [--repeats 2] [--label after] [--videos conv_a,mono]
    python bench/audio_rtf.py --corpus data/demo --long-minutes 10 [--long-only]

The same method as ``bench/run.py`` for the audio stage (models loaded once with
``load_audio_models`` from the environment's model settings, a warm-up pass, then
``analyze_audio`` timed per input), plus, on the same decoded audio and in the same
process, the ASR model alone: faster-whisper's ``BatchedInferencePipeline.transcribe`` with
its own silero VAD, word timestamps, and the stage's beam and batch size. The ratio
stage ÷ model alone is the budget of issue 14 (at most 1.5). Each time is the minimum over
``--repeats`` passes (the machine is shared); the step times reported for an input are those
of its fastest stage pass, so they add up to its stage time.

The ASR step is split into language detection, the first pass (one batched decode of every
window) and the coverage re-decodes, by timing the calls the stage makes (wrappers installed
in this process only; the stage code is unchanged).

``--long-minutes N`` adds a long two-person conversation: the audio of the corpus'
conversation videos (conv_a, conv_b, conv_long), whole videos appended in turn until at
least N minutes, written as a 16 kHz mono WAV into a temporary directory and measured the
same way. Short videos cannot fill one-speaker windows; user videos average 25 minutes.

Run it with ``PYTHONPATH`` pointing at another checkout to measure that code ("before").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

LONG_SOURCES = ("conv_a", "conv_b", "conv_long")


def write_long_conversation(corpus: Path, minutes: float, out: Path) -> tuple[Path, list[str]]:
    """The conversation videos' audio appended (whole videos, in turn) to >= ``minutes``; a WAV."""
    import av

    from assets.audio.decode import SAMPLE_RATE, decode_audio

    sources = [(name, decode_audio(corpus / f"{name}.mp4")) for name in LONG_SOURCES if (corpus / f"{name}.mp4").exists()]
    if not sources:
        raise SystemExit(f"none of {LONG_SOURCES} in {corpus}: build the corpus first")
    target = int(minutes * 60 * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    order: list[str] = []
    total = 0
    while total < target:
        name, x = sources[len(order) % len(sources)]
        parts.append(x)
        order.append(name)
        total += len(x)
    pcm = (np.clip(np.concatenate(parts), -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(out), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        for i in range(0, len(pcm), SAMPLE_RATE):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + SAMPLE_RATE], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return out, order


class AsrCalls:
    """Times the ASR step's parts: language detection, first pass, re-decodes (this process only)."""

    def __init__(self):
        from assets.audio import asr as asr_mod

        self.calls: list[tuple[str, float, int]] = []
        detect, call = asr_mod.detect_language, asr_mod.WhisperDecoder.__call__
        rec = self.calls

        def timed_detect(*args, **kw):
            t = time.perf_counter()
            try:
                return detect(*args, **kw)
            finally:
                rec.append(("language", time.perf_counter() - t, 0))

        def timed_call(dec, audio, windows):
            t = time.perf_counter()
            try:
                return call(dec, audio, windows)
            finally:
                rec.append(("decode", time.perf_counter() - t, len(windows)))

        asr_mod.detect_language = timed_detect
        asr_mod.WhisperDecoder.__call__ = timed_call

    def take(self) -> dict[str, float]:
        """The parts of the ASR step since the last call: the first decode call is the first pass."""
        out = {"asr_language": 0.0, "asr_first_pass": 0.0, "asr_redecode": 0.0, "windows": 0, "redecoded_windows": 0}
        first = True
        for kind, dt, n in self.calls:
            if kind == "language":
                out["asr_language"] += dt
            elif first:
                out["asr_first_pass"] += dt
                out["windows"] += n
                first = False
            else:
                out["asr_redecode"] += dt
                out["redecoded_windows"] += n
        self.calls.clear()
        return out


STEPS = ("decode", "vad", "diarization", "asr")


def asr_model_alone(audio: np.ndarray, models, params) -> float:
    """Seconds for the ASR model alone on ``audio``: faster-whisper's batched pipeline with its
    own silero VAD, word timestamps, and the stage's beam and batch size."""
    from faster_whisper import BatchedInferencePipeline

    t0 = time.perf_counter()
    segs, _ = BatchedInferencePipeline(models.asr.model).transcribe(
        audio, language="en", vad_filter=True, word_timestamps=True, batch_size=params.batch_size, beam_size=params.beam_size, log_progress=False
    )
    list(segs)
    return time.perf_counter() - t0


def measure(name: str, path: Path, models, params, calls: AsrCalls, repeats: int) -> dict:
    from assets.audio.decode import SAMPLE_RATE, decode_audio
    from assets.audio.pipeline import analyze_audio

    audio = decode_audio(path)
    seconds = len(audio) / SAMPLE_RATE
    stage: dict | None = None
    alone = None
    for _ in range(repeats):
        calls.take()
        t0 = time.perf_counter()
        res = analyze_audio(name, path, models)
        total = time.perf_counter() - t0
        parts = calls.take()
        if stage is None or total < stage["total"]:
            stage = {"total": total, **{k: res.timings.get(k, 0.0) for k in STEPS}, **parts}
        dt = asr_model_alone(audio, models, params)
        alone = dt if alone is None else min(alone, dt)
    row = {"video": name, "seconds": seconds, **stage, "model_alone": alone, "ratio": stage["total"] / alone}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return row


def summarize(label: str, rows: list[dict]) -> dict:
    media = sum(r["seconds"] for r in rows)
    total = sum(r["total"] for r in rows)
    alone = sum(r["model_alone"] for r in rows)
    steps = {k: round(sum(r[k] for r in rows), 3) for k in (*STEPS, "asr_language", "asr_first_pass", "asr_redecode", "windows", "redecoded_windows")}
    return {
        "label": label, "media_s": round(media, 2), "stage_s": round(total, 3), "model_alone_s": round(alone, 3),
        "stage_rtf": total / media, "asr_rtf": steps["asr"] / media, "model_alone_rtf": alone / media,
        "stage_over_model_alone": total / alone, "asr_over_model_alone": steps["asr"] / alone, "steps_s": steps,
        "load_avg": os.getloadavg(),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--label", default="")
    p.add_argument("--out", default="")
    p.add_argument("--videos", default="", help="comma-separated corpus videos (default: every .mp4)")
    p.add_argument("--long-minutes", type=float, default=0.0, help="also measure a long conversation of at least this many minutes")
    p.add_argument("--long-only", action="store_true", help="skip the corpus videos (with --long-minutes)")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_start = os.getloadavg()
    from assets.audio.pipeline import analyze_audio, asr_params, load_audio_models
    from orchestration.resources import models_from_env

    corpus = Path(a.corpus)
    videos = [corpus / f"{v}.mp4" for v in a.videos.split(",")] if a.videos else sorted(corpus.glob("*.mp4"))
    models = load_audio_models(models_from_env(resolved=True).audio())
    params = asr_params(models.settings.asr_language)
    calls = AsrCalls()
    analyze_audio(videos[0].stem, videos[0], models)  # warm-up
    out: dict = {"load_avg_start": load_start, "model_load_s": models.load_seconds}
    print(json.dumps(out), flush=True)
    if not a.long_only:
        rows = [measure(v.stem, v, models, params, calls, a.repeats) for v in videos]
        out["corpus"] = {"rows": rows, "summary": summarize(a.label, rows)}
        print(json.dumps(out["corpus"]["summary"]), flush=True)
    if a.long_minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path, order = write_long_conversation(corpus, a.long_minutes, Path(tmp) / "long_conversation.wav")
            row = measure(f"long_{a.long_minutes:g}min", path, models, params, calls, a.repeats)
        out["long"] = {"sources": order, "rows": [row], "summary": summarize(a.label, [row])}
        print(json.dumps(out["long"]["summary"]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
