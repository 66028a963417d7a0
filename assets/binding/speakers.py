"""Roll the dataset-wide ``speakers`` table up from its members.

The batch step (`assign_batch_speaker_ids`) decides which cluster each track joins; the
``speakers`` rows are then recomputed from *all* member tracks in the lake rather than
incremented, so re-running a batch (after a crash, or to re-tune) cannot double-count.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from orchestration.tables import TABLES


def speakers_rollup(members: pl.DataFrame) -> pl.DataFrame:
    """``members``: speaker_id, video_id, track_id, embedding, seconds — one row per track."""
    rows = []
    for (sid,), g in members.filter(pl.col("speaker_id").is_not_null()).group_by(["speaker_id"], maintain_order=True):
        embs = [np.asarray(e, dtype=np.float64) for e in g["embedding"].to_list() if e is not None and len(e)]
        w = np.array([max(float(s or 0.0), 1e-3) for s, e in zip(g["seconds"].to_list(), g["embedding"].to_list()) if e is not None and len(e)])
        if not embs:
            continue
        c = (np.stack(embs) * w[:, None]).sum(0)
        c = c / (np.linalg.norm(c) or 1.0)
        rows.append(
            {
                "speaker_id": sid,
                "centroid": c.astype(np.float32).tolist(),
                "n_videos": g["video_id"].n_unique(),
                "n_tracks": g.height,
                "seconds": float(g["seconds"].fill_null(0.0).sum()),
            }
        )
    spec = TABLES["speakers"]
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema)) if rows else spec.empty()
