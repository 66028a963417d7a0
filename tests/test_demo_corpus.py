"""Verify the demo corpus (demo/build_corpus.py) the way the pipeline will see it.

The corpus is decoded with PyAV and re-analysed with the shipped SCRFD-500M + 2d106 +
ArcFace models: container/stream properties, hard cuts exactly at the recorded frames,
face count / position / identity per shot, audio aligned with the source mix, and mouth
opening that follows the person's OWN voice (not the other one's).

The corpus is built once per session into ``$SPEAKERLAKE_DEMO_CORPUS`` (default
``.cache/demo_corpus``, git-ignored). The builder is idempotent (fingerprint = builder
source + spec), so a re-run reuses it and any builder change rebuilds it. Run with ``-s``
to see the measured numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``demo`` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("insightface")

from demo import build_corpus as bc  # noqa: E402
from demo import media  # noqa: E402

SR = 16000
REPORT: dict[str, dict] = {}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def corpus_dir(demo_corpus_dir) -> Path:
    return demo_corpus_dir


@pytest.fixture(scope="session")
def corpus(corpus_dir) -> dict:
    return json.loads((corpus_dir / "corpus.json").read_text())


@pytest.fixture(scope="session")
def face_models() -> dict:
    """SCRFD (det 320) + 2d106 + ArcFace from the shipped files, on single-threaded ORT
    sessions (2 shared cores: ORT's default thread pool is ~3x slower under contention)."""
    import onnxruntime as ort
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.landmark import Landmark
    from insightface.model_zoo.scrfd import SCRFD

    cv2.setNumThreads(1)
    d = bc.shipped_face_files()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1

    def sess(name):
        return ort.InferenceSession(str(d / name), so, providers=["CPUExecutionProvider"])

    det = SCRFD(str(d / "scrfd_500m_bnkps.onnx"), sess("scrfd_500m_bnkps.onnx"))
    det.prepare(-1, input_size=(320, 320), det_thresh=0.5)
    lmk = Landmark(str(d / "2d106det.onnx"), sess("2d106det.onnx"))
    rec = ArcFaceONNX(str(d / "w600k_mbf.onnx"), sess("w600k_mbf.onnx"))
    for m in (lmk, rec):
        m.prepare(-1)
    return {"det": det, "lmk": lmk, "rec": rec}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def _shot_of(gt, f):
    return next(s for s in gt["shots"] if s["start_frame"] <= f < s["end_frame"])


@pytest.fixture(scope="session")
def gts(corpus_dir, corpus):
    gts = {v["name"]: json.loads((corpus_dir / v["gt"]).read_text()) for v in corpus["videos"]}
    # hard footage (dissolves, zoom, off-screen voice, lips leading the voice) is verified
    # by tests/test_hard_footage.py; the checks here assume hard cuts and lips on the voice
    return {name: gt for name, gt in gts.items() if "transitions" not in gt}


def _reference_embeddings(gts, face_models) -> dict:
    """ArcFace embedding of every GT face in its source photo (found by its recorded box)."""
    from insightface.app.common import Face

    det, rec = face_models["det"], face_models["rec"]
    srcs = media.face_images()
    out = {}
    det.prepare(-1, input_size=(640, 640))
    try:
        for gt in gts.values():
            for info in gt["people"].values():
                if info["face"] in out:
                    continue
                img = cv2.imread(str(srcs[info["face"].split(":")[0]]))
                bbs, kps = det.detect(img, max_num=0, metric="default")
                k = int(np.argmax([_iou(b[:4], info["face_source_box"]) for b in bbs]))
                assert _iou(bbs[k][:4], info["face_source_box"]) > 0.8, info
                face = Face(bbox=bbs[k][:4], kps=kps[k], det_score=bbs[k][4])
                rec.get(img, face)
                out[info["face"]] = face.normed_embedding
    finally:
        det.prepare(-1, input_size=(320, 320))
    return out


@pytest.fixture(scope="session")
def analysis(corpus_dir, gts, face_models) -> dict:
    """One streaming PyAV pass per video (frames are not kept in memory):

    * stream properties, frame count, 16 kHz mono audio (PyAV resampler),
    * mean absolute difference between consecutive 160x90 luma frames (cut check),
    * SCRFD (det 320) + 2d106 on every 4th frame of the conversations and every 6th of the
      monologue: face count vs GT, detections matched to GT boxes by IoU, mouth opening =
      vertical spread of 2d106 points 52-71 / detected face height,
    * ArcFace on 3 frames per shot: similarity of each GT box's face to every person's photo.
    """
    from insightface.app.common import Face

    det, lmk, rec = face_models["det"], face_models["lmk"], face_models["rec"]
    ref = _reference_embeddings(gts, face_models)
    out = {}
    t0 = time.perf_counter()
    for name, gt in gts.items():
        path = corpus_dir / gt["video"]
        step = 4 if len(gt["people"]) > 1 else 6
        id_frames = {
            int(f) for s in gt["shots"] for f in np.linspace(s["start_frame"], s["end_frame"] - 1, 3).round()
        }
        res = {
            "obs": {p: {} for p in gt["people"]}, "count_ok": 0, "count_n": 0, "matched": 0, "unmatched": 0,
            "ident": [],  # (gt person, {person: cos})
        }
        diffs, prev, n = [], None, 0
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            aud = c.streams.audio[0]
            res["info"] = {
                "vcodec": vs.codec_context.name, "fps": float(vs.average_rate), "width": vs.codec_context.width,
                "height": vs.codec_context.height, "acodec": aud.codec_context.name, "arate": aud.codec_context.sample_rate,
            }
            for f, frame in enumerate(c.decode(video=0)):
                n += 1
                plane = frame.planes[0]
                luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
                small = cv2.resize(luma, (160, 90), interpolation=cv2.INTER_AREA).astype(np.float32)
                if prev is not None:
                    diffs.append(float(np.abs(small - prev).mean()))
                prev = small
                if f % step and f not in id_frames:
                    continue
                bgr = frame.to_ndarray(format="bgr24")
                shot = _shot_of(gt, f)
                bboxes, kpss = det.detect(bgr, max_num=0, metric="default")
                faces = []
                for k, bb in enumerate(bboxes):
                    best = max(shot["faces"], key=lambda g: _iou(bb[:4], g["box"]))
                    faces.append((best["person"] if _iou(bb[:4], best["box"]) >= 0.5 else None, Face(bbox=bb[:4], kps=kpss[k], det_score=bb[4])))
                if f % step == 0:
                    res["count_n"] += 1
                    res["count_ok"] += int(len(bboxes) == len(shot["faces"]))
                    for person, face in faces:
                        if person is None:
                            res["unmatched"] += 1
                            continue
                        res["matched"] += 1
                        mouth = lmk.get(bgr, face)[52:72]
                        h = float(face.bbox[3] - face.bbox[1])
                        res["obs"][person][f] = float(mouth[:, 1].max() - mouth[:, 1].min()) / h
                if f in id_frames:
                    for g in shot["faces"]:
                        match = [fc for person, fc in faces if person == g["person"]]
                        if not match:
                            res["ident"].append((g["person"], None))
                            continue
                        rec.get(bgr, match[0])
                        e = match[0].normed_embedding
                        res["ident"].append((g["person"], {q: float(e @ ref[info["face"]]) for q, info in gt["people"].items()}))
        res["n_frames"] = n
        res["diffs"] = np.array(diffs)
        chunks = []
        with av.open(str(path)) as c:
            rs = av.AudioResampler(format="flt", layout="mono", rate=SR)
            for fr in c.decode(audio=0):
                chunks.extend(g.to_ndarray().reshape(-1) for g in rs.resample(fr))
            chunks.extend(g.to_ndarray().reshape(-1) for g in rs.resample(None))
        res["audio"] = np.concatenate(chunks).astype(np.float32)
        out[name] = res
    REPORT.setdefault("timing", {})["analysis_s"] = round(time.perf_counter() - t0, 1)
    return out


def _envelopes(audio: np.ndarray, gt: dict) -> dict[str, np.ndarray]:
    """Per person, per video frame: RMS of the decoded audio inside that person's GT turns."""
    n = gt["n_frames"]
    spf = SR // gt["fps"]
    x = np.zeros(n * spf, np.float32)
    m = min(len(audio), len(x))
    x[:m] = audio[:m]
    env = {}
    for p in gt["people"]:
        gate = np.zeros_like(x)
        for t in gt["turns"]:
            if t["person"] == p:
                gate[int(t["start"] * SR) : int(t["end"] * SR)] = 1.0
        e = np.sqrt(((x * gate).reshape(n, spf).astype(np.float64) ** 2).mean(axis=1))
        env[p] = np.convolve(np.pad(e, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return env


def _corr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------- tests
def test_corpus_index(corpus, gts):
    vids = corpus["videos"]
    assert len(vids) >= 3
    assert corpus["total_duration"] >= 60.0
    assert {v["split"] for v in vids} == {"tune", "holdout"}
    convs = [g for g in gts.values() if len(g["people"]) == 2]
    assert len(convs) >= 2
    faces = [frozenset(p["face"] for p in g["people"].values()) for g in convs]
    assert len(set(faces)) == len(faces), "conversations must use different face pairs"
    for g in gts.values():
        for t in g["turns"]:
            assert 0.0 <= t["start"] < t["end"] <= g["duration"] + 1e-6
        if len(g["people"]) == 2:  # alternating conversation: both talk, several turn changes
            assert sum(bool(t["text"]) for t in g["turns"]) >= len(g["turns"]) - 1  # one untranscribed backchannel
            seq = [t["person"] for t in sorted(g["turns"], key=lambda t: t["start"])]
            assert len({*seq}) == 2 and sum(a != b for a, b in zip(seq, seq[1:])) >= 5
            assert {s["layout"] for s in g["shots"]} == {"two_shot", "single"}
            assert {x["kind"] for x in g["listening"]} == {"co_present", "not_co_present"}
            assert {x["on_screen"] for x in g["speaking"]} == {True, False}
        else:
            assert len(g["shots"]) >= 2


def test_streams_and_durations(analysis, gts):
    for name, res in analysis.items():
        gt, info = gts[name], res["info"]
        assert info["vcodec"] == "h264" and info["acodec"] == "aac", info
        assert info["fps"] == gt["fps"] == 25
        assert (info["width"], info["height"]) == (gt["width"], gt["height"]) == (640, 360)
        assert res["n_frames"] == gt["n_frames"], (name, res["n_frames"])
        assert abs(len(res["audio"]) / SR - gt["duration"]) < 0.1, (name, len(res["audio"]) / SR)


def test_cuts_exact(analysis, gts):
    """Frame-difference spikes at exactly the recorded cuts and nowhere else."""
    rep = {}
    for name, res in analysis.items():
        gt = gts[name]
        diff = res["diffs"]  # diff[i] = |frame i+1 - frame i|
        cut_idx = np.array(gt["cuts"]) - 1
        at_cuts = diff[cut_idx]
        others = np.delete(diff, cut_idx)
        rep[name] = {"min_at_cut": round(float(at_cuts.min()), 1), "max_elsewhere": round(float(others.max()), 2)}
        assert at_cuts.min() > 4 * others.max() and at_cuts.min() > 8.0, (name, rep[name])
        assert sorted(np.argsort(diff)[-len(gt["cuts"]) :] + 1) == gt["cuts"]
        assert [s["start_frame"] for s in gt["shots"][1:]] == gt["cuts"]
        assert gt["shots"][0]["start_frame"] == 0 and gt["shots"][-1]["end_frame"] == gt["n_frames"]
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(gt["shots"], gt["shots"][1:]))
    REPORT["cuts"] = rep


def test_scenedetect_finds_cuts(corpus_dir, gts):
    """PySceneDetect's ContentDetector (default threshold) finds exactly the GT cuts."""
    sd = pytest.importorskip("scenedetect")
    rep = {}
    for name, gt in gts.items():
        scenes = sd.detect(str(corpus_dir / gt["video"]), sd.ContentDetector(), show_progress=False)
        found = [s[0].frame_num for s in scenes[1:]]
        rep[name] = found
        assert found == gt["cuts"], (name, found, gt["cuts"])
    REPORT["scenedetect"] = rep


def test_audio_matches_source_mix(analysis):
    """Decoded AAC track == the builder's mix, with zero lag (A/V timing of the GT holds)."""
    rep = {}
    for spec in bc.video_specs(list(analysis)):
        audio = analysis[spec.name]["audio"]
        ref = spec.audio.mix[: spec.n_frames * bc.SPF].astype(np.float64)
        peak = np.abs(ref).max()
        ref = ref * (0.95 / peak if peak > 0.95 else 1.0)
        n = min(len(ref), len(audio)) - 800
        a = audio[400 : 400 + n].astype(np.float64)
        from scipy.signal import correlate

        cc = correlate(a, ref[240 : 560 + n], mode="valid", method="fft")  # lags -160..+160 samples
        best = int(np.argmax(cc)) - 160
        r = _corr(a, ref[400 + best : 400 + best + n])
        rep[spec.name] = {"lag_samples": best, "r": round(r, 4)}
        assert abs(best) <= 2 and r > 0.95, (spec.name, best, r)
    REPORT["audio"] = rep


def test_faces_per_shot(analysis):
    """SCRFD finds exactly the GT faces, at the GT boxes (IoU >= 0.5), on the sampled frames."""
    rep = {}
    for name, res in analysis.items():
        frac = res["count_ok"] / res["count_n"]
        rep[name] = {"frames": res["count_n"], "count_ok": round(frac, 3), "matched": res["matched"], "unmatched": res["unmatched"]}
        assert frac >= 0.97, (name, rep[name])
        assert res["unmatched"] <= 0.01 * res["matched"], (name, rep[name])
    REPORT["faces"] = rep


def test_identity_per_shot(analysis):
    """ArcFace: the face in each GT box is the GT person's source photo, not the other one."""
    rep = {}
    for name, res in analysis.items():
        sims = [s for _, s in res["ident"] if s]
        ok = sum(1 for p, s in res["ident"] if s and max(s, key=s.get) == p and s[p] > 0.4)
        own = [s[p] for p, s in res["ident"] if s]
        other = [v for p, s in res["ident"] if s for q, v in s.items() if q != p]
        rep[name] = {
            "faces": len(res["ident"]), "correct": ok, "min_cos_own": round(min(own), 3),
            "max_cos_other": round(max(other), 3) if other else None,
        }
        assert ok == len(res["ident"]) == len(sims), (name, rep[name])
    REPORT["identity"] = rep


def test_mouth_follows_own_voice(analysis, gts):
    """Re-detected mouth opening correlates with the person's own voice, not the other's."""
    rep = {}
    for name, res in analysis.items():
        gt = gts[name]
        env = _envelopes(res["audio"], gt)
        for p, obs in res["obs"].items():
            fr = np.array(sorted(obs))
            mo = np.array([obs[f] for f in fr])
            r_own = _corr(mo, env[p][fr])
            lag_r = {lag: _corr(mo, env[p][np.clip(fr + lag, 0, gt["n_frames"] - 1)]) for lag in (-2, -1, 0, 1, 2)}
            entry = {"frames": int(len(fr)), "r_own": round(r_own, 3), "best_lag": max(lag_r, key=lag_r.get)}
            others = [q for q in gt["people"] if q != p]
            if others:
                entry["r_other"] = round(max(_corr(mo, env[q][fr]) for q in others), 3)
                assert r_own > 0.5 and r_own - entry["r_other"] > 0.4, (name, p, entry)
            else:
                assert r_own > 0.5, (name, p, entry)
            assert abs(entry["best_lag"]) <= 1, (name, p, lag_r)
            rep[f"{name}:{p}"] = entry
    REPORT["mouth"] = rep


def test_rebuild_is_idempotent(corpus_dir):
    """A second build is a no-op (every video reported up to date)."""
    msgs = []
    t0 = time.perf_counter()
    bc.build(corpus_dir, log=msgs.append)
    assert all("up to date" in m for m in msgs), msgs
    assert time.perf_counter() - t0 < 10


def test_zz_report():
    print("\n=== demo corpus verification ===")
    for k, v in REPORT.items():
        print(f"{k}: {json.dumps(v)}")
