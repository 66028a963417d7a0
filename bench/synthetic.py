"""What the SpeakerVid-5M-scale SQL benchmarks (bench/tiers_bench.py, bench/branches_bench.py)
share: conforming generated rows to a catalogue table, building the synthetic lake once, and
timing the measured step in a fresh process (so its peak RSS is that step's alone, not the
lake builder's) with the load average at its start (the machine is shared)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import polars as pl

from orchestration import lake as lake_io
from orchestration.tables import TABLES


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """``df`` as rows of ``table``: the columns it lacks null, every column cast to the schema."""
    return TABLES[table].conform(df.with_columns([pl.lit(None, d).alias(c) for c, d in TABLES[table].schema.items() if c not in df.columns]))


def cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_gb() -> float:
    """This process's peak RSS (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def ensure_lake(lake: str, build: Callable[[], None]) -> None:
    """Run ``build`` unless the lake already holds ``clips`` (it is reused across runs)."""
    if not lake_io.table_exists("clips", lake):
        t = time.perf_counter()
        build()
        print(f"built the synthetic lake in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def measure_in_fresh_process(module: str, lake: str) -> tuple[dict, float]:
    """Run ``python -m module --lake lake --measure`` and return the JSON it prints last and
    the 1-minute load average when it started."""
    load_start = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-m", module, "--lake", lake, "--measure"], check=True, capture_output=True, text=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1]), load_start
