"""The training loader (assets/train): SQL rows -> decoded samples, each row exactly once across
DataLoader workers and ranks, crop and audio sized by the clip duration, seek-decoding far
cheaper than decoding the whole video, bad media skipped.

The lake holds two demo videos written from their ground truth (no model runs): conv_a, and
conv_long played twice in a row (stream-copied, no re-encode: a 126 s source, still far
shorter than the minutes-long videos the dataset is cut from). One talking clip per ground
truth turn (person crop around the speaker's face in the shot where the turn starts), half of
them sft; dialogue pairs between consecutive clips of the two people.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
import torch
from torch.utils.data import DataLoader

from assets.release.media import crop_box
from assets.train import LakeClipDataset, LakePairDataset, to_hf_dataset
from assets.train.loader import shard_bounds
from orchestration import lake
from orchestration.tables import TABLES
from tests.gt_scoring import gt_person_box, write_gt_video

FPS = 25.0
SR = 16000
SFT_CLIPS = "SELECT t.clip_id, t.tier, q.speaker_id AS tier_speaker FROM clip_tiers t JOIN clips q USING (clip_id) WHERE t.tier = 'sft'"


def looped(src: Path, dst: Path, times: int) -> None:
    """``src`` played ``times`` times in a row, its packets stream-copied with shifted timestamps."""
    with av.open(str(dst), "w") as out:
        outs: dict[int, av.stream.Stream] = {}
        offset: dict[int, int] = {}
        for _ in range(times):
            with av.open(str(src)) as inp:
                if not outs:
                    outs = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
                starts: dict[int, int] = {}
                ends: dict[int, int] = {}
                for pkt in inp.demux(*[inp.streams[i] for i in outs]):
                    if pkt.dts is None:  # the demuxer's flush packet
                        continue
                    i = pkt.stream.index
                    starts.setdefault(i, pkt.dts)
                    ends[i] = max(ends.get(i, 0), pkt.pts + (pkt.duration or 0))
                    pkt.pts += offset.get(i, 0)
                    pkt.dts += offset.get(i, 0)
                    pkt.stream = outs[i]
                    out.mux(pkt)
                for i in ends:
                    offset[i] = offset.get(i, 0) + ends[i] - starts[i]


def repeated_gt(gt: dict, times: int) -> dict:
    """``gt`` with its turns and shots repeated ``times`` times, as the looped video plays them."""
    d = gt["duration"]

    def shifted(rows: list[dict], k: int) -> list[dict]:
        out = []
        for r in rows:
            r = {**r, "start": r["start"] + k * d, "end": r["end"] + k * d}
            if "words" in r:
                r["words"] = [{**w, "start": w["start"] + k * d, "end": w["end"] + k * d} for w in r["words"]]
            out.append(r)
        return out

    return {**gt, "duration": d * times, "turns": [t for k in range(times) for t in shifted(gt["turns"], k)], "shots": [s for k in range(times) for s in shifted(gt["shots"], k)]}


def gt_clips(vid: str, gt: dict, max_s: float = 4.0, min_s: float = 1.5) -> list[dict]:
    """One talking clip per ground-truth turn: the speaker's person box in the shot where the
    turn starts, over the turn inside that shot (at most ``max_s``)."""
    out = []
    for turn in gt["turns"]:
        shot = next((s for s in gt["shots"] if s["start"] <= turn["start"] < s["end"]), None)
        face = next((f["box"] for f in shot["faces"] if f["person"] == turn["person"]), None) if shot else None
        a, b = turn["start"], min(turn["end"], shot["end"] if shot else 0.0, turn["start"] + max_s)
        if face is None or b - a < min_s:
            continue
        words = [{**w, "score": 0.9} for w in turn.get("words", []) if a <= (w["start"] + w["end"]) / 2 < b]
        out.append({
            "clip_id": f"{vid}_{turn['person']}_{int(round(a * 1000)):07d}", "video_id": vid, "track_id": ord(turn["person"]),
            "speaker_id": f"spk_{turn['person']}", "speaker_local": turn["person"], "identity_unit": turn["person"],
            "start_seconds": a, "end_seconds": b, "duration": b - a, "is_talking": True, "bbox": gt_person_box(face, gt["width"], gt["height"]),
            "raw_video_width": gt["width"], "raw_video_height": gt["height"], "shot_id": shot["shot_id"],
            "text": " ".join(w["word"] for w in words) or None, "words": words,
        })
    return out


def write_clips(uri: str, videos: list[tuple[Path, dict]]) -> pl.DataFrame:
    """``videos`` (media, ground truth) into lake ``uri`` with their clips, tiers (every other
    clip sft) and dialogue pairs (consecutive clips of different people; sft when the pair's
    index is even); returns the clips."""
    clips, pairs = [], []
    for media, gt in videos:
        vid = write_gt_video(media, gt, uri)
        cs = gt_clips(vid, gt)
        lake.write("clips", TABLES["clips"].frame(cs), video_ids=[vid], lake=uri)
        for a, b in zip(cs, cs[1:]):
            if a["speaker_local"] != b["speaker_local"]:
                pairs.append({"pair_id": f"p{len(pairs):03d}", "video_id": vid, "initiator_clip_id": a["clip_id"], "responder_clip_id": b["clip_id"],
                              "initiator_speaker_id": a["speaker_id"], "responder_speaker_id": b["speaker_id"], "gap_s": b["start_seconds"] - a["end_seconds"],
                              "tier": "sft" if len(pairs) % 2 == 0 else "pretrain"})
        clips += cs
    lake.write("clip_tiers", TABLES["clip_tiers"].frame([{**c, "tier": "sft" if i % 2 == 0 else "pretrain", "reasons": [], "sft_missed": []} for i, c in enumerate(clips)]), lake=uri)
    lake.write("dialogue_pairs", TABLES["dialogue_pairs"].frame(pairs), lake=uri)
    return pl.DataFrame(clips)


def _gt(demo_corpus_dir: Path, name: str) -> tuple[Path, dict]:
    return demo_corpus_dir / f"{name}.mp4", json.loads((demo_corpus_dir / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def train_lake(demo_corpus_dir, tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("train")
    conv_long, gt_long = _gt(demo_corpus_dir, "conv_long")
    looped(conv_long, d / "conv_long_x2.mp4", 2)
    uri = str(d / "lake")
    write_clips(uri, [_gt(demo_corpus_dir, "conv_a"), (d / "conv_long_x2.mp4", repeated_gt(gt_long, 2))])
    return uri


@pytest.fixture(scope="module")
def sft(train_lake) -> tuple[LakeClipDataset, list[dict]]:
    """The sft clips' dataset and its items read in this process."""
    ds = LakeClipDataset(SFT_CLIPS, train_lake, fps=FPS, size=(128, 96), sample_rate=SR)
    return ds, list(ds)


def _ids(items) -> Counter:
    return Counter(x["clip_id"] for x in items)


def test_shards_cover_every_row_once():
    for n in (0, 1, 5, 13):
        for shards in (1, 2, 3, 4):
            rows = [i for s in range(shards) for i in range(*shard_bounds(n, s, shards))]
            assert rows == list(range(n))


def test_rows_of_the_query_exactly_once_across_workers_and_ranks(train_lake, sft, monkeypatch):
    ds, items = sft
    tiers = lake.read("clip_tiers", train_lake)
    expected = Counter(tiers.filter(pl.col("tier") == "sft")["clip_id"].to_list())
    assert len(expected) >= 6 and _ids(items) == expected
    assert _ids(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")) == expected

    # two ranks, as torch.distributed reports them once initialised (not torchrun's variables); each
    # builds its dataset after joining the group, as a training script does, and reads it with 2
    # spawned workers (which see no process group: the rank is the one the dataset was built in)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, r=rank, **k: r)
        on_rank = LakeClipDataset(SFT_CLIPS, train_lake, fps=FPS, size=(128, 96), sample_rate=SR)
        per_rank.append(_ids(DataLoader(on_rank, batch_size=None, num_workers=2, multiprocessing_context="spawn")))
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])
    assert per_rank[0] + per_rank[1] == expected


def test_crops_and_audio_match_the_clip_durations(train_lake, sft):
    _, items = sft
    clips = {c["clip_id"]: c for c in lake.read("clips", train_lake).iter_rows(named=True)}
    for x in items:
        c = clips[x["clip_id"]]
        dur = c["end_seconds"] - c["start_seconds"]
        assert (x["video_id"], x["speaker_id"], x["start_s"], x["end_s"]) == (c["video_id"], c["speaker_id"], c["start_seconds"], c["end_seconds"])
        assert x["frames"].dtype == np.uint8 and x["frames"].shape[1:] == (128, 96, 3)
        assert abs(x["frames"].shape[0] - dur * FPS) <= 1
        assert x["audio"].dtype == np.float32 and x["audio"].shape == (int(round(dur * SR)),)
        assert x["annotations"] == {"tier": "sft", "tier_speaker": c["speaker_id"]}
        assert x["text"] == c["text"] and len(x["words"]) == len(c["words"])
        for w, cw in zip(x["words"], c["words"]):
            assert w == {"word": cw["word"], "start": pytest.approx(cw["start"] - c["start_seconds"]), "end": pytest.approx(cw["end"] - c["start_seconds"])}
    assert any(x["words"] for x in items)

    # the pixels: each sampled frame is the crop of the source frame at its time
    x = max(items, key=lambda x: x["start_s"])
    c = clips[x["clip_id"]]
    with av.open(lake.read("videos", train_lake).filter(pl.col("video_id") == x["video_id"])["raw_uri"][0]) as inp:
        src = {int(round(f.time * FPS)): f for f in inp.decode(video=0) if x["start_s"] - 0.1 <= f.time < x["end_s"]}
    for k in range(0, x["frames"].shape[0], 10):
        rgb = src[int(round(x["start_s"] * FPS + k))].to_ndarray(format="rgb24")
        b = crop_box(c["bbox"], rgb.shape[1], rgb.shape[0])
        ref = torch.nn.functional.interpolate(torch.from_numpy(rgb[b.y : b.y + b.h, b.x : b.x + b.w]).permute(2, 0, 1)[None].float(), size=(128, 96), mode="area")[0]
        assert float((ref.permute(1, 2, 0) - torch.from_numpy(x["frames"][k]).float()).abs().mean()) < 4.0


def test_other_fps_size_the_uncleaned_track_and_unknown_clips(train_lake, caplog):
    # conv_a's clip of A's turn 2.32-4.02 s: B's turns 1.55-2.35 s and 3.92-5.03 s overlap its first 0.03 s and last 0.1 s
    clip = lake.read("clips", train_lake).filter(pl.col("speaker_local") == "A", (pl.col("start_seconds") - 2.32).abs() < 1e-6)
    sql = f"SELECT clip_id FROM clips WHERE clip_id = '{clip['clip_id'][0]}'"
    with caplog.at_level(logging.WARNING, logger="assets.train.loader"):
        ds = LakeClipDataset(sql + " UNION ALL SELECT 'no_such_clip' UNION ALL SELECT NULL", train_lake, fps=10, size=(64, 64))
    assert ds.rows.height == 1 and sum("clip not in the clips table" in r.getMessage() for r in caplog.records) == 2
    (cleaned,) = list(ds)
    raw = next(iter(LakeClipDataset(sql, train_lake, fps=10, size=(64, 64), cleaned_audio=False)))
    dur = clip["duration"][0]
    assert cleaned["frames"].shape == (round(dur * 10), 64, 64, 3) and cleaned["audio"].shape == (round(dur * SR),)
    overlap = slice(int((3.92 - 2.32) * SR) + 160, int(dur * SR) - 160)
    assert np.abs(cleaned["audio"][overlap]).max() == 0.0 and np.sqrt(np.mean(raw["audio"][overlap] ** 2)) > 0.01
    own = slice(int(0.05 * SR), int((3.92 - 2.32) * SR) - 160)  # A alone (the resampler's filter smears a span edge by < 10 ms)
    np.testing.assert_array_equal(cleaned["audio"][own], raw["audio"][own])


def test_dialogue_pairs_give_both_sides(train_lake):
    ds = LakePairDataset("SELECT * FROM dialogue_pairs WHERE tier = 'sft'", train_lake, fps=FPS, size=(64, 64))
    pairs = {p["pair_id"]: p for p in lake.read("dialogue_pairs", train_lake).iter_rows(named=True)}
    items = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"))  # the DataLoader makes the arrays torch tensors
    assert sorted(x["pair_id"] for x in items) == sorted(k for k, p in pairs.items() if p["tier"] == "sft")
    for x in items:
        p = pairs[x["pair_id"]]
        assert (x["initiator"]["clip_id"], x["responder"]["clip_id"]) == (p["initiator_clip_id"], p["responder_clip_id"])
        assert x["annotations"]["tier"] == "sft" and x["annotations"]["gap_s"] == pytest.approx(p["gap_s"])
        for side in ("initiator", "responder"):
            c = x[side]
            assert c["frames"].shape[0] == round((c["end_s"] - c["start_s"]) * FPS) and c["audio"].shape[0] == round((c["end_s"] - c["start_s"]) * SR)


def test_seeking_is_at_least_5x_faster_than_decoding_the_whole_video(train_lake):
    """The same 2 clips of the 126 s video: the loader (crop, audio, words: the whole sample)
    against a decode of every frame of the video per clip (decode only, no conversion, same
    decoder threading: the cheapest whole-video read there is)."""
    clips = lake.read("clips", train_lake).join(lake.read("videos", train_lake).select("video_id", "raw_uri", "duration_s"), on="video_id")
    pick = clips.filter(pl.col("duration_s") > 100).sort("start_seconds").gather_every(8).head(2)
    ds = LakeClipDataset(f"SELECT clip_id FROM clips WHERE clip_id IN ({lake.sql_list(pick['clip_id'])})", train_lake)
    t0 = time.perf_counter()
    items = list(ds)
    loader_s = time.perf_counter() - t0
    assert _ids(items) == Counter(pick["clip_id"].to_list())
    t0 = time.perf_counter()
    for uri in pick["raw_uri"]:
        with av.open(uri) as inp:
            inp.streams.video[0].thread_type = "AUTO"
            n = sum(1 for _ in inp.decode(video=0))
    whole_s = time.perf_counter() - t0
    assert n > 3000  # every frame of the 126 s video
    print(f"2 clips: loader {loader_s:.2f}s, whole-video decode {whole_s:.2f}s, {whole_s / loader_s:.1f}x")
    assert whole_s >= 5 * loader_s


def test_corrupt_and_missing_media_are_skipped_with_a_reason(demo_corpus_dir, lake_uri, caplog):
    """On a local and an S3 lake: conv_b's raw file truncated, then deleted; conv_a's clips
    still come (two of them read here), conv_b's are each skipped with a warning naming the file and the reason."""
    clips = write_clips(lake_uri, [_gt(demo_corpus_dir, "conv_a"), _gt(demo_corpus_dir, "conv_b")])
    bad = lake.read("videos", lake_uri).filter(pl.col("source_uri").str.ends_with("conv_b.mp4")).row(0, named=True)
    good = Counter(clips.filter(pl.col("video_id") != bad["video_id"])["clip_id"].head(2).to_list())
    sql = f"SELECT clip_id FROM clips WHERE video_id = '{bad['video_id']}' OR clip_id IN ({lake.sql_list(good)})"
    n_bad = clips.filter(pl.col("video_id") == bad["video_id"]).height
    assert n_bad >= 2
    with lake.local_copy(bad["raw_uri"]) as p:
        truncated = p.read_bytes()[: p.stat().st_size // 3]  # the mp4 index (moov, at the end) is lost
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "bad.mp4").write_bytes(truncated)
        lake.put_file(Path(d) / "bad.mp4", bad["raw_uri"])
    for damage in ("truncated", "missing"):
        if damage == "missing":
            if lake.is_s3(lake_uri):
                lake.s3_client().delete_object(Bucket=lake.split_s3(bad["raw_uri"])[0], Key=lake.split_s3(bad["raw_uri"])[1])
            else:
                Path(bad["raw_uri"]).unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="assets.train.loader"):
            items = list(LakeClipDataset(sql, lake_uri, size=(32, 32)))
        assert _ids(items) == good
        warned = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
        assert len(warned) == n_bad and all(bad["raw_uri"] in m for m in warned), warned
        missing_reason = "404" if lake.is_s3(lake_uri) else "No such file"
        assert all((missing_reason in m) == (damage == "missing") for m in warned), warned


def test_hugging_face_export(train_lake, sft, monkeypatch):
    sql = SFT_CLIPS + " ORDER BY clip_id LIMIT 2"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "datasets", None)
        with pytest.raises(ImportError, match="pip install 'speakerlake\\[hf\\]'"):
            to_hf_dataset(sql, train_lake)
    pytest.importorskip("datasets")
    _, items = sft
    by_id = {x["clip_id"]: x for x in items}
    hf = to_hf_dataset(sql, train_lake, size=(128, 96))
    assert hf.num_rows == 2
    for row in hf.with_format("numpy"):
        x = by_id[row["clip_id"]]
        np.testing.assert_array_equal(row["frames"], x["frames"])
        np.testing.assert_array_equal(row["audio"], x["audio"])
        assert json.loads(row["annotations"]) == x["annotations"]
    assert math.isclose(hf[0]["end_s"] - hf[0]["start_s"], by_id[hf[0]["clip_id"]]["end_s"] - by_id[hf[0]["clip_id"]]["start_s"])
