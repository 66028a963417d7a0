"""Issue 16: annotation robustness on harder footage.

The demo corpus' hard conversations (``demo.build_corpus``: hard_a tunes, hard_b is held
out; real shipped faces and speech) have dissolves and fades beside hard cuts, a slow zoom,
a third voice that is never on screen, listeners whose mouths move with a smooth random
opening unrelated to any voice, and speaking lips that lead their voice by 1-3 frames with
a compressed, noisy opening. The audio, vision and binding stages run once per video (real
models: whisperx/resemblyzer, SCRFD/2d106/ArcFace); the must-show bars are asserted on the
held-out video, the tuning video's figures are printed next to them.

Metrics:

* **shot F1** — a found boundary matches a GT boundary (one-to-one) within half the
  transition's length plus 2 frames (cuts: 2 frames).
* **binding** — share of GT speaking frames put on the right face: on screen, the diarized
  speaker standing for the person (most speech inside their GT turns) owns exactly that
  person's visible face track(s) through ``bindings`` + ``track_identities``; off screen
  (the third voice, or a person whose face is not in the shot), no visible track carries
  that speaker. Frames where the person's face has no track are not scored.
* **listening F1** — frame-level over (person, frame) pairs, as in tests/test_binding.py
  (``COLLAR_S`` around GT span edges not scored).
"""

from __future__ import annotations

import json
from dataclasses import replace
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from assets.binding import BindingParams, analyze_binding
from assets.binding.assign import EvidenceRule, bind_speakers, mark_evidence
from assets.vision.params import VisionParams
from assets.vision.shots import GradualParams, GradualTransitionFinder, merge_transitions
from demo.build_corpus import gt_face_boxes
from orchestration.tables import TABLES
from tests.gt_scoring import FPS, iou, listening_counts, rates, visible

HARD = ("hard_a", "hard_b")
REPORT: dict[str, dict] = {}


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hard(stage_models, demo_corpus_dir) -> dict:
    """name -> {gt, audio, tables (upstream), out (binding), seconds} for hard_a and hard_b."""
    from assets.audio.decode import decode_audio
    from assets.audio.pipeline import analyze_audio
    from assets.vision import analyze_video

    params = BindingParams.from_thresholds("mouth")
    res = {}
    for name in HARD:
        mp4 = demo_corpus_dir / f"{name}.mp4"
        gt = json.loads(mp4.with_suffix(".json").read_text())
        t0 = time.perf_counter()
        tables = {**analyze_audio(name, mp4, stage_models.audio), **analyze_video(name, mp4, stage_models.faces)}
        audio = decode_audio(mp4)
        t1 = time.perf_counter()
        out = analyze_binding(name, audio, tables, params=params)
        res[name] = {"gt": gt, "audio": audio, "tables": tables, "out": out, "params": params, "seconds": time.perf_counter() - t0, "binding_s": time.perf_counter() - t1}
    assert [res[n]["gt"]["split"] for n in HARD] == ["tune", "holdout"]
    return res


# ---------------------------------------------------------------- ground-truth mapping
def track_person(face_tracks: pl.DataFrame, gt: dict, min_iou: float = 0.5) -> dict[int, str | None]:
    """GT person of each track: best median IoU with the GT face box at the same frames
    (zoom included, `demo.build_corpus.gt_face_boxes`)."""
    out = {}
    for t in face_tracks.iter_rows(named=True):
        ious: dict[str, list[float]] = {}
        for f, box in list(zip(t["frames"], t["boxes"]))[::5]:
            for p, g in gt_face_boxes(gt, f).items():
                ious.setdefault(p, []).append(iou(box, g))
        med = {p: float(np.median(v)) for p, v in ious.items()}
        best = max(med, key=med.get) if med else None
        out[int(t["track_id"])] = best if best is not None and med[best] >= min_iou else None
    return out


def person_speaker(turns: pl.DataFrame, gt: dict) -> dict[str, str]:
    """The diarized speaker standing for each GT person: most speech time inside that
    person's GT turns (None when the diarizer gave the person no speaker of their own)."""
    secs: dict[tuple[str, str], float] = {}
    for s, a, b in turns.select("speaker_local", "start", "end").rows():
        for g in gt["turns"]:
            ov = max(0.0, min(b, g["end"]) - max(a, g["start"]))
            secs[(g["person"], s)] = secs.get((g["person"], s), 0.0) + ov
    out: dict[str, str] = {}
    taken: set[str] = set()
    for (p, s), v in sorted(secs.items(), key=lambda kv: (-kv[1], kv[0])):
        if v > 0 and p not in out and s not in taken:
            out[p] = s
            taken.add(s)
    return out


def shot_f1(found: list[int], transitions: list[dict]) -> dict:
    """One-to-one matching of found boundaries to GT boundaries within half the transition
    length + 2 frames."""
    used: set[int] = set()
    tp = 0
    for tr in transitions:
        tol = (tr["end_frame"] - tr["start_frame"]) / 2 + 2
        m = [i for i, f in enumerate(found) if abs(f - tr["boundary"]) <= tol and i not in used]
        if m:
            used.add(min(m, key=lambda i: abs(found[i] - tr["boundary"])))
            tp += 1
    p = tp / len(found) if found else float(not transitions)
    r = tp / len(transitions) if transitions else 1.0
    return {"f1": 2 * p * r / (p + r) if p + r else 0.0, "precision": p, "recall": r, "found": found, "truth": [t["boundary"] for t in transitions]}


def binding_accuracy(r: dict) -> dict:
    gt, tables, out = r["gt"], r["tables"], r["out"]
    n = gt["n_frames"]
    tp = track_person(tables["face_tracks"], gt)
    ps = person_speaker(tables["speaker_turns"], gt)
    ident = dict(out["track_identities"].select("track_id", "speaker_local").rows())
    vis = visible(tables["face_tracks"], n)
    res = {"on_ok": 0, "on": 0, "off_ok": 0, "off": 0}
    for s in gt["speaking"]:
        S = ps.get(s["person"])
        for j in range(int(round(s["start"] * FPS)), min(int(round(s["end"] * FPS)), n)):
            carried = [t for t in vis[j] if S is not None and ident.get(t) == S]
            if s["on_screen"]:
                truth = [t for t in vis[j] if tp.get(t) == s["person"]]
                if not truth:
                    continue
                res["on"] += 1
                res["on_ok"] += int(S is not None and carried == truth)
            else:
                res["off"] += 1
                res["off_ok"] += int(not carried)
    return res


def off_screen_people(gt: dict) -> list[str]:
    return [p for p, info in gt["people"].items() if info.get("on_screen") is False]


# ---------------------------------------------------------------- must-show, held out (hard_b); hard_a printed
@pytest.mark.parametrize("name", HARD)
def test_shot_boundaries_with_gradual_transitions(hard, name):
    r = hard[name]
    gt, shots = r["gt"], r["tables"]["shots"]
    found = shots["start_frame"].to_list()[1:]
    m = shot_f1(found, gt["transitions"])
    zooms = [s["zoom"] for s in gt["shots"] if "zoom" in s]
    inside_zoom = [f for f in found for z in zooms if z["start_frame"] < f < z["end_frame"]]
    kinds = dict(zip(shots["start_frame"].to_list(), shots["transition"].to_list()))
    kind_ok = sum(kinds.get(b) == tr["kind"] for tr in gt["transitions"] for b in found if abs(b - tr["boundary"]) <= (tr["end_frame"] - tr["start_frame"]) / 2 + 2)
    REPORT[f"shots/{name}"] = {"f1": round(m["f1"], 3), "found": found, "truth": m["truth"], "kinds_right": kind_ok, "inside_zoom": inside_zoom}
    print(f"\n{name} ({gt['split']}): shot F1 {m['f1']:.3f}, found {found}, truth {m['truth']}, kinds right {kind_ok}/{len(gt['transitions'])}")
    assert {t["kind"] for t in gt["transitions"]} >= {"cut", "dissolve", "fade"} and zooms
    assert not inside_zoom, inside_zoom
    if gt["split"] == "holdout":
        assert m["f1"] >= 0.95, m


@pytest.mark.parametrize("name", HARD)
def test_no_face_track_spans_a_transition(hard, name):
    """A clip never spans a transition: every track stays inside one shot and holds none of
    a dissolve's or fade's blended frames (as found, and as in the ground truth)."""
    r = hard[name]
    shots, tracks = r["tables"]["shots"], r["tables"]["face_tracks"]
    assert tracks.height >= len(r["gt"]["shots"])
    spans = [(a, b) for a, b in shots.select("transition_start_frame", "transition_end_frame").drop_nulls().rows() if b > a]
    assert len(spans) >= 3  # two dissolves and a fade, with their frame spans
    for t in tracks.iter_rows(named=True):
        s = shots.row(t["shot_id"], named=True)
        assert s["start_frame"] <= t["start_frame"] < t["end_frame"] <= s["end_frame"]
        assert not any(a < t["end_frame"] and t["start_frame"] < b for a, b in spans), (t["track_id"], spans)
        for tr in r["gt"]["transitions"]:
            core = (tr["start_frame"] + 2, tr["end_frame"] - 2)  # GT span less the faint edge frames
            assert not (core[0] < t["end_frame"] and t["start_frame"] < core[1]), (name, t["track_id"], tr)


@pytest.mark.parametrize("name", HARD)
def test_off_screen_voice_stays_unbound(hard, name):
    r = hard[name]
    gt, out = r["gt"], r["out"]
    ps = person_speaker(r["tables"]["speaker_turns"], gt)
    for p in off_screen_people(gt):
        S = ps.get(p)
        assert S is not None, "the diarizer lost the off-screen voice"
        row = out["bindings"].filter(pl.col("speaker_local") == S).row(0, named=True)
        ident = out["track_identities"].filter(pl.col("speaker_local") == S)
        REPORT[f"off_screen/{name}"] = {"speaker": S, "reason": row["reason"], "tracks_with_its_identity": ident.height}
        print(f"\n{name} ({gt['split']}): off-screen voice {S}: {row}")
        if gt["split"] == "holdout":
            assert row["track_id"] is None and row["reason"] == "no_synced_face", row
            assert ident.is_empty(), ident


@pytest.mark.parametrize("name", HARD)
def test_binding_right_for_speaking_seconds(hard, name):
    r = hard[name]
    acc = binding_accuracy(r)
    total = (acc["on_ok"] + acc["off_ok"]) / (acc["on"] + acc["off"])
    REPORT[f"binding/{name}"] = {"speaking_acc": round(total, 4), "on_screen_acc": round(acc["on_ok"] / acc["on"], 4), "off_screen_acc": round(acc["off_ok"] / acc["off"], 4), **acc}
    print(f"\n{name} ({r['gt']['split']}): binding right for {total:.3f} of speaking frames ({acc})")
    assert acc["on"] > 200 and acc["off"] > 100
    if r["gt"]["split"] == "holdout":
        assert total >= 0.95


@pytest.mark.parametrize("name", HARD)
def test_listening_while_someone_speaks_off_screen(hard, name):
    r = hard[name]
    c = rates(listening_counts(r, track_person(r["tables"]["face_tracks"], r["gt"])))
    REPORT[f"listening/{name}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()}
    print(f"\n{name} ({r['gt']['split']}): listening F1 {c['f1']:.3f} (precision {c['precision']:.3f}, recall {c['recall']:.3f}, kind {c['kind_acc']:.3f})")
    assert c["tp"] + c["fn"] > 200
    # while the off-screen voice speaks, a visible silent face is never co-present with it
    ps = person_speaker(r["tables"]["speaker_turns"], r["gt"])
    off = [ps[p] for p in off_screen_people(r["gt"]) if p in ps]
    kinds = r["out"]["listening_segments"].filter(pl.col("speaker_local").is_in(off))["kind"].to_list()
    assert set(kinds) <= {"not_co_present"}
    if r["gt"]["split"] == "holdout":
        assert c["f1"] >= 0.9
        assert c["kind_acc"] >= 0.9
        assert len(kinds) >= 2  # both listeners of the two-shot, and the single


def test_report(hard, capsys):
    lines = [f"{n} ({r['gt']['split']}, {r['gt']['duration']:.1f} s): upstream + binding {r['seconds']:.1f} s, binding {1000 * r['binding_s']:.0f} ms" for n, r in hard.items()]
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + json.dumps(REPORT, indent=1))


# ---------------------------------------------------------------- unit tests on real frames / rows
def test_binding_needs_a_plausible_offset_and_a_clear_margin():
    """The three evidence rules, each on its own: offset, margin, floor."""
    rows = [
        # speaker, track, turn, start, end, offset, confidence
        ("talker", 0, 0, 0.0, 4.0, -2, 0.9),  # alone on screen, in sync
        ("talker", 1, 1, 4.0, 8.0, 1, 0.85),  # its close-up, in sync
        ("offscreen", 1, 2, 8.0, 12.0, 9, 0.7),  # a listener's mouth: best shift +9 frames (360 ms)
        ("offscreen", 2, 2, 8.0, 12.0, 2, 0.55),  # another listener: plausible offset, but
        ("offscreen", 3, 2, 8.0, 12.0, -1, 0.5),  # no better than the third face on screen
    ]
    ss = TABLES["sync_scores"].conform(
        pl.DataFrame([{"video_id": "v", "track_id": t, "turn_id": k, "speaker_local": s, "start": a, "end": b, "offset": o, "confidence": c, "dist": 1 - c} for s, t, k, a, b, o, c in rows])
    )
    ev = mark_evidence(ss, min_confidence=0.4, rule=EvidenceRule(max_offset=6, min_margin=0.2))
    assert ev["synced"].to_list() == [True, True, False, False, False]
    assert ev["rival"].to_list() == [0.0, 0.0, 0.55, 0.7, 0.7]
    b = bind_speakers("v", ["talker", "offscreen"], ss, min_confidence=0.4, prior_s=2.0, rule=EvidenceRule(max_offset=6, min_margin=0.2))
    got = {r["speaker_local"]: (r["track_id"], r["reason"]) for r in b.iter_rows(named=True)}
    assert got["talker"][0] in (0, 1) and got["talker"][1] is None
    assert got["offscreen"] == (None, "no_synced_face")
    # the same rows without the offset and margin checks bind the off-screen voice to a listener
    loose = bind_speakers("v", ["talker", "offscreen"], ss, min_confidence=0.4, prior_s=2.0)
    assert loose.filter(pl.col("speaker_local") == "offscreen")["track_id"].item() is not None


def test_listening_to_an_off_screen_voice():
    """Two faces on screen while a third voice speaks: a face known to be someone else, and
    an unknown face whose mouth moves by chance (0.6 at +9 frames), are both listening; an
    unknown face in sync at a plausible offset is not (it may be the speaker)."""
    from assets.binding.listening import listening_frames

    def tracks(ids):
        return pl.DataFrame({"track_id": ids, "start_frame": [0] * len(ids), "end_frame": [100] * len(ids)}, schema={"track_id": pl.Int32, "start_frame": pl.Int64, "end_frame": pl.Int64})

    turns = pl.DataFrame({"turn_id": [0], "speaker_local": ["OFF"], "start": [0.0], "end": [4.0]})
    transcripts = pl.DataFrame({"start": [0.0], "end": [4.0], "avg_logprob": [-0.2], "text": ["words"]})
    bindings = pl.DataFrame({"speaker_local": ["HOST", "OFF"], "track_id": [0, None], "reason": [None, "no_synced_face"]}, schema={"speaker_local": pl.String, "track_id": pl.Int32, "reason": pl.String})
    ident = pl.DataFrame({"track_id": [0, 1], "speaker_local": ["HOST", None]}, schema={"track_id": pl.Int32, "speaker_local": pl.String})

    def labels(offset_1: int, conf_1: float) -> dict[int, set[str]]:
        ss = pl.DataFrame({"track_id": [0, 1], "turn_id": [0, 0], "start": [0.2, 0.2], "end": [3.8, 3.8], "offset": [-1, offset_1], "confidence": [0.5, conf_1]})
        out = listening_frames(tracks([0, 1]), turns, ss, bindings, ident, transcripts, FPS, 100, min_gap=0.25, speaker_min_conf=0.4, max_sync=0.4, asr_min_logprob=-1.0, rule=EvidenceRule(6, 0.2, 1.0))
        got: dict[int, set[str]] = {}
        for lab in out:
            got.setdefault(lab["track_id"], set()).add(lab["kind"])
        return got

    # track 0 is the host's face (in sync 0.5 by chance), track 1 an unknown face
    assert labels(9, 0.6) == {0: {"not_co_present"}, 1: {"not_co_present"}}
    assert labels(-2, 0.6) == {0: {"not_co_present"}}


def _frames(path: Path, a: int, b: int) -> list[np.ndarray]:
    from assets.vision.decode import iter_frames

    return [f for i, f in enumerate(iter_frames(path)) if a <= i < b]


def test_gradual_finder_on_real_frames(demo_corpus_dir):
    """On hard_b's own frames: the dissolve is found with its midpoint, the zoom alone is not
    a transition, and the fade's two halves pair into one fade."""
    import cv2

    from assets.vision.shots import SMALL

    gt = json.loads((demo_corpus_dir / "hard_b.json").read_text())
    p = VisionParams.from_thresholds().gradual()
    assert p is not None
    diss = next(t for t in gt["transitions"] if t["kind"] == "dissolve")
    zoom = next(s["zoom"] for s in gt["shots"] if "zoom" in s)
    fade = next(t for t in gt["transitions"] if t["kind"] == "fade")

    def blends(a: int, b: int):
        finder = GradualTransitionFinder(p)
        for i, f in enumerate(_frames(demo_corpus_dir / "hard_b.mp4", a, b)):
            small = cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
            finder.push(a + i, cv2.resize(small, SMALL, interpolation=cv2.INTER_AREA))
        return finder.finish()

    found = blends(diss["start_frame"] - 30, diss["end_frame"] + 30)
    assert [b.kind for b in found] == ["dissolve"]
    assert abs(found[0].boundary - diss["boundary"]) <= 2
    assert blends(zoom["start_frame"] + 3, zoom["end_frame"] - 1) == []
    halves = blends(fade["start_frame"] - 30, fade["end_frame"] + 30)
    assert [b.kind for b in halves] == ["fade_out", "fade_in"]
    merged = merge_transitions([], [], halves, half_window=p.half_window, min_frames=15)
    assert [(t.kind, abs(t.boundary - fade["boundary"]) <= 3) for t in merged] == [("fade", True)]


def test_hard_cuts_only_without_the_gradual_setting():
    """shot_gradual_half_window 0 switches the finder off (hard cuts only)."""
    p = VisionParams.from_thresholds()
    assert p.gradual() == GradualParams(p.shot_gradual_half_window, p.shot_gradual_min_change, p.shot_gradual_max_residual, p.shot_gradual_min_mixed, p.shot_fade_level, p.shot_gradual_span_weight)
    assert replace(VisionParams.from_thresholds(), shot_gradual_half_window=0).gradual() is None


@pytest.mark.parametrize("name", HARD)
def test_talking_clips_hold_their_persons_voice(hard, name):
    """Clips on hard footage (dissolves, an off-screen voice, lips leading the voice): the
    talking clips' speech is the shown person's voice alone for >= 95 % of it."""
    from tests.gt_scoring import corpus_voice_purity

    res = corpus_voice_purity({name: hard[name]})
    assert res["clips"] >= 1 and res["purity"] >= 0.95 and res["worst"] >= 0.9, res
