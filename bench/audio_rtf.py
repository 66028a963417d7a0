"""Audio stage RTF against the ASR model's own inference time on the same audio.

    python bench/audio_rtf.py --corpus data/demo [--repeats 2] [--label after]

The same method as ``bench/run.py`` for the audio stage (models loaded by a warm-up pass,
``analyze_audio`` timed per video, its step timings summed), plus, on the same decoded
audio and in the same process, the ASR model alone: faster-whisper's
``BatchedInferencePipeline.transcribe`` with its own silero VAD, word timestamps, and the
stage's beam and batch size. The ratio stage ÷ model alone is the budget of issue 14
(at most 1.5). Each time is the minimum over ``--repeats`` passes (the machine is shared).
Run it with ``PYTHONPATH`` pointing at another checkout to measure that code ("before").
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--label", default="")
    p.add_argument("--out", default="")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import BatchedInferencePipeline

    from assets.audio import asr as asr_mod
    from assets.audio.decode import SAMPLE_RATE, decode_audio
    from assets.audio.pipeline import analyze_audio, asr_params
    from orchestration.settings import model_dir

    videos = sorted(Path(a.corpus).glob("*.mp4"))
    analyze_audio(videos[0].stem, videos[0])  # warm-up: loads every model
    params = asr_params()
    device, compute_type = asr_mod.device_and_compute_type()
    model = asr_mod.load_asr(str(model_dir("SPEAKERLAKE_ASR_MODEL_DIR", what="Whisper")), device, compute_type, params.language).model
    rows = []
    for v in videos:
        audio = decode_audio(v)
        seconds = len(audio) / SAMPLE_RATE
        best: dict[str, float] = {}
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            res = analyze_audio(v.stem, v)
            total = time.perf_counter() - t0
            t0 = time.perf_counter()
            segs, _ = BatchedInferencePipeline(model).transcribe(
                audio, language="en", vad_filter=True, word_timestamps=True, batch_size=params.batch_size, beam_size=params.beam_size, log_progress=False
            )
            list(segs)
            alone = time.perf_counter() - t0
            for k, x in {"total": total, "asr": res.timings.get("asr", 0.0), "model_alone": alone}.items():
                best[k] = min(best.get(k, x), x)
        rows.append({"video": v.stem, "seconds": seconds, **best})
        print(rows[-1], flush=True)
    media = sum(r["seconds"] for r in rows)
    total = sum(r["total"] for r in rows)
    asr = sum(r["asr"] for r in rows)
    alone = sum(r["model_alone"] for r in rows)
    summary = {
        "label": a.label, "media_s": media, "stage_s": total, "stage_rtf": total / media, "asr_rtf": asr / media,
        "model_alone_rtf": alone / media, "stage_over_model_alone": total / alone, "load_avg": os.getloadavg()[0],
    }  # fmt: skip
    print(json.dumps(summary), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
