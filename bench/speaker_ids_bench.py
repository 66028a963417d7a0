"""Benchmark of `assets.binding.speaker_ids` at lake scale, synthetic (random unit vectors).

A lake of ``--speakers`` clusters holding ``--units`` identity units (512-d, each unit a
noisy copy of its person: same-person cosine ~0.74, others ~0), then one batch of
``--batch`` new units, half of them new faces of existing speakers (which touches those
clusters and loads their members), half new people. Times each step of the serialized
``speakers`` asset on this machine:

    python -m bench.speaker_ids_bench --speakers 20000 --units 72000 --batch 1000
    python -m bench.speaker_ids_bench --speakers 83000 --units 300000 --batch 1000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np
import polars as pl

from assets.binding.speaker_ids import (
    _centroid_matrix,
    IDENTITY_UNITS,
    SPEAKER_ASSIGNMENTS,
    apply_update,
    members_of,
    speaker_id_for_unit,
    speakers_from_members,
    touched_speaker_ids,
    update_speaker_ids,
)

D = 512


def _faces(rng, people: np.ndarray, idx: np.ndarray, noise: float = 0.6) -> np.ndarray:
    v = people[idx] + noise * rng.standard_normal((len(idx), D), dtype=np.float32) / np.sqrt(D)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _frame(vids, units, emb: np.ndarray) -> pl.DataFrame:
    n = len(vids)
    return pl.DataFrame(
        {
            "video_id": vids,
            "unit": units,
            "embedding": pl.Series(emb).cast(pl.Array(pl.Float32, D)).cast(pl.List(pl.Float32)),
            "n_tracks": np.ones(n, np.int32),
            "seconds": np.full(n, 5.0),
        }
    ).cast(IDENTITY_UNITS.schema)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speakers", type=int, default=20_000)
    ap.add_argument("--units", type=int, default=72_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--threshold", type=float, default=0.45)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n_people = a.speakers + a.batch
    people = rng.standard_normal((n_people, D), dtype=np.float32)
    people /= np.linalg.norm(people, axis=1, keepdims=True)

    # the lake: every speaker has >= 1 unit; unit i is in video "v<i // 4>" (4 units a video)
    person = np.concatenate([np.arange(a.speakers), rng.integers(0, a.speakers, a.units - a.speakers)])
    rng.shuffle(person)
    vids = [f"v{i // 4:07d}" for i in range(a.units)]
    unames = [f"spk{i % 4}" for i in range(a.units)]
    units = _frame(vids, unames, _faces(rng, people, person))
    # ids as the module would name them: the smallest member key of each person
    keys = pl.DataFrame({"video_id": vids, "unit": unames, "person": person})
    first = keys.sort("video_id", "unit").group_by("person", maintain_order=True).first()
    first = first.with_columns(speaker_id=pl.struct("video_id", "unit").map_elements(lambda r: speaker_id_for_unit(r["video_id"], r["unit"]), return_dtype=pl.String))
    assignments = keys.join(first.select("person", "speaker_id"), on="person").select("video_id", "unit", "speaker_id").cast(SPEAKER_ASSIGNMENTS.schema)
    t = time.perf_counter()
    speakers = speakers_from_members(members_of(assignments, units, first["speaker_id"].to_list()))
    t_rollup = time.perf_counter() - t
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # the batch: half new faces of existing speakers, half new people
    half = a.batch // 2
    bperson = np.concatenate([rng.integers(0, a.speakers, half), a.speakers + np.arange(a.batch - half)])
    bvids = [f"w{i // 4:07d}" for i in range(a.batch)]
    batch = _frame(bvids, [f"spk{i % 4}" for i in range(a.batch)], _faces(rng, people, bperson))
    units2 = pl.concat([units, batch])

    tc = time.perf_counter()
    cm, _ = _centroid_matrix(speakers["centroid"])
    tc1 = time.perf_counter()
    um, _ = _centroid_matrix(batch["embedding"])
    for i in range(0, len(um), 256):
        _ = um[i : i + 256] @ cm.T >= a.threshold
    tc2 = time.perf_counter()
    del cm, um, _

    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    touched = touched_speaker_ids(batch, speakers, assignments, threshold=a.threshold)
    t1 = time.perf_counter()
    members = members_of(assignments, units2, touched)
    t2 = time.perf_counter()
    up = update_speaker_ids(batch, speakers, members, threshold=a.threshold)
    t3, c3 = time.perf_counter(), time.process_time()
    sp2, as2 = apply_update(speakers, assignments, up)
    t4 = time.perf_counter()
    np_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    joined = up.assignments.join(batch.select("video_id", "unit"), on=["video_id", "unit"]).join(assignments, on="speaker_id", how="semi").height
    print(f"speakers {a.speakers:,}  units {a.units:,}  batch {a.batch:,}  dims {D}  cores {os.cpu_count()}")
    print(f"centroid matrix float32: {a.speakers * D * 4 / 2**20:.0f} MiB; speakers frame {speakers.estimated_size('mb'):.0f} MB")
    print(f"full rollup of all {a.units:,} units: {t_rollup:.2f} s")
    print(f"touched_speaker_ids: {t1 - t0:.2f} s ({len(touched):,} touched)")
    print(f"members_of: {t2 - t1:.2f} s ({members.height:,} member rows)")
    print(f"update_speaker_ids: {t3 - t2:.2f} s (joined existing: {joined}, new speakers {up.speakers.height - len(touched) + len(up.removed)}, removed {len(up.removed)})")
    print(f"apply_update (in memory): {t4 - t3:.2f} s")
    print(f"batch total (touched + members + update): {t3 - t0:.2f} s wall, {c3 - c0:.2f} s CPU; load average {os.getloadavg()[0]:.1f}")
    print(f"  of which: speakers centroids -> float32 matrix {tc1 - tc:.2f} s; batch x centroids product + threshold {tc2 - tc1:.2f} s (each done twice: touched, update; plus one more product for near_untouched)")
    print(f"peak Python/NumPy allocation during the batch step (tracemalloc; Polars' own buffers not included): {np_peak:.0f} MiB")
    print(f"peak RSS: before batch {rss0:.0f} MiB, after {rss1:.0f} MiB; speakers after: {sp2.height:,}")


if __name__ == "__main__":
    main()
