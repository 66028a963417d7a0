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
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest

from assets.release import media as release_media
from assets.vidchat.assets import run_vidchat_eval
from assets.vidchat.evaluate import OPTIONAL_METRICS, PAIR_METRICS, EvalParams
from orchestration import lake
from orchestration.resources import LakeResource, models_from_env
from orchestration.settings import MODEL_SETTINGS, MissingSettingError
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


def tiny_fid_inception(path: Path) -> None:
    """pytorch-fid's FID Inception-v3 built by the library with random weights, saved as the
    pt_inception state dict. Convolutions re-drawn He-normal: the library's construction skips
    weight init (the real weights are loaded), and PyTorch's default init shrinks activations
    through Inception's ~90 layers to ~1e-8, where every Fréchet distance reads 0."""
    import torch
    import torchvision
    from pytorch_fid import inception as pf

    built = {}
    with (
        mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, *a, **k: built.setdefault("net", self)),
    ):
        pf.fid_inception_v3()
    torch.manual_seed(0)
    for mod in built["net"].modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    torch.save(built["net"].state_dict(), path)


def tiny_i3d(path: Path) -> None:
    """A TorchScript video network with the FVD detector's call signature (the I3D file's own
    architecture is in the file; no I3D ships): 3D convolution, pooled to a 64-d feature."""
    import torch

    class TinyI3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 8, kernel_size=(4, 16, 16), stride=(4, 16, 16))

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
            return torch.nn.functional.adaptive_avg_pool3d(torch.relu(self.conv(x)), (2, 2, 2)).flatten(1)

    torch.manual_seed(0)
    torch.jit.script(TinyI3D()).save(str(path))


def tiny_text_model(folder: Path) -> None:
    """A 2-layer BERT with random weights and a character WordPiece vocabulary (every lowercase
    word tokenises), saved as a transformers model dir."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789'")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *list(".,?!-"), *chars, *[f"##{c}" for c in chars]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def optional_settings(tmp_path_factory) -> dict[str, str]:
    """The optional metrics' settings pointing at tiny randomly initialised models of their
    architectures (no FID / FVD / expression / text weights ship)."""
    import torch

    from assets.vidchat.features import deep3d_recon_net

    root = tmp_path_factory.mktemp("optional_models")
    tiny_fid_inception(root / "pt_inception.pth")
    tiny_i3d(root / "i3d_torchscript.pt")
    torch.manual_seed(0)
    torch.save({"net_recon": deep3d_recon_net("resnet18").state_dict()}, root / "epoch_20.pth")
    tiny_text_model(root / "text")
    return {
        "SPEAKERLAKE_FID_MODEL": str(root / "pt_inception.pth"),
        "SPEAKERLAKE_FVD_MODEL": str(root / "i3d_torchscript.pt"),
        "SPEAKERLAKE_EXPRESSION_MODEL": str(root / "epoch_20.pth"),
        "SPEAKERLAKE_TEXT_EMBEDDING_MODEL_DIR": str(root / "text"),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory, optional_settings):
    from demo.shipped_models import shipped_settings

    return models_from_env({**shipped_settings(tmp_path_factory.mktemp("models")), **optional_settings}, resolved=True)


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
    # one pass over the pairs for these sets and the built-ins (each reference analysed once); the
    # optional metrics on 2 frames and one 16-frame clip per pair (CPU time: Inception is ~1 s a frame)
    params = replace(EvalParams.from_thresholds(), feature_fps=0.5, fvd_clips_per_pair=1)
    run_vidchat_eval(LakeResource(location=lk["uri"]), models, {k: str(v) for k, v in folders.items()}, builtins=True, log=lambda m: None, params=params)
    broken = _folder(root / "broken", {"p1": b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "p2": refs["p2"]})  # p0 missing, p1 corrupt
    out = root / "broken.parquet"
    # the CLI without the optional metrics' settings: they are reported skipped
    env = {"SPEAKERLAKE_FACE_MODEL_DIR": models.face_model_dir, "SPEAKERLAKE_SPEAKER_MODEL": models.speaker_model}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for field in OPTIONAL_METRICS.values():
            mp.delenv(MODEL_SETTINGS[field].env, raising=False)
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
    """The CLI run had none of the optional settings: one set-level skipped row each, naming the setting."""
    for metric, field in OPTIONAL_METRICS.items():
        r = results["broken"][("*", metric)]
        assert r["status"] == "skipped" and r["value"] is None and field in r["reason"] and MODEL_SETTINGS[field].env in r["reason"]
    assert not any(k[1] == "coherence_similarity" for k in results["broken"])
    summary = lake.read("vidchat_summary", vidchat_lake["uri"])
    assert set(summary["prediction_set"]) == {"ground_truth", "static_frame", "reference_files", "swapped", "shifted", "broken"}
    broken = summary.filter(pl.col("prediction_set") == "broken").row(0, named=True)
    assert broken["fid"] is None and broken["dialogue_coherence"] is None and len(broken["skipped_metrics"]) == len(OPTIONAL_METRICS)


@pytest.mark.parametrize("metric", ["fid", "fvd", "expression_fid"])
def test_distribution_metrics_run_when_configured(results, vidchat_lake, metric):
    """Tiny random networks of each architecture: the reference set against itself is ~0, another
    person (swapped) and a still frame are farther."""
    for name in results:
        if name != "broken":
            assert results[name][("*", metric)]["status"] == "ok", results[name][("*", metric)]
    swapped = _value(results, "swapped", "*", metric)
    assert swapped > 0
    for same in ("ground_truth", "reference_files", "shifted"):  # the reference frames themselves
        assert _value(results, same, "*", metric) <= 1e-6 * swapped, same
    assert _value(results, "static_frame", "*", metric) > 1e-3 * swapped
    summary = lake.read("vidchat_summary", vidchat_lake["uri"]).filter(pl.col("prediction_set") == "swapped").row(0, named=True)
    assert summary[metric] == swapped and not any(m.startswith(metric) for m in summary["skipped_metrics"])


def test_dialogue_coherence_mechanics(results):
    """Whisper (shipped tiny.en) transcribes every response; the text model is random, so only
    the mechanics are checked: the true response's own text has similarity 1 and rank 1; an
    answer copied from another pair ranks that pair first (rank >= 2)."""
    pids = [p for p, *_ in RESPONDERS]
    for name in ("ground_truth", "reference_files", "static_frame"):  # the reference audio (shifted's is delayed: Whisper may hear it a little differently)
        for pid in pids:
            assert _value(results, name, pid, "coherence_similarity") == pytest.approx(1.0, abs=1e-6)
            assert _value(results, name, pid, "dialogue_coherence") == 1.0
    for pid in pids:  # swapped: p0 and p2 answered with p1's clip, p1 with p0's
        assert _value(results, "swapped", pid, "dialogue_coherence") <= 0.5
        assert _value(results, "swapped", pid, "coherence_similarity") < 1.0 - 1e-6


def test_landmark_error(results):
    """0 for the reference's own frames; a still frame, and another person, are off."""
    for pid, *_ in RESPONDERS:
        for name in ("ground_truth", "reference_files", "shifted"):
            assert _value(results, name, pid, "landmark_error") == 0.0
        assert _value(results, "static_frame", pid, "landmark_error") > 0.005
        assert _value(results, "swapped", pid, "landmark_error") > _value(results, "static_frame", pid, "landmark_error")


def test_optional_model_settings_fail_loudly(optional_settings, tmp_path):
    """A configured path that is missing or holds the wrong model fails naming the setting."""
    from assets.vidchat import features as feat

    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FID_MODEL.*does not exist"):
        feat.load_fid_inception(str(tmp_path / "missing.pth"))
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FID_MODEL.*could not be loaded"):
        feat.load_fid_inception(optional_settings["SPEAKERLAKE_EXPRESSION_MODEL"])
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FVD_MODEL.*could not be loaded"):
        feat.load_i3d(optional_settings["SPEAKERLAKE_FID_MODEL"])
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_EXPRESSION_MODEL.*could not be loaded"):
        feat.load_expression_net(optional_settings["SPEAKERLAKE_FID_MODEL"])
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_TEXT_EMBEDDING_MODEL_DIR.*does not exist"):
        feat.load_text_models(str(tmp_path / "nope"), None, None)
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_ASR_MODEL_DIR"):
        feat.load_text_models(optional_settings["SPEAKERLAKE_TEXT_EMBEDDING_MODEL_DIR"], None, None)


def test_syncnet_backend_scores_the_prediction(vidchat_lake, models, tmp_path):
    """With sync_backend syncnet the evaluator scores sync with SyncNet (random weights: the
    checkpoint layout of syncnet_python; no SyncNet weights ship), here on the first 20 frames."""
    import torch

    from assets.binding.params import BindingParams
    from assets.binding.sync import load_sync_models
    from assets.binding.syncnet import _net
    from assets.vidchat import metrics as m
    from assets.vidchat.media import load_reference
    from assets.vision import load_vision_models

    torch.manual_seed(0)
    torch.save(_net().state_dict(), tmp_path / "syncnet_v2.model")
    (tmp_path / "ref.mp4").write_bytes(_reference_bytes(vidchat_lake, "p0"))
    ref = load_reference(tmp_path / "ref.mp4")
    frames, audio = ref.frames[:20], ref.audio[: int(20 / ref.fps * 16000)]
    faces = m.face_samples(load_vision_models(models.face_model_dir), frames, 3, min_face_px=0)
    res = m.clip_sync(faces, frames, audio, ref.fps, BindingParams.from_thresholds("syncnet"), load_sync_models("syncnet", str(tmp_path / "syncnet_v2.model")))
    assert res is not None and np.isfinite([res.confidence, res.dist]).all() and abs(res.offset) <= BindingParams.from_thresholds("syncnet").sync_max_offset


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


@pytest.mark.parametrize("n,m,d", [(40, 50, 256), (60, 80, 16)])
def test_frechet_distance_equals_pytorch_fid(n, m, d):
    """Fewer samples than dimensions (the sample form) and more (pytorch-fid itself) give
    pytorch-fid's distance; a set against itself is 0."""
    import contextlib
    import io
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance

    from assets.vidchat.features import frechet_distance

    rng = np.random.default_rng(3)
    a = np.abs(rng.standard_normal((n, d)))  # ReLU-like features, as Inception's pool output
    b = 0.8 * np.abs(rng.standard_normal((m, d))) + 0.05
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = float(calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-5)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
