"""Incremental cost: one new video added to a lake that already holds many batches, against
the same video added to an empty lake (issue 22: at most 1.2×).

A batch should read only its own videos' rows (``lake.read(..., video_ids=...)``), so its cost
must not grow with the lake. The one dataset-wide read a batch makes on purpose is the
speaker table (speaker ids are matched against every known speaker).

The full lake is built without running the models a hundred times: one real batch (the
``seed``) is run, and its rows are cloned into ``n_batches`` batches, one Delta commit per
table per batch like real batches, with every id that names the seed (video id, content hash,
batch id, speaker ids, source file) replaced by a new one, so the clones are distinct videos,
speakers and batches to every key and dedup rule. The new video is then processed in-process
(``process_batch`` through ``execute_in_process``, models already loaded in this process)
into a copy of the empty lake and into the full one, alternately, and the minimum of each is
compared. The dataset-wide job (``retier``) is timed too: it reads every clip by design.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from deltalake import write_deltalake


@dataclass
class IncrementalResult:
    """Seconds per run: wall and CPU (this process, every thread). The ratio is taken on CPU
    seconds, which other jobs on a shared machine do not inflate; wall is reported beside it."""

    n_batches: int
    files_in_full_lake: int
    empty_s: list[float]
    full_s: list[float]
    empty_cpu_s: list[float]
    full_cpu_s: list[float]
    retier_empty_s: float
    retier_full_s: float

    @property
    def ratio(self) -> float:
        return min(self.full_cpu_s) / min(self.empty_cpu_s)

    @property
    def wall_ratio(self) -> float:
        return min(self.full_s) / min(self.empty_s)


def process_cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run_batch(source: Path, lake_uri: str, resources: dict) -> tuple[float, float]:
    """Plan ``source`` as one new batch of ``lake_uri`` and run ``process_batch`` on it in this process; (wall, CPU) seconds."""
    from assets.ingest.planning import plan_batches
    from orchestration.inprocess import run_batches

    t0, c0 = time.perf_counter(), process_cpu_seconds()
    (batch,) = plan_batches(str(source), 100, lake_uri)
    run_batches([batch], lake_uri, resources)
    return time.perf_counter() - t0, process_cpu_seconds() - c0


def _run_retier(lake_uri: str, resources: dict) -> float:
    from orchestration.inprocess import run_retier

    t0 = time.perf_counter()
    run_retier(lake_uri, resources)
    return time.perf_counter() - t0


def _seed_ids(lake_uri: str) -> dict[str, str]:
    """Every id of the seed lake that names its one batch, video, file or speaker."""
    from orchestration import lake

    videos = lake.read("videos", lake_uri)
    files = lake.read("batch_files", lake_uri)
    ids: dict[str, str] = {}
    for v in videos.iter_rows(named=True):
        ids[v["video_id"]] = "video"
        ids[v["sha256"]] = "sha"
    for f in files.iter_rows(named=True):
        ids[f["batch_id"]] = "batch"
        ids[Path(f["source_uri"]).name] = "file"
        ids[f["fingerprint"]] = "fingerprint"
    if lake.table_exists("speakers", lake_uri):
        for s in lake.read("speakers", lake_uri)["speaker_id"].to_list():
            ids[s] = "speaker"
    return ids


def _clone_name(seed: str, kind: str, k: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{seed}|{k}".encode()).hexdigest()
    if kind in ("video", "sha", "fingerprint"):  # hex of the same length: same shape as real ids
        return digest[: len(seed)]
    return f"{seed}-clone{k:04d}"


def clone_batches(seed_lake: str, target_lake: str, n_batches: int) -> int:
    """``target_lake`` gets ``n_batches`` clones of the seed lake's one batch (one commit per
    table per batch); returns the number of data files written."""
    from orchestration import lake
    from orchestration.tables import TABLES

    ids = _seed_ids(seed_lake)
    # longest first, so an id that contains another (a content hash starts with the video id) is replaced whole
    order = sorted(ids, key=len, reverse=True)
    tables = {name: lake.read(name, seed_lake) for name in TABLES if lake.table_exists(name, seed_lake)}
    files = 0
    for k in range(n_batches):
        mapping = {s: _clone_name(s, ids[s], k) for s in order}
        for name, df in tables.items():
            if df.is_empty():
                continue
            cloned = df.with_columns(
                pl.col(c).str.replace_many(order, [mapping[s] for s in order]) for c, t in df.schema.items() if t == pl.Utf8
            )
            # a key derived from the ids by hashing (e.g. reject_id) holds none of them: new per clone
            for c in TABLES[name].key:
                if df.schema[c] == pl.Utf8 and cloned[c].equals(df[c]):
                    cloned = cloned.with_columns(pl.col(c).map_elements(lambda v, k=k: _clone_name(v, "sha", k), return_dtype=pl.Utf8))
            write_deltalake(lake.table_uri(name, target_lake), TABLES[name].conform(cloned).to_arrow(), mode="append")
            files += 1
    return files


def measure_incremental(seed_source: Path, new_source: Path, resources: dict, n_batches: int = 100, repeats: int = 2, workdir: Path | None = None) -> IncrementalResult:
    """``seed_source`` and ``new_source`` are folders with media (different files)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        seed = str(tmp / "seed")
        _run_batch(seed_source, seed, resources)
        full_base = str(tmp / "full_base")
        n_files = clone_batches(seed, full_base, n_batches)
        times: dict[str, list[tuple[float, float]]] = {"empty": [], "full": []}
        for i in range(repeats):  # alternate, on fresh copies: the machine is shared and noisy
            for kind in times:
                target = tmp / f"{kind}{i}"
                if kind == "full":
                    shutil.copytree(full_base, target)
                times[kind].append(_run_batch(new_source, str(target), resources))
        retier_empty = _run_retier(str(tmp / "empty0"), resources)
        retier_full = _run_retier(str(tmp / "full0"), resources)
        (e_wall, e_cpu), (f_wall, f_cpu) = (list(zip(*times[k])) for k in ("empty", "full"))
        return IncrementalResult(n_batches, n_files, list(e_wall), list(f_wall), list(e_cpu), list(f_cpu), retier_empty, retier_full)

