"""ASR windowing options measured on the demo conversations: WER, coverage, RTF.

    python -m bench.asr_options --corpus data/demo [--videos conv_long,conv_b,conv_a] [--repeats 1]

For each video the audio is decoded, VAD and diarization run once (the audio stage's own
functions and thresholds), then every option decodes the same speech with the same model
(the Whisper model of the ``models`` settings, ``SPEAKERLAKE_ASR_MODEL_DIR`` in the
environment, loaded once with ``load_audio_models``; beam and batch from the thresholds):

* ``merged 30 s``: speech regions merged greedily into windows of <= 30 s (the former stage)
* ``merged 10 s``: the same with windows of <= 10 s
* ``merged 30 s + timestamps``: decoding with Whisper's timestamp tokens
* ``turns``: one speaker's consecutive speech per window (<= 30 s)
* ``speaker-packed``: each speaker's consecutive turns joined (0.5 s of silence between) into
  windows of <= 30 s: one voice per window, few windows
* ``... + re-decode``: windows under ``asr_min_window_coverage`` decoded again in pieces
* ``per utterance``: every ground-truth turn decoded alone (the reference the issue compares to)
* ``faster-whisper alone``: ``BatchedInferencePipeline.transcribe`` on the whole file with its
  own VAD, i.e. the ASR model's own inference time on the same audio (the RTF budget)

WER is word-level Levenshtein distance over the ground-truth words of the turns with text
(lower-cased, punctuation removed, hyphens split). RTF = seconds / audio seconds, models
loaded beforehand, 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def norm_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    d = np.arange(len(hyp) + 1)
    for i in range(1, len(ref) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(hyp) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
    return int(d[-1])


def wer(ref: str, hyp: str) -> float:
    r = norm_words(ref)
    return edit_distance(r, norm_words(hyp)) / max(1, len(r))


def _gt_text(gt: dict) -> str:
    return " ".join(t["text"] for t in sorted(gt["turns"], key=lambda t: t["start"]) if t["text"])


def turns_with_words(gt: dict, words: list[tuple[float, float]]) -> int:
    return sum(any(t["start"] - 0.1 < (a + b) / 2 < t["end"] + 0.1 for a, b in words) for t in gt["turns"])


def measure(video: Path, models, repeats: int = 1, only: str = "") -> list[dict]:
    """Every option on one video; ``models`` from ``assets.audio.pipeline.load_audio_models``."""
    from faster_whisper import BatchedInferencePipeline

    from assets.audio import asr as asr_mod
    from assets.audio.decode import SAMPLE_RATE, decode_audio
    from assets.audio.pipeline import asr_params, diarization_params, run_diarization, run_vad, vad_params

    gt = json.loads(video.with_suffix(".json").read_text())
    audio = decode_audio(video)
    seconds = len(audio) / SAMPLE_RATE
    regions = run_vad(audio, models.vad, vad_params())
    turns = [(f"S{t.speaker}", t.start, t.end) for t in run_diarization(audio, regions, models, diarization_params())]
    model = models.asr.model
    base = asr_params(models.settings.asr_language)
    ref = _gt_text(gt)
    options = {
        "merged 30 s": (replace(base, windowing="merged", chunk_s=30.0, max_rounds=0), None),
        "merged 30 s + re-decode": (replace(base, windowing="merged", chunk_s=30.0), None),
        "merged 10 s": (replace(base, windowing="merged", chunk_s=10.0, max_rounds=0), None),
        "merged 30 s + timestamps": (replace(base, windowing="merged", chunk_s=30.0, timestamps=True, max_rounds=0), None),
        "turns": (replace(base, windowing="turns", max_rounds=0), turns),
        "turns + re-decode": (replace(base, windowing="turns"), turns),
        "turns + timestamps + re-decode": (replace(base, windowing="turns", timestamps=True), turns),
        "speaker-packed": (replace(base, windowing="speaker", timestamps=False, max_rounds=0), turns),
        "speaker-packed + re-decode": (replace(base, windowing="speaker", timestamps=False, max_compression_ratio=1e9), turns),
        "speaker-packed + timestamps + re-decode": (replace(base, windowing="speaker", timestamps=True), turns),
        "speaker-packed + re-decode with timestamps": (replace(base, windowing="speaker", timestamps=False), turns),
    }
    rows = []
    for name, (params, tr) in options.items():
        if only and only not in name:
            continue
        best = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = asr_mod.transcribe(model, audio, regions, params=params, turns=tr)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        words = sorted((w for s in res.segments for w in s.words), key=lambda w: w.start)
        hyp = asr_mod.join_words(words)
        rows.append(
            {
                "video": video.stem, "option": name, "wer": wer(ref, hyp), "rtf": best / seconds, "coverage": res.coverage,
                "turns_with_words": turns_with_words(gt, [(w.start, w.end) for w in words]), "n_turns": len(gt["turns"]),
                "windows": res.n_windows, "decodes": res.n_decodes,
            }
        )  # fmt: skip
        print(rows[-1], flush=True)
    # every ground-truth utterance decoded alone
    utts = [t for t in sorted(gt["turns"], key=lambda t: t["start"]) if t["text"]]
    params = replace(base, windowing="merged", max_rounds=0)
    t0 = time.perf_counter()
    dec = asr_mod.WhisperDecoder(model, language="en", params=params)
    out = dec(audio, [((max(0.0, t["start"] - 0.2), min(seconds, t["end"] + 0.2)),) for t in utts])
    dt = time.perf_counter() - t0
    hyp = " ".join(s.text for segs in out for s in segs)
    utt_wer = edit_distance(norm_words(ref), norm_words(hyp)) / max(1, len(norm_words(ref)))
    rows.append({"video": video.stem, "option": "per utterance (ground-truth turns)", "wer": utt_wer, "rtf": dt / seconds, "coverage": None, "turns_with_words": None, "n_turns": len(gt["turns"]), "windows": len(utts), "decodes": len(utts)})
    print(rows[-1], flush=True)
    # the ASR model alone on the same audio: faster-whisper's batched pipeline with its own VAD
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        segs = list(
            BatchedInferencePipeline(model).transcribe(
                audio, language="en", vad_filter=True, word_timestamps=True, batch_size=base.batch_size, beam_size=base.beam_size, log_progress=False
            )[0]
        )
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    hyp = " ".join(s.text for s in segs)
    rows.append({"video": video.stem, "option": "faster-whisper alone (own VAD)", "wer": wer(ref, hyp), "rtf": best / seconds, "coverage": None, "turns_with_words": None, "n_turns": len(gt["turns"]), "windows": None, "decodes": None})
    print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--videos", default="conv_long,conv_b,conv_a")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="")
    p.add_argument("--only", default="", help="run only the options whose name contains this")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from assets.audio.pipeline import load_audio_models
    from orchestration.resources import models_from_env

    models = load_audio_models(models_from_env(resolved=True).audio())
    rows = []
    for name in a.videos.split(","):
        rows += measure(Path(a.corpus) / f"{name}.mp4", models, a.repeats, a.only)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
