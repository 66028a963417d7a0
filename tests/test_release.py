"""The release export (assets/release): schema-valid files, real clip media, WebDataset shards,
deterministic and incremental re-export, local and S3 targets.

The lake is built from the demo corpus's conv_a (real video and voices) with its ground truth
as the upstream tables (videos probed with PyAV, clips, speaker_turns, clip_quality,
clip_tiers, sft_subset, vidchat_testset): no model runs, so the module stays fast, and where
each person speaks is known exactly. The clips span other people's turns on purpose, so
the cleaned audio has speech to silence.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import av
import jsonschema
import numpy as np
import polars as pl
import pytest

from assets.release.assets import RELEASE_JOB, ReleaseConfig, release, release_clips
from assets.release.export import SCHEMA_DIR, export_release
from assets.release.media import crop_box
from assets.release.target import ReleaseTarget
from orchestration import lake
from orchestration.resources import LakeResource
from orchestration.tables import TABLES
from tests.gt_scoring import gt_person_box, write_gt_video

FPS = 25


@pytest.fixture(scope="module")
def conv_a(demo_corpus_dir) -> tuple[Path, dict]:
    return demo_corpus_dir / "conv_a.mp4", json.loads((demo_corpus_dir / "conv_a.json").read_text())


@pytest.fixture(scope="module")
def release_lake(conv_a, tmp_path_factory) -> str:
    media, gt = conv_a
    uri = str(tmp_path_factory.mktemp("release") / "lake")
    vid = write_gt_video(media, gt, uri)

    shots = {s["shot_id"]: s for s in gt["shots"]}

    def clip(person, shot, start, end, talking, tier):
        face = next(f["box"] for f in shots[shot]["faces"] if f["person"] == person)
        words = [{"word": w, "start": start + 0.3 * i, "end": start + 0.3 * i + 0.25, "score": 0.9} for i, w in enumerate(["so", "we", "talk"])]
        return {
            "clip_id": f"{vid}_t{ord(person)}_{int(start * 1000):09d}", "video_id": vid, "track_id": ord(person), "speaker_id": f"spk_{person}",
            "speaker_local": person, "identity_unit": person, "start_seconds": start, "end_seconds": end, "duration": end - start,
            "is_talking": talking, "clip_speaker_num": len(shots[shot]["faces"]), "bbox": gt_person_box(face, gt["width"], gt["height"]),
            "raw_video_width": gt["width"], "raw_video_height": gt["height"], "shot_id": shot, "text": "so we talk", "words": words,
            "listening_kind": None if talking else "co_present", "language": "en", "language_prob": 0.99, "avg_logprob": -0.3,
            "no_speech_prob": 0.01, "compression_ratio": 1.2, "sync_offset": 0, "sync_confidence": 6.5, "sync_dist": 7.1, "tier": tier,
        }

    clips = [
        clip("A", 0, 1.0, 5.6, True, "sft"),  # A speaks 2.32-4.02 and 4.57-; B alone 1.55-2.32 and 4.02-4.57
        clip("A", 3, 12.4, 15.6, True, "pretrain"),
        clip("B", 3, 12.4, 15.6, False, "pretrain"),  # B listens while A talks
        clip("A", 1, 5.6, 9.0, True, "rejected"),
    ]
    lake.write("clips", TABLES["clips"].frame(clips), video_ids=[vid], lake=uri)
    quality = [{**c, "luminance": 120.0, "clarity": 0.2, "visual_quality": 0.7, "visual_quality_backend": "brisque", "face_blur": 0.8, "hand_blur": None, "motion_score": 3} for c in clips]
    lake.write("clip_quality", TABLES["clip_quality"].frame(quality), video_ids=[vid], lake=uri)
    lake.write("clip_tiers", TABLES["clip_tiers"].frame([{**c, "reasons": [], "sft_missed": []} for c in clips]), lake=uri)
    lake.write("sft_subset", TABLES["sft_subset"].frame([c for c in quality if c["tier"] == "sft"]), lake=uri)
    pair = {"pair_id": "p0", "video_id": vid, "initiator_clip_id": clips[1]["clip_id"], "responder_clip_id": clips[2]["clip_id"],
            "initiator_speaker_id": "spk_A", "responder_speaker_id": "spk_B", "rank": 0, "seed": 7}
    lake.write("vidchat_testset", TABLES["vidchat_testset"].frame([pair]), lake=uri)
    return uri


@pytest.fixture(scope="module")
def inputs(release_lake):
    lk = LakeResource(location=release_lake)
    turns = lk.read("speaker_turns")
    return {
        "release_clips": release_clips(lk),
        "sft": lk.read("sft_subset")["clip_id"].to_list(),
        "testset": lk.read("vidchat_testset"),
        "turns": turns,
    }


def _export(inputs, target_uri: str, clips: pl.DataFrame | None = None, media: bool = True):
    turns = inputs["turns"]
    return export_release(
        inputs["release_clips"] if clips is None else clips, inputs["sft"], inputs["testset"], ReleaseTarget(target_uri),
        media=media, turns_for=lambda v: turns.filter(pl.col("video_id") == v), open_media=lake.local_copy, shard_samples=2,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(inputs, tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("out") / "release"
    return root, _export(inputs, str(root))


def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def test_files_validate_against_the_schema(exported, inputs):
    root, report = exported
    kept = sorted(inputs["release_clips"]["clip_id"])
    assert len(kept) == 3 and report.clips == 3  # the rejected clip is not released
    for name, file in [("all_data_list", "all_data_list.json"), ("SFT_set", "SFT_set.json"), ("testset", "testset.json"), ("manifest", "manifest.json")]:
        jsonschema.validate(json.loads((root / file).read_text()), _schema(name))
    annos = sorted((root / "merged_anno").glob("*.json"))
    assert [p.stem for p in annos] == kept
    for p in annos:
        jsonschema.validate(json.loads(p.read_text()), _schema("merged_anno"))
    listing = json.loads((root / "all_data_list.json").read_text())
    vid = inputs["release_clips"]["video_id"][0]
    assert listing == {f"{vid}_640x360_full_video": [f"{c}.json" for c in kept]}
    assert json.loads((root / "SFT_set.json").read_text()) == [f"{kept[0]}.json"]
    anno = json.loads(annos[0].read_text())
    assert (anno["video_name"], anno["is_talking"], anno["tier"], anno["sync"]["confidence"]) == (f"{vid}_640x360_full_video", 1, "sft", 6.5)
    assert anno["asr"]["words"][0] == {"word": "so", "start": 1.0, "end": 1.25, "score": 0.9}
    # the schema is not a rubber stamp: a file with a missing field or a bad tier fails it
    bad = {k: v for k, v in anno.items() if k != "bbox"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("merged_anno"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**anno, "tier": "rejected"}, _schema("merged_anno"))


def test_crop_has_the_clip_duration_size_and_audio(exported, inputs):
    root, _ = exported
    for row in inputs["release_clips"].iter_rows(named=True):
        box = crop_box(row["bbox"], 640, 360)
        assert abs(box.w - row["bbox"][2] * 640) <= 2 and abs(box.h - row["bbox"][3] * 360) <= 2
        with av.open(str(root / "clips" / f"{row['clip_id']}.mp4")) as c:
            frames = list(c.decode(video=0))
            assert (frames[0].width, frames[0].height) == (box.w, box.h)
            assert abs(len(frames) / FPS - (row["end_seconds"] - row["start_seconds"])) <= 1 / FPS + 1e-9
            a = c.streams.audio[0]
            assert abs(float(a.duration * a.time_base) - (row["end_seconds"] - row["start_seconds"])) < 0.1


def _wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
        return pcm.astype(np.float32) / 32768, w.getframerate()


def _rms(x: np.ndarray, rate: int, s: float, e: float) -> float:
    return float(np.sqrt(np.mean(x[int(s * rate) : int(e * rate)] ** 2)))


def test_cleaned_audio_silences_the_other_speaker(exported, inputs):
    root, _ = exported
    clip_a = inputs["release_clips"].filter(pl.col("start_seconds") == 1.0).row(0, named=True)
    start = clip_a["start_seconds"]
    cleaned, rate = _wav(root / "clips" / f"{clip_a['clip_id']}.wav")
    assert abs(len(cleaned) / rate - 4.6) < 1e-3
    with av.open(str(root / "clips" / f"{clip_a['clip_id']}.mp4")) as c:  # the crop keeps the original audio
        original = np.concatenate([f.to_ndarray().T for f in c.decode(audio=0)]).astype(np.float32)
    # ground truth: B alone at 1.55-2.32 and 4.02-4.57, A alone at 2.35-3.92
    for s, e in [(1.55, 2.32), (4.02, 4.57)]:
        assert _rms(original, rate, s - start + 0.05, e - start - 0.05) > 0.01  # B is audible in the source
        assert np.all(cleaned[int((s - start) * rate) : int((e - start) * rate)] == 0)
    assert _rms(cleaned, rate, 2.4 - start, 3.9 - start) > 0.01
    # where A speaks alone the cleaned audio is the source audio (AAC in the mp4 is lossy: compare loudness)
    assert _rms(cleaned, rate, 2.4 - start, 3.9 - start) == pytest.approx(_rms(original, rate, 2.4 - start, 3.9 - start), rel=0.1)


def test_webdataset_shards_load(exported, inputs):
    import webdataset as wds

    root, report = exported
    shards = sorted(str(p) for p in (root / "shards").glob("*.tar"))
    assert len(shards) == report.shards == 2  # 3 clips, 2 per shard
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(inputs["release_clips"]["clip_id"])
    for s in samples:
        assert set(s) >= {"__key__", "json", "mp4", "wav"}
        assert s["json"] == (root / "merged_anno" / f"{s['__key__']}.json").read_bytes()
        assert s["mp4"] == (root / "clips" / f"{s['__key__']}.mp4").read_bytes()
        with av.open(io.BytesIO(s["mp4"])) as c:
            assert c.streams.video[0].frames > 0


def test_reexport_is_byte_identical_and_incremental(exported, inputs, tmp_path):
    root, _ = exported
    again = tmp_path / "again"
    _export(inputs, str(again))
    assert _tree(again) == _tree(root)  # a fresh export of the same inputs: the same bytes

    mtimes = {p: os.stat(again / p).st_mtime_ns for p in _tree(again)}
    assert _export(inputs, str(again)).written == []  # nothing changed: nothing written, not even the manifest

    clips = inputs["release_clips"]
    changed = sorted(clips["clip_id"])[2]
    before = _tree(again)
    report = _export(inputs, str(again), clips.with_columns(pl.when(pl.col("clip_id") == changed).then(pl.lit("new words")).otherwise("text").alias("text")))
    # the clip's annotation, the one shard holding it, and the manifest: nothing else
    assert sorted(report.written) == ["manifest.json", f"merged_anno/{changed}.json", "shards/release-000001.tar"]
    after = _tree(again)
    assert {p for p in after if after[p] != before[p]} == set(report.written)
    assert all(os.stat(again / p).st_mtime_ns == mtimes[p] for p in after if p not in report.written)
    assert json.loads(after[f"merged_anno/{changed}.json"])["asr"]["text"] == "new words"

    gone = sorted(clips["clip_id"])[0]
    report = _export(inputs, str(again), clips.filter(pl.col("clip_id") != gone))
    assert sorted(report.deleted) == [f"clips/{gone}.mp4", f"clips/{gone}.wav", f"merged_anno/{gone}.json", "shards/release-000001.tar"]
    assert not any(gone in p for p in _tree(again))
    assert f"{gone}.json" not in json.loads((again / "all_data_list.json").read_text()).popitem()[1]


def test_s3_target_through_the_dagster_asset(release_lake, exported, moto_endpoint, monkeypatch):
    """The asset on an s3:// target (moto): the same files, byte for byte, as a local export."""
    import dagster as dg

    from tests.conftest import _use_s3

    root, _ = exported
    target = _use_s3(monkeypatch, moto_endpoint) + "/release"
    config = {"ops": {"release": {"config": {"target": target, "media": True, "shard_samples": 2}}}}
    result = dg.materialize([release], resources={"lake": LakeResource(location=release_lake)}, run_config=config)
    assert result.success
    meta = result.asset_materializations_for_node("release")[0].metadata
    assert (meta["clips"].value, meta["files_deleted"].value, meta["target"].value) == (3, 0, target)
    t = ReleaseTarget(target)
    for rel, data in _tree(root).items():
        assert t.read(rel) == data, rel
    # again: nothing to write
    result = dg.materialize([release], resources={"lake": LakeResource(location=release_lake)}, run_config=config)
    assert result.asset_materializations_for_node("release")[0].metadata["files_written"].value == 0
    assert ReleaseConfig().target == "" and RELEASE_JOB == "export_release"

