"""Hour-long videos in bounded memory (issue 21 item 1), the cheap CI version.

The figures (peak RSS and RTF at 10, 30 and 120 minutes) come from ``make bench-long``
(bench/long_video.py, docs/benchmarks.md). Here the design properties behind them are checked:
the diarization clustering does not grow quadratically with the number of speech windows, and
on real audio its two-stage form finds the same speakers and turns; the audio steps work on
bounded blocks, never on copies of the whole waveform; decoding holds the waveform once.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP must not spin on shared cores

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from assets.audio import diarization as diar  # noqa: E402
from assets.audio import vad as vad_mod  # noqa: E402
from assets.audio.decode import SAMPLE_RATE, decode_audio  # noqa: E402
from assets.audio.pipeline import asr_params, diarization_params, run_vad, vad_params  # noqa: E402
from tests.test_audio import der  # noqa: E402

MB = 2**20


def peak_bytes(fn, *args, **kw):
    """(result, peak bytes Python and numpy allocated while ``fn`` ran)."""
    tracemalloc.start()
    try:
        out = fn(*args, **kw)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- clustering
def synthetic_windows(n_chunks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d-vectors of 3 voices over ``n_chunks`` segmentation chunks, one or two voices per
    chunk (two: a turn change, a cannot-link); (embeddings, chunk of each, voice of each)."""
    rng = np.random.default_rng(seed)
    voices = rng.normal(size=(3, 256))
    emb, groups, truth = [], [], []
    for c in range(n_chunks):
        for v in rng.choice(3, size=rng.integers(1, 3), replace=False):
            emb.append(voices[v] + 0.5 * rng.normal(size=256))  # cosine 0.8 between windows of one voice, 0 across
            groups.append(c)
            truth.append(v)
    emb = np.asarray(emb, np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.asarray(groups), np.asarray(truth)


def assert_same_partition(labels: np.ndarray, truth: np.ndarray) -> None:
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
    assert len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist())), pairs


def test_clustering_memory_does_not_grow_quadratically():
    """N and 4N speech windows: the two-stage clustering's peak memory stays flat (the single
    stage's n x n matrices would grow 16x) and it still recovers the 3 voices exactly."""
    block = int(diarization_params().cluster_block_items)
    small, groups_s, truth_s = synthetic_windows(4 * block // 3)  # 1.5 windows per chunk: ~2 blocks
    large, groups_l, truth_l = synthetic_windows(16 * block // 3)  # 4x as many
    kw = dict(threshold=diarization_params().cluster_threshold, max_clusters=6, block_items=block)
    lab_s, peak_s = peak_bytes(diar.blockwise_clustering, small, groups_s, **kw)
    lab_l, peak_l = peak_bytes(diar.blockwise_clustering, large, groups_l, **kw)
    _, peak_single = peak_bytes(diar.constrained_clustering, small, groups_s, threshold=kw["threshold"], max_clusters=6)
    print(f"items {len(small)} -> {len(large)}: two-stage peak {peak_s / MB:.1f} -> {peak_l / MB:.1f} MB; single stage at {len(small)}: {peak_single / MB:.1f} MB")
    assert len(small) > block and len(large) > 3.5 * len(small)
    assert peak_l < 1.5 * peak_s  # flat, not x16
    assert peak_l < peak_single / 2  # 4x the items in less memory than one stage on N
    assert_same_partition(lab_s, truth_s)
    assert_same_partition(lab_l, truth_l)
    for c in np.unique(groups_l):  # no two windows of one chunk share a speaker
        assert len(set(lab_l[groups_l == c].tolist())) == int((groups_l == c).sum())


def test_one_block_is_the_single_stage_clustering():
    emb, groups, _ = synthetic_windows(60)
    kw = dict(threshold=0.735, max_clusters=6)
    assert np.array_equal(diar.blockwise_clustering(emb, groups, block_items=len(emb), **kw), diar.constrained_clustering(emb, groups, **kw))


# ---------------------------------------------------------------- real audio
SOURCES = ("conv_a", "conv_b", "conv_long")


@pytest.fixture(scope="module")
def conversations(demo_corpus_dir):
    """The three demo conversations' audio and ground-truth turns (people named by voice)."""
    out = {}
    for name in SOURCES:
        gt = json.loads((demo_corpus_dir / f"{name}.json").read_text())
        voice = {p: v["voice"] for p, v in gt["people"].items()}
        out[name] = (decode_audio(demo_corpus_dir / f"{name}.mp4"), [(t["start"], t["end"], voice[t["person"]]) for t in gt["turns"]])
    return out


def turns_in(turns: list[diar.Turn], a: float, b: float) -> list[tuple[float, float, str]]:
    """The turns inside [a, b), clipped to it, on its clock."""
    return [(max(t.start, a) - a, min(t.end, b) - a, str(t.speaker)) for t in turns if t.end > a and t.start < b]


def test_two_stage_diarization_of_a_long_input_agrees_with_the_short_videos(stage_models, conversations):
    """The conversations appended twice (4 minutes, 4 voices) with blocks of 24 windows: the
    second stage must join each voice's clusters across blocks and repetitions (speaker count
    and DER against the appended ground truth as good as the single stage's), and every repeated
    part's turns must match that video diarized alone."""
    models = stage_models.audio
    params = diarization_params()
    pieces, reference, offsets, t = [], [], [], 0.0
    for name in SOURCES * 2:
        audio, gt = conversations[name]
        pieces.append(audio)
        offsets.append((name, t, len(audio) / SAMPLE_RATE))
        reference += [(a + t, b + t, v) for a, b, v in gt]
        t += len(audio) / SAMPLE_RATE
    audio = np.concatenate(pieces)
    regions = run_vad(audio, models.vad, vad_params())
    local = diar.extract_local_speakers(
        audio, segmentation_model=models.segmentation, encoder=models.encoder, step_s=params.step_s, onset=params.onset,
        min_active_s=params.min_turn_s, speech_regions=regions,
    )  # fmt: skip

    def turns(block_items: int) -> list[diar.Turn]:
        labels = diar.cluster_local_speakers(
            local, min_embed_s=params.min_embed_s, threshold=params.cluster_threshold, max_speakers=params.max_speakers,
            min_speaker_s=params.min_speaker_s, block_items=block_items,
        )  # fmt: skip
        return diar.reconstruct_turns(local, labels, min_gap_s=params.min_gap_s, min_turn_s=params.min_turn_s, overlap_min_s=params.overlap_min_s)

    reliable = int((local.clean_s >= params.min_embed_s).sum())
    two_stage, single = turns(24), turns(len(local.items))
    assert reliable > 4 * 24  # the long input really is clustered in several blocks
    scores = {k: der(reference, [(x.start, x.end, str(x.speaker)) for x in v], collar=0.5, duration=t)["diarization error rate"] for k, v in (("two-stage", two_stage), ("single", single))}
    print(f"{reliable} reliable windows; DER vs ground truth: {scores}")
    assert len({x.speaker for x in two_stage}) == 4
    assert scores["two-stage"] <= max(scores["single"] + 0.02, 0.0) and scores["two-stage"] <= 0.15

    short = {}
    for name in SOURCES:
        x = conversations[name][0]
        short[name] = diar.diarize_resemblyzer(x, segmentation_model=models.segmentation, encoder=models.encoder, params=params, speech_regions=run_vad(x, models.vad, vad_params()))
    for name, start, seconds in offsets:
        ref = turns_in(short[name], 0.0, seconds)
        agreement = der(ref, turns_in(two_stage, start, start + seconds), collar=0.5, duration=seconds)["diarization error rate"]
        print(f"{name} at {start:.0f} s: DER against the video alone {agreement:.3f}")
        assert agreement <= 0.1


# ---------------------------------------------------------------- bounded blocks
def test_audio_features_are_computed_in_bounded_blocks(stage_models):
    """VAD input and resemblyzer mels of 6 and 24 minutes of audio: beyond their outputs, the
    peak allocation is the same at both lengths and far below one copy of the waveform."""
    rng = np.random.default_rng(0)
    for fn, out_bytes in ((lambda x: vad_mod.speech_probabilities(stage_models.audio.vad, x), lambda n: 4 * n // vad_mod.CHUNK), (diar.mel_frames, lambda n: 160 * (n // diar.HOP))):
        extra = []
        for minutes in (6, 24):
            x = (0.05 * rng.standard_normal(minutes * 60 * SAMPLE_RATE)).astype(np.float32)
            _, peak = peak_bytes(fn, x)
            extra.append(peak - out_bytes(len(x)))
            print(f"{minutes} min ({x.nbytes / MB:.0f} MB of waveform): peak {peak / MB:.1f} MB")
            del x
        assert extra[1] < 1.2 * extra[0] + MB
        assert extra[1] < 0.5 * 24 * 60 * SAMPLE_RATE * 4


def test_decoding_holds_the_waveform_once(tmp_path, demo_corpus_dir):
    """A 6-minute conversation decodes with a peak of about one waveform, not two."""
    from bench.long_video import write_long_video

    path = tmp_path / "long.mp4"
    write_long_video(Path(demo_corpus_dir), 6, path)
    audio, peak = peak_bytes(decode_audio, path)
    print(f"{len(audio) / SAMPLE_RATE:.0f} s: waveform {audio.nbytes / MB:.1f} MB, decode peak {peak / MB:.1f} MB")
    assert len(audio) >= 6 * 60 * SAMPLE_RATE
    assert peak < 1.15 * audio.nbytes + 4 * MB


def test_asr_decodes_a_long_video_in_bounded_groups_of_windows(monkeypatch):
    """faster-whisper holds every window of a call (audio and log-mels) at once: the decoder
    calls it with at most ``windows_per_call`` windows and returns one result per window, in order."""
    from assets.audio import asr as asr_mod

    calls: list[list] = []

    def decode(self, audio, windows):
        calls.append(windows)
        return [[asr_mod.AsrSegment(w[0][0], w[0][1], "", -0.1, 0.0, 1.0)] for w in windows]

    monkeypatch.setattr(asr_mod.WhisperDecoder, "_decode", decode)
    windows = [((float(i), i + 0.5),) for i in range(10)]
    out = asr_mod.WhisperDecoder(None, language="en", params=replace(asr_params(), windows_per_call=4))(np.zeros(16_000 * 11, np.float32), windows)
    assert [len(c) for c in calls] == [4, 4, 2]
    assert [segs[0].start for segs in out] == [float(i) for i in range(10)]
