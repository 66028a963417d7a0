"""Ground-truth helpers shared by the tests: face-box IoU, visible tracks per frame, listening
frames and voice purity against the demo corpus' ground truth, and a demo video written into a
lake straight from its ground truth (no model)."""

from __future__ import annotations

import numpy as np
import polars as pl

FPS = 25.0
COLLAR_S = 0.2


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def visible(face_tracks: pl.DataFrame, n: int) -> list[list[int]]:
    vis: list[list[int]] = [[] for _ in range(n)]
    for t, a, b in face_tracks.select("track_id", "start_frame", "end_frame").rows():
        for j in range(max(a, 0), min(b, n)):
            vis[j].append(t)
    return vis


def listening_counts(r: dict, tp: dict[int, str | None]) -> dict:
    """Listening frames against the ground truth (``tp``: GT person of each track); frames
    within COLLAR_S of a GT span edge are not scored."""
    gt, out = r["gt"], r["out"]
    n = gt["n_frames"]
    c = int(round(COLLAR_S * FPS))
    res = {"tp": 0, "fp": 0, "fn": 0, "kind_ok": 0}
    for p in sorted(gt["people"]):
        g = np.zeros(n, bool)
        gk = np.full(n, "", object)
        for s in gt["listening"]:
            if s["person"] == p:
                a, b = int(round(s["start"] * FPS)), int(round(s["end"] * FPS))
                g[a:b] = True
                gk[a:b] = s["kind"]
        pred = np.zeros(n, bool)
        pk = np.full(n, "", object)
        for row in out["listening_segments"].iter_rows(named=True):
            if tp.get(row["track_id"]) == p:
                a, b = int(round(row["start"] * FPS)), int(round(row["end"] * FPS))
                pred[a:b] = True
                pk[a:b] = row["kind"]
        scored = np.ones(n, bool)
        for e in np.flatnonzero(np.diff(np.concatenate([[0], g.astype(int), [0]]))):
            scored[max(e - c, 0) : e + c] = False
        hit = pred & g & scored
        res["tp"] += int(hit.sum())
        res["fp"] += int((pred & ~g & scored).sum())
        res["fn"] += int((~pred & g & scored).sum())
        res["kind_ok"] += int((pk[hit] == gk[hit]).sum())
    return res


def rates(res: dict) -> dict:
    """Precision, recall, F1 and kind accuracy of listening counts."""
    prec = res["tp"] / (res["tp"] + res["fp"]) if res["tp"] + res["fp"] else 0.0
    rec = res["tp"] / (res["tp"] + res["fn"]) if res["tp"] + res["fn"] else 0.0
    return {**res, "precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0, "kind_acc": res["kind_ok"] / res["tp"] if res["tp"] else 0.0}


def track_person_by_boxes(face_tracks: pl.DataFrame, gt: dict, min_iou: float = 0.5, every: int = 5) -> dict[int, str | None]:
    """GT person of each track: best median IoU with the GT face boxes at the same frames
    (zoom and transitions included, `demo.build_corpus.gt_face_boxes`); None below ``min_iou``."""
    from demo.build_corpus import gt_face_boxes

    out = {}
    for t in face_tracks.iter_rows(named=True):
        ious: dict[str, list[float]] = {}
        for f, box in list(zip(t["frames"], t["boxes"]))[::every]:
            for p, g in gt_face_boxes(gt, f).items():
                ious.setdefault(p, []).append(iou(box, g))
        med = {p: float(np.median(v)) for p, v in ious.items()}
        best = max(med, key=med.get) if med else None
        out[int(t["track_id"])] = best if best is not None and med[best] >= min_iou else None
    return out


def voice_purity(clips: pl.DataFrame, gt: dict, tp: dict[int, str | None], step_s: float = 0.01) -> dict:
    """Talking clips against the GT voices, on a ``step_s`` grid: ``voiced`` seconds (some GT
    voice active), ``own`` seconds where the shown person's voice is active, ``solo`` where it
    is the only one, ``silent`` seconds; a clip whose face is nobody's (tp None) owns nothing.
    ``purity`` = solo / voiced: the share of the clip's speech that is its person alone."""
    res = {"clips": 0, "voiced": 0.0, "own": 0.0, "solo": 0.0, "silent": 0.0, "worst": 1.0, "worst_clip": None}
    for c in clips.filter(pl.col("is_talking")).iter_rows(named=True):
        p = tp.get(c["track_id"])
        t = np.arange(c["start_seconds"] + step_s / 2, c["end_seconds"], step_s)
        active = [np.zeros(t.size, bool) for _ in gt["people"]]
        people = sorted(gt["people"])
        for g in gt["turns"]:
            active[people.index(g["person"])] |= (t >= g["start"]) & (t < g["end"])
        any_v = np.any(active, axis=0)
        mine = active[people.index(p)] if p in people else np.zeros(t.size, bool)
        others = np.any([a for q, a in zip(people, active) if q != p], axis=0) if len(people) > 1 else np.zeros(t.size, bool)
        voiced, solo = float(any_v.sum()) * step_s, float((mine & ~others).sum()) * step_s
        res["clips"] += 1
        res["voiced"] += voiced
        res["own"] += float(mine.sum()) * step_s
        res["solo"] += solo
        res["silent"] += float((~any_v).sum()) * step_s
        share = solo / voiced if voiced else 0.0
        if share < res["worst"]:
            res["worst"], res["worst_clip"] = share, c["clip_id"]
    res["purity"] = res["solo"] / res["voiced"] if res["voiced"] else float("nan")
    return res


def clips_of(name: str, r: dict) -> pl.DataFrame:
    """The clips stage on a demo video already analysed by a test module's fixture (``r``:
    gt, audio, tables = audio + vision outputs, out = binding outputs); no speaker ids."""
    from assets.clips.pipeline import analyze_clips
    from orchestration.tables import TABLES

    gt = r["gt"]
    tables = {**r["tables"], **r["out"], "speaker_assignments": TABLES["speaker_assignments"].empty()}
    return analyze_clips({"video_id": name, "fps": gt["fps"], "width": gt["width"], "height": gt["height"]}, tables, r["audio"])


def corpus_voice_purity(analyzed: dict) -> dict:
    """`voice_purity` of the clips of every video in ``analyzed`` (name -> fixture result), summed."""
    tot = {"clips": 0, "voiced": 0.0, "solo": 0.0, "worst": 1.0, "per_video": {}}
    for name, r in analyzed.items():
        res = voice_purity(clips_of(name, r), r["gt"], track_person_by_boxes(r["tables"]["face_tracks"], r["gt"]))
        tot["per_video"][name] = (res["clips"], round(res["voiced"], 1), round(res["purity"], 3) if res["voiced"] else None)
        for k in ("clips", "voiced", "solo"):
            tot[k] += res[k]
        tot["worst"] = min(tot["worst"], res["worst"])
    tot["purity"] = tot["solo"] / tot["voiced"] if tot["voiced"] else float("nan")
    return tot


def gt_person_box(px: list[float], w: int, h: int, grow: float = 1.8) -> list[float]:
    """A person box around a ground-truth face box [x1, y1, x2, y2] (px), normalised and clipped to the frame."""
    cx, cy, bw, bh = (px[0] + px[2]) / 2, (px[1] + px[3]) / 2, (px[2] - px[0]) * grow, (px[3] - px[1]) * grow
    x0, y0 = max(cx - bw / 2, 0), max(cy - bh / 2, 0)
    return [x0 / w, y0 / h, min(bw, w - x0) / w, min(bh, h - y0) / h]


def write_gt_video(media, gt: dict, uri: str) -> str:
    """A demo video into lake ``uri`` without running a model: its ``videos`` row (probed, media
    copied to the raw area) and its ground-truth turns as ``speaker_turns``; returns its video_id."""
    from dataclasses import asdict

    from assets.ingest.probe import probe_video, video_id_for
    from orchestration import lake
    from orchestration.tables import TABLES

    probe = probe_video(media)
    vid = video_id_for(probe.sha256)
    raw = lake.raw_uri(vid, ".mp4", uri)
    lake.put_file(media, raw)
    lake.write("videos", TABLES["videos"].frame([{**asdict(probe), "video_id": vid, "raw_uri": raw, "source_uri": str(media), "batch_id": "b0"}]), lake=uri)
    turns = [{"video_id": vid, "turn_id": i, "speaker_local": t["person"], "start": t["start"], "end": t["end"], "overlap": False} for i, t in enumerate(gt["turns"])]
    lake.write("speaker_turns", TABLES["speaker_turns"].frame(turns), video_ids=[vid], lake=uri)
    return vid
