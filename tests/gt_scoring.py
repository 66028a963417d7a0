"""Scoring helpers shared by the binding tests: face-box IoU, visible tracks per frame and
listening frames against the demo corpus' ground truth."""

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
