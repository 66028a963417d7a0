"""The VidChatBench evaluator (assets/vidchat): reference clips score the maximum, another
person's face and voice score lower, shifted audio lowers sync and reports the shift, bad
prediction files are named and never stop the rest.

The lake is built from the demo corpus's conv_a with its ground truth as the upstream tables
(videos probed with PyAV, speaker_turns, clips, vidchat_testset), as in tests/test_release.py:
no pipeline model runs. Its two people are real voices (A and B) on still photographs whose
mouths move with the speech. Three pairs, each responder clip 2.8-2.9 s of one person talking:
p0 B (shot 2), p1 A (shot 3, B on screen too and B's short turn silenced), p2 B (shot 5).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from assets.release import media as release_media
from assets.vidchat.assets import run_vidchat_eval
from assets.vidchat.evaluate import PAIR_METRICS, UNCONFIGURED_METRICS
from orchestration import lake
from orchestration.resources import LakeResource, models_from_env
from orchestration.tables import TABLES
from orchestration.thresholds import threshold
from tests.gt_scoring import gt_person_box, write_gt_video

SHIFT_FRAMES = 10
# (pair, responder person, shot, start, end)
RESPONDERS = [("p0", "B", 2, 9.0, 11.9), ("p1", "A", 3, 12.4, 15.3), ("p2", "B", 5, 19.0, 21.8)]


@pytest.fixture(scope="module")
def vidchat_lake(demo_corpus_dir, tmp_path_factory) -> dict:
    media = demo_corpus_dir / "conv_a.mp4"
    gt = json.loads((demo_corpus_dir / "conv_a.json").read_text())
    uri = str(tmp_path_factory.mktemp("vidchat") / "lake")
    vid = write_gt_video(media, gt, uri)
    shots = {s["shot_id"]: s for s in gt["shots"]}
    clips, pairs = [], []
    for rank, (pid, person, shot, start, end) in enumerate(RESPONDERS):
        face = next(f["box"] for f in shots[shot]["faces"] if f["person"] == person)
        clip_id = f"{vid}_t{ord(person)}_{int(start * 1000):09d}"
        clips.append(
            {"clip_id": clip_id, "video_id": vid, "track_id": ord(person), "speaker_id": f"spk_{person}", "speaker_local": person, "start_seconds": start,
             "end_seconds": end, "duration": end - start, "is_talking": True, "bbox": gt_person_box(face, gt["width"], gt["height"]),
             "raw_video_width": gt["width"], "raw_video_height": gt["height"], "shot_id": shot}
        )
        other = "A" if person == "B" else "B"
        pairs.append({"pair_id": pid, "video_id": vid, "initiator_clip_id": f"{vid}_init_{pid}", "responder_clip_id": clip_id,
                      "initiator_speaker_id": f"spk_{other}", "responder_speaker_id": f"spk_{person}", "rank": rank, "seed": 7})
    lake.write("clips", TABLES["clips"].frame(clips), video_ids=[vid], lake=uri)
    lake.write("vidchat_testset", TABLES["vidchat_testset"].frame(pairs), lake=uri)
    return {"uri": uri, "media": media, "clips": {p[0]: c for p, c in zip(RESPONDERS, clips)}, "turns": lake.read("speaker_turns", uri), "gt": gt}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from demo.shipped_models import shipped_settings

    return models_from_env(shipped_settings(tmp_path_factory.mktemp("models")), resolved=True)


def _reference_bytes(lk: dict, pid: str, *, audio_delay_frames: int = 0) -> bytes:
    """The pair's reference clip cut as the release cuts it; with ``audio_delay_frames`` its
    audio starts that many video frames late (the video bytes are the reference's own)."""
    clip, gt = lk["clips"][pid], lk["gt"]
    start, end = clip["start_seconds"], clip["end_seconds"]
    box = release_media.crop_box(clip["bbox"], gt["width"], gt["height"])
    audio = release_media.read_audio(lk["media"], start, end)
    audio = release_media.silenced(audio, release_media.other_speaker_spans(lk["turns"], clip["speaker_local"], start, end))
    if audio_delay_frames:
        n = int(round(audio_delay_frames / gt["fps"] * audio.rate))
        delayed = np.zeros_like(audio.samples)
        delayed[:, n:] = audio.samples[:, :-n]
        audio = release_media.ClipAudio(delayed, audio.rate, audio.layout)
    return release_media.crop_mp4(lk["media"], start, end, box, audio)[0]


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for pid, data in files.items():
        (root / f"{pid}.mp4").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def results(vidchat_lake, models, tmp_path_factory) -> dict[str, dict[tuple[str, str], dict]]:
    """Every set scored once: the built-ins, the reference files themselves, swapped people,
    shifted audio (through the Python entry point), and a broken folder through the CLI."""
    from orchestration.cli import main

    root = tmp_path_factory.mktemp("preds")
    lk = vidchat_lake
    refs = {pid: _reference_bytes(lk, pid) for pid, *_ in RESPONDERS}
    folders = {
        "reference_files": _folder(root / "reference_files", refs),
        # another person's face and voice: B's clips answered by A's and the other way round
        "swapped": _folder(root / "swapped", {"p0": refs["p1"], "p1": refs["p0"], "p2": refs["p1"]}),
        "shifted": _folder(root / "shifted", {pid: _reference_bytes(lk, pid, audio_delay_frames=SHIFT_FRAMES) for pid in refs}),
    }
    # one pass over the pairs for these sets and the built-ins (each reference analysed once)
    run_vidchat_eval(LakeResource(location=lk["uri"]), models, {k: str(v) for k, v in folders.items()}, builtins=True, log=lambda m: None)
    broken = _folder(root / "broken", {"p1": b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "p2": refs["p2"]})  # p0 missing, p1 corrupt
    out = root / "broken.parquet"
    env = {"SPEAKERLAKE_FACE_MODEL_DIR": models.face_model_dir, "SPEAKERLAKE_SPEAKER_MODEL": models.speaker_model}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["vidchat-eval", "--pred", str(broken), "--out", str(out), "--lake", lk["uri"], "--no-builtins"]) == 0
    scores = lake.read("vidchat_scores", lk["uri"])
    assert scores.filter(pl.col("prediction_set") == "broken").sort("pair_id", "metric").equals(pl.read_parquet(out).sort("pair_id", "metric"))
    by_set: dict[str, dict[tuple[str, str], dict]] = {}
    for r in scores.iter_rows(named=True):
        by_set.setdefault(r["prediction_set"], {})[(r["pair_id"], r["metric"])] = r
    return by_set


def _value(results, name, pid, metric) -> float:
    r = results[name][(pid, metric)]
    assert r["status"] == "ok", r
    return r["value"]


@pytest.mark.parametrize("name", ["ground_truth", "reference_files"])
def test_reference_clips_score_the_maximum(results, name):
    cap = threshold("vidchat_psnr_cap_db")
    pids = [p for p, *_ in RESPONDERS]
    for pid in pids:
        assert _value(results, name, pid, "psnr") == cap
        assert _value(results, name, pid, "ssim") == 1.0
        assert _value(results, name, pid, "arcface") == pytest.approx(1.0, abs=1e-5)
        assert _value(results, name, pid, "voice_similarity") == pytest.approx(1.0, abs=1e-5)
        # the reference's own lip sync: confident, in sync (the demo's mouths move with the voice)
        assert _value(results, name, pid, "sync_confidence") > 0.5
        assert abs(_value(results, name, pid, "sync_offset")) <= 1
    # the file path decodes the same frames and audio as the built-in set: the very same sync
    for pid in pids:
        for metric in ("sync_confidence", "sync_offset", "sync_dist"):
            assert _value(results, name, pid, metric) == pytest.approx(_value(results, "ground_truth", pid, metric), abs=1e-9)
    # nothing scores above the reference on a metric against it; sync is the prediction's own (video
    # vs its audio), so another well-synced real clip (swapped) may match it there
    for other in ("static_frame", "swapped", "shifted"):
        for pid in pids:
            metrics = ("psnr", "ssim", "arcface", "voice_similarity") + (("sync_confidence",) if other != "swapped" else ())
            for metric in metrics:
                assert _value(results, other, pid, metric) <= _value(results, name, pid, metric) + 1e-6, (other, pid, metric)


def test_static_frame_baseline(results):
    for pid, *_ in RESPONDERS:
        assert _value(results, "static_frame", pid, "voice_similarity") == pytest.approx(1.0, abs=1e-5)  # the reference audio
        assert _value(results, "static_frame", pid, "arcface") > 0.8  # the same face, still
        assert _value(results, "static_frame", pid, "ssim") < 1.0
        # a still mouth cannot follow the voice
        assert _value(results, "static_frame", pid, "sync_confidence") < 0.5 * _value(results, "ground_truth", pid, "sync_confidence")


def test_another_person_scores_lower_on_identity_and_voice(results):
    for pid, *_ in RESPONDERS:
        gt_face, gt_voice = _value(results, "ground_truth", pid, "arcface"), _value(results, "ground_truth", pid, "voice_similarity")
        face, voice = _value(results, "swapped", pid, "arcface"), _value(results, "swapped", pid, "voice_similarity")
        assert face < gt_face - 0.5, (pid, face)
        assert voice < gt_voice - 0.1, (pid, voice)


def test_shifted_audio_lowers_sync_and_reports_the_offset(results):
    for pid, *_ in RESPONDERS:
        # the audio starts SHIFT_FRAMES late, i.e. it lags the video: offset -SHIFT_FRAMES (sync_scores: > 0 = audio leads)
        assert abs(_value(results, "shifted", pid, "sync_offset") - (-SHIFT_FRAMES)) <= 1, pid
        assert _value(results, "shifted", pid, "sync_confidence") < _value(results, "ground_truth", pid, "sync_confidence"), pid
        assert _value(results, "shifted", pid, "psnr") == threshold("vidchat_psnr_cap_db")  # same video bytes: only the audio moved


def test_missing_and_corrupt_predictions_are_named_and_the_rest_scored(results, vidchat_lake):
    broken = results["broken"]
    for metric in PAIR_METRICS:
        assert broken[("p0", metric)]["status"] == "missing" and "p0.mp4" in broken[("p0", metric)]["reason"]
        assert broken[("p1", metric)]["status"] == "unreadable" and broken[("p1", metric)]["reason"]
        assert broken[("p2", metric)]["status"] == "ok"
    assert _value(results, "broken", "p2", "psnr") == threshold("vidchat_psnr_cap_db")
    summary = lake.read("vidchat_summary", vidchat_lake["uri"]).filter(pl.col("prediction_set") == "broken").row(0, named=True)
    assert (summary["pairs"], summary["scored"], summary["not_scored"]) == (3, 1, 2)
    assert [p.split(":")[0] for p in summary["not_scored_pairs"]] == ["p0", "p1"]
    assert summary["psnr"] == threshold("vidchat_psnr_cap_db")


def test_unconfigured_metrics_are_reported_skipped(results, vidchat_lake):
    for name in results:
        for metric, field in UNCONFIGURED_METRICS.items():
            r = results[name][("*", metric)]
            assert r["status"] == "skipped" and r["value"] is None and field in r["reason"]
    summary = lake.read("vidchat_summary", vidchat_lake["uri"])
    assert set(summary["prediction_set"]) == {"ground_truth", "static_frame", "reference_files", "swapped", "shifted", "broken"}
    assert summary["fid"].is_null().all() and summary["skipped_metrics"].list.len().min() == len(UNCONFIGURED_METRICS)


def test_wrong_length_prediction(vidchat_lake, tmp_path):
    from assets.vidchat.media import PredictionError, load_prediction, load_reference

    (tmp_path / "ref.mp4").write_bytes(_reference_bytes(vidchat_lake, "p0"))
    ref = load_reference(tmp_path / "ref.mp4")
    clip = vidchat_lake["clips"]["p0"]
    short = {**clip, "end_seconds": clip["end_seconds"] - 0.6}
    gt = vidchat_lake["gt"]
    data = release_media.crop_mp4(vidchat_lake["media"], short["start_seconds"], short["end_seconds"], release_media.crop_box(clip["bbox"], gt["width"], gt["height"]), None)[0]
    (tmp_path / "short.mp4").write_bytes(data)
    with pytest.raises(PredictionError) as e:
        load_prediction(tmp_path / "short.mp4", ref, tolerance_s=threshold("vidchat_duration_tol_s"))
    assert e.value.status == "wrong_length"
    shutil.copy(tmp_path / "ref.mp4", tmp_path / "same.mp4")
    same = load_prediction(tmp_path / "same.mp4", ref, tolerance_s=threshold("vidchat_duration_tol_s"))
    assert np.array_equal(same.frames, ref.frames) and np.array_equal(same.audio, ref.audio)


def test_vidchat_eval_is_a_job_outside_the_batch():
    from orchestration.definitions import build_defs

    defs = build_defs("in_process")
    job = defs.resolve_job_def("score_predictions")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"vidchat_scores", "vidchat_summary"}
    batch = {k.to_user_string() for k in defs.resolve_job_def("process_batch").asset_layer.executable_asset_keys}
    assert not batch & {"vidchat_scores", "vidchat_summary"}
