"""The clips stage: span building, the length rule, person box and ASR fields on small
hand-made frames (fast), then the whole pipeline on demo videos through the clips stage:
talking clips hold their person's voice, clips stay inside shots, reruns keep the ids."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from assets.clips.pipeline import ClipParams, analyze_clips, clip_bbox, clip_id, clip_spans, speakers_on_screen
from assets.clips.spans import Span, listening_spans, solo_speech, split_span, talking_spans
from assets.clips.text import clip_text, glued_words
from assets.vision.params import VisionParams
from orchestration.tables import TABLES

FPS = 25.0


# ---------------------------------------------------------------- small hand-made frames
def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    spec = TABLES[table]
    full = [{c: r.get(c) for c in spec.schema} for r in rows]
    return spec.conform(pl.DataFrame(full, schema=spec.polars_schema)) if rows else spec.empty()


def track(tid: int, shot: int, f0: int, f1: int, box=(100.0, 50.0, 140.0, 100.0)) -> dict:
    frames = list(range(f0, f1))
    return {"video_id": "v", "track_id": tid, "shot_id": shot, "start": f0 / FPS, "end": f1 / FPS, "start_frame": f0, "end_frame": f1, "n_frames": f1 - f0, "frames": frames, "boxes": [list(box)] * len(frames)}


def turn(k: int, spk: str, a: float, b: float) -> dict:
    return {"video_id": "v", "turn_id": k, "speaker_local": spk, "start": a, "end": b, "overlap": False}


def shot(s: int, f0: int, f1: int) -> dict:
    return {"video_id": "v", "shot_id": s, "start": f0 / FPS, "end": f1 / FPS, "start_frame": f0, "end_frame": f1}


def test_split_span_is_balanced_and_within_limits():
    s = Span(0, 0, 100, 100 + 30 * 25, True, "S0")  # 30 s
    pieces = split_span(s, FPS, min_s=3.0, max_s=14.0)
    assert len(pieces) == 3  # ceil(30 / 14)
    assert [p.n_frames for p in pieces] == [250, 250, 250]
    assert pieces[0].f0 == 100 and pieces[-1].f1 == 850 and all(a.f1 == b.f0 for a, b in zip(pieces, pieces[1:]))
    assert split_span(Span(0, 0, 0, 74, True, "S0"), FPS, min_s=3.0, max_s=14.0) == []  # 2.96 s
    assert len(split_span(Span(0, 0, 0, 75, True, "S0"), FPS, min_s=3.0, max_s=14.0)) == 1  # exactly 3 s
    assert len(split_span(Span(0, 0, 0, 350, True, "S0"), FPS, min_s=3.0, max_s=14.0)) == 1  # exactly 14 s
    odd = split_span(Span(0, 0, 0, 351, True, "S0"), FPS, min_s=3.0, max_s=14.0)
    assert [p.n_frames for p in odd] == [175, 176] or [p.n_frames for p in odd] == [176, 175]
    for n in range(75, 2000, 37):  # any length: every piece within [3 s, 14 s] (29.97 fps too)
        for fps in (25.0, 29.97):
            for p in split_span(Span(0, 0, 0, n, True, "S0"), fps, min_s=3.0, max_s=14.0):
                assert 3.0 - 1e-9 <= p.n_frames / fps <= 14.0 + 1e-9


def test_solo_speech_trims_edges_and_cuts_out_the_other_voice():
    turns = frame("speaker_turns", [turn(0, "A", 0.0, 10.0), turn(1, "B", 4.0, 5.0), turn(2, "B", 10.0, 12.0)])
    solo = solo_speech(turns, trim_s=0.2)
    flat = {k: [x for span in v for x in span] for k, v in solo.items()}
    assert flat[0] == pytest.approx([0.2, 3.8, 5.2, 9.8])
    assert flat[1] == []  # B's interjection lies inside A's speech
    assert flat[2] == pytest.approx([10.2, 11.8])


def test_talking_spans_need_a_bound_speaker_and_its_tracks_and_stay_in_the_shot():
    turns = frame("speaker_turns", [turn(0, "A", 1.0, 20.0), turn(1, "C", 1.0, 2.0)])
    shots = frame("shots", [shot(0, 0, 250), shot(1, 250, 600)])
    tracks = frame("face_tracks", [track(0, 0, 10, 250), track(1, 1, 250, 600), track(2, 1, 250, 600), track(3, 1, 250, 600)])
    bindings = frame("bindings", [{"video_id": "v", "speaker_local": "A", "track_id": 0}, {"video_id": "v", "speaker_local": "D", "track_id": None}])
    # track 1: A in another shot (ArcFace); track 2: nobody; track 3: D, an unbound speaker
    idents = frame("track_identities", [{"video_id": "v", "track_id": t, "speaker_local": s} for t, s in [(0, "A"), (1, "A"), (2, None), (3, "D")]])
    spans = talking_spans(turns, bindings, idents, tracks, shots, FPS, trim_s=0.2)
    # C's turn [1, 2) widened by 0.2 s is cut out of A's turn, then the edges trimmed: A alone from 2.2 s to 19.8 s
    assert [(s.track_id, s.shot_id, s.f0, s.f1, s.turn_id) for s in spans] == [(0, 0, 55, 250, 0), (1, 1, 250, 495, 0)]
    assert all(s.is_talking and s.speaker_local == "A" for s in spans)


def test_listening_spans_take_the_rows_and_the_listener_identity():
    tracks = frame("face_tracks", [track(4, 2, 100, 400)])
    idents = frame("track_identities", [{"video_id": "v", "track_id": 4, "speaker_local": None}])
    seg = frame("listening_segments", [{"video_id": "v", "track_id": 4, "start": 4.0, "end": 9.0, "kind": "co_present", "speaker_local": "A", "speaker_track_id": 1}])
    (s,) = listening_spans(seg, idents, tracks, FPS)
    assert (s.track_id, s.shot_id, s.f0, s.f1, s.is_talking, s.speaker_local, s.listening_kind, s.partner_speaker_local) == (4, 2, 100, 225, False, None, "co_present", "A")


def test_bbox_is_the_person_box_union_over_the_clip_frames_clipped_to_the_frame():
    v = VisionParams.from_thresholds()
    frames = np.arange(10, 20)
    boxes = np.array([[100, 50, 140, 100]] * 5 + [[600, 300, 640, 350]] * 5, dtype=np.float64)  # the face moves to the corner
    first = clip_bbox(frames, boxes, 10, 15, 640, 360, v)
    # face 40 x 50 at cx 120: x 60..180, y 50 - 0.6*50 = 20 .. 100 + 3*50 = 250
    assert first == pytest.approx([60 / 640, 20 / 360, 120 / 640, 230 / 360])
    both = clip_bbox(frames, boxes, 10, 20, 640, 360, v)
    assert both[0] == pytest.approx(60 / 640) and both[0] + both[2] == pytest.approx(1.0) and both[1] + both[3] == pytest.approx(1.0)
    assert all(0.0 <= x <= 1.0 for x in both)


def test_text_words_inside_the_span_glued_pieces_and_weighted_fields():
    words_a = [{"word": w, "start": a, "end": b, "score": 0.9} for w, a, b in [("It", 1.0, 1.2), ("was", 1.2, 1.5), ("cold", 1.5, 1.9), ("-hearted.", 1.9, 2.4)]]
    words_b = [{"word": w, "start": a, "end": b, "score": 0.8} for w, a, b in [("Yes,", 5.0, 5.4), ("indeed.", 5.4, 6.0)]]
    tr = frame(
        "transcripts",
        [
            {"video_id": "v", "segment_id": 0, "start": 1.0, "end": 2.4, "text": " It was cold-hearted.", "language": "en", "language_prob": 0.9, "avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.0, "words": words_a},
            {"video_id": "v", "segment_id": 1, "start": 5.0, "end": 6.0, "text": "Yes, indeed.", "language": "en", "language_prob": 0.9, "avg_logprob": -0.8, "no_speech_prob": 0.03, "compression_ratio": 2.0, "words": words_b},
        ],
    )
    assert [w.space_before for w in glued_words(" It was cold-hearted.", words_a)] == [True, True, True, False]
    t = clip_text(tr, 0.0, 10.0)
    assert t.text == "It was cold-hearted. Yes, indeed."
    assert len(t.words) == 6 and t.language == "en"
    # weights: 1.4 s and 1.0 s of the segments inside the clip
    assert t.avg_logprob == pytest.approx((-0.2 * 1.4 - 0.8 * 1.0) / 2.4)
    assert t.compression_ratio == pytest.approx((1.4 + 2.0) / 2.4)
    part = clip_text(tr, 1.3, 5.3)  # "It" (centre 1.1) and "indeed." (centre 5.7) lie outside
    assert part.text == "was cold-hearted. Yes," and len(part.words) == 4
    assert clip_text(tr, 3.0, 4.5).text is None and clip_text(tr, 3.0, 4.5).words == []


def test_clip_rows_ids_speaker_ids_and_people_on_screen():
    tables = {
        "face_tracks": frame("face_tracks", [track(0, 0, 0, 500), track(1, 0, 0, 500, box=(400.0, 50.0, 440.0, 100.0)), track(2, 0, 300, 500, box=(300.0, 60.0, 330.0, 100.0))]),
        "shots": frame("shots", [shot(0, 0, 500)]),
        "speaker_turns": frame("speaker_turns", [turn(0, "A", 0.0, 8.0), turn(1, "B", 8.0, 20.0)]),
        "transcripts": frame("transcripts", []),
        "bindings": frame("bindings", [{"video_id": "v", "speaker_local": "A", "track_id": 0}, {"video_id": "v", "speaker_local": "B", "track_id": 1}]),
        "track_identities": frame("track_identities", [{"video_id": "v", "track_id": 0, "speaker_local": "A"}, {"video_id": "v", "track_id": 1, "speaker_local": "B"}, {"video_id": "v", "track_id": 2, "speaker_local": None}]),
        "listening_segments": frame("listening_segments", [{"video_id": "v", "track_id": 0, "start": 8.4, "end": 19.6, "kind": "co_present", "speaker_local": "B", "speaker_track_id": 1}]),
        "speaker_assignments": frame("speaker_assignments", [{"video_id": "v", "unit": "A", "speaker_id": "spk_a"}, {"video_id": "v", "unit": "track:2", "speaker_id": "spk_2"}]),
    }
    video = {"video_id": "v", "fps": FPS, "width": 640, "height": 360}
    clips = analyze_clips(video, tables, None, params=ClipParams(3.0, 14.0, 0.2, 0.0))
    got = clips.select("clip_id", "track_id", "is_talking", "speaker_id", "identity_unit", "start_seconds", "end_seconds", "clip_speaker_num", "turn_id", "partner_speaker_local").rows()
    assert got == [
        ("v_t0_000000200", 0, True, "spk_a", "A", 0.2, 7.8, 2, 0, None),  # A's turn minus B's widened edge; tracks 0 and 1 on screen
        ("v_t0_000008400", 0, False, "spk_a", "A", 8.4, 19.6, 3, None, "B"),
        ("v_t1_000008200", 1, True, None, "B", 8.2, 19.8, 3, 1, None),  # B has no speaker_id yet
    ]
    assert clips["sync_offset"].null_count() == 3  # no audio: no sync
    assert clip_id("v", 0, 0.2) == "v_t0_000000200"
    s = clip_spans(tables, FPS, ClipParams(3.0, 14.0, 0.2, 0.0))[0]
    assert speakers_on_screen(s, tables["face_tracks"], {0: "A", 1: "B", 2: "A"}) == 2  # a person whose track broke counts once


# ---------------------------------------------------------------- the pipeline on demo media
@pytest.fixture(scope="module")
def demo_clips(clean_lake, demo_corpus_dir):
    """The clips the whole pipeline (conftest's session ``clean_lake``: conv_a + bikes) cut,
    with conv_a's ground truth and tracks."""
    from orchestration import lake

    videos = lake.read("videos", clean_lake)
    conv_a = videos.filter(pl.col("source_uri").str.ends_with("conv_a.mp4")).row(0, named=True)
    vid = conv_a["video_id"]
    return {
        "video": conv_a,
        "gt": json.loads((demo_corpus_dir / "conv_a.json").read_text()),
        "clips": lake.read("clips", clean_lake, video_ids=[vid]),
        "all_clips": lake.read("clips", clean_lake),
        "shots": lake.read("shots", clean_lake, video_ids=[vid]),
        "face_tracks": lake.read("face_tracks", clean_lake, video_ids=[vid]),
    }


def test_talking_clips_hold_their_persons_voice(demo_clips):
    """≥ 95 % of a talking clip's speech (GT voices) is its person's voice alone. conv_a is the
    discriminating video: without cutting the partner's turns out of a turn, a clip there
    holds only 89 % (docs: clip_turn_trim_s in sql/thresholds.csv)."""
    from tests.gt_scoring import track_person_by_boxes, voice_purity

    clips, gt = demo_clips["clips"], demo_clips["gt"]
    talking = clips.filter(pl.col("is_talking"))
    assert talking.height >= 1
    res = voice_purity(clips, gt, track_person_by_boxes(demo_clips["face_tracks"], gt))
    print(f"\nconv_a talking clips: {res['clips']}, {res['voiced']:.1f} s of speech, purity {res['purity']:.3f}, worst clip {res['worst']:.3f}")
    assert res["purity"] >= 0.95 and res["worst"] >= 0.9, res
    assert talking["speaker_id"].null_count() == 0 and talking["turn_id"].null_count() == 0
    assert talking["text"].null_count() == 0 and talking["sync_confidence"].null_count() == 0


def test_clips_stay_inside_shots_and_lengths(demo_clips):
    clips, shots, gt, fps = demo_clips["all_clips"], demo_clips["shots"], demo_clips["gt"], demo_clips["video"]["fps"]
    assert clips.height >= 1
    assert clips["duration"].min() >= 3.0 - 1e-6 and clips["duration"].max() <= 14.0 + 1e-6
    rows = clips.join(shots.select("video_id", "shot_id", s0="start", s1="end"), on=["video_id", "shot_id"], how="left")
    assert rows["s0"].null_count() == 0
    assert (rows["start_seconds"] >= rows["s0"] - 1e-6).all() and (rows["end_seconds"] <= rows["s1"] + 1e-6).all()
    for c in demo_clips["clips"].iter_rows(named=True):  # and no GT cut inside any conv_a clip
        f0, f1 = round(c["start_seconds"] * fps), round(c["end_seconds"] * fps)
        assert not [cut for cut in gt["cuts"] if f0 < cut < f1], c["clip_id"]
        assert all(0.0 <= x <= 1.0 for x in c["bbox"]) and c["bbox"][2] > 0 and c["bbox"][3] > 0
        assert (c["raw_video_width"], c["raw_video_height"]) == (gt["width"], gt["height"])
    assert clips.select("video_id", "clip_id").is_unique().all()


def test_rerun_of_the_clips_stage_keeps_the_ids(clean_lake, demo_clips, shipped_models):
    from assets.clips.assets import clips as clips_asset
    from orchestration import lake
    from tests.conftest import materialize_batch

    before = demo_clips["all_clips"].sort("clip_id")
    batch = demo_clips["video"]["batch_id"]
    res = materialize_batch([clips_asset], clean_lake, batch)
    assert res.success
    checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
    assert checks == {n: True for n in ("clips_key_unique", "clips_key_not_null", "clips_failed_share", "clips_duration_in_range", "clips_inside_one_shot")}
    (mat,) = res.asset_materializations_for_node("clips")
    assert mat.metadata["clips"].value == before.height
    after = lake.read("clips", clean_lake).sort("clip_id")
    assert after["clip_id"].to_list() == before["clip_id"].to_list()
    assert after.drop("words", "bbox").equals(before.drop("words", "bbox"))


def test_a_speakers_turns_split_at_short_pauses_are_joined():
    """clip_turn_join_s: a reply the diarizer split at breathing pauses (< join_s) is one
    turn again (keyed by its first turn); a longer pause, or another speaker's turn between,
    keeps the turns apart."""
    turns = frame("speaker_turns", [turn(0, "A", 0.0, 2.0), turn(1, "A", 3.0, 5.0), turn(2, "A", 7.5, 9.0), turn(3, "B", 9.5, 11.0), turn(4, "A", 11.2, 13.0)])
    solo = solo_speech(turns, trim_s=0.0, join_s=2.0)
    assert solo == {0: [(0.0, 5.0)], 2: [(7.5, 9.0)], 3: [(9.5, 11.0)], 4: [(11.2, 13.0)]}
    assert set(solo_speech(turns, trim_s=0.0)) == {0, 1, 2, 3, 4}  # join_s = 0: every turn on its own
