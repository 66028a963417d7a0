"""Ingest one planned source file: fetch, validate, hash, probe, copy into the lake.

Returns either a ``videos`` row or a reject item; it never raises for a bad input, so a
batch always finishes and every input is accounted for.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from assets.ingest.sources import is_youtube
from assets.ingest.probe import MIN_DURATION_S, Rejected, probe_video, video_id_for
from orchestration import lake


@contextlib.contextmanager
def fetched(uri: str) -> Iterator[Path]:
    """Local path of a source: local file, S3 object, http(s) URL, or YouTube (yt-dlp extra)."""
    if is_youtube(uri):
        with _youtube(uri) as p:
            yield p
        return
    with lake.local_copy(uri) as p:
        yield p


@contextlib.contextmanager
def _youtube(ref: str) -> Iterator[Path]:
    try:
        import yt_dlp  # noqa: F401  (optional extra: pip install yt-dlp)
    except ImportError as e:
        raise Rejected("unsupported_source", "YouTube sources need the optional yt-dlp package") from e
    url = ref if "/" in ref else f"https://www.youtube.com/watch?v={ref}"
    with tempfile.TemporaryDirectory(prefix="speakerlake-yt-") as d:
        subprocess.run(
            [sys.executable, "-m", "yt_dlp", "-q", "-f", "bv*+ba/b", "--merge-output-format", "mp4", "-o", f"{d}/%(id)s.%(ext)s", url],
            check=True,
        )
        yield next(Path(d).iterdir())


def ingest_file(
    source_uri: str,
    batch_id: str,
    *,
    problem: str | None = None,
    known_ids: dict[str, tuple[str, str]] | None = None,
    taken_down: set[str] | frozenset[str] = frozenset(),
    min_duration_s: float = MIN_DURATION_S,
    lake_uri: str | None = None,
) -> dict:
    """Ingest one file.

    ``known_ids`` maps already-ingested video ids to their (batch, source URI); a file whose
    video id is in ``taken_down`` is a ``taken_down`` reject and is not copied. Returns
    ``{"video": row}``, ``{"done": video_id}`` (this batch ingested this very file already: a
    rerun), or ``{"reject": item}`` (including ``duplicate``: the same bytes were ingested
    before, in an earlier batch or under another name in this one; the message names the copy
    that was kept).
    """
    known_ids = known_ids or {}
    if problem:
        return {"reject": {"source_uri": source_uri, "video_id": None, "reason": problem, "message": _problem_text(problem)}}
    try:
        with fetched(source_uri) as path:
            probe = probe_video(path, min_duration_s=min_duration_s)
            video_id = video_id_for(probe.sha256)
            if video_id in taken_down:
                return {
                    "reject": {
                        "source_uri": source_uri,
                        "video_id": video_id,
                        "reason": "taken_down",
                        "message": f"same content as video {video_id}, taken down (table takedowns)",
                    }
                }
            if video_id in known_ids:
                kept_batch, kept_uri = known_ids[video_id]
                if kept_batch == batch_id and kept_uri == source_uri:
                    return {"done": video_id}
                return {
                    "reject": {
                        "source_uri": source_uri,
                        "video_id": video_id,
                        "reason": "duplicate",
                        "message": f"same content as video {video_id} ({kept_uri}) ingested in batch {kept_batch}",
                    }
                }
            dest = lake.raw_uri(video_id, path.suffix.lower() or ".mp4", lake_uri)
            if not lake.uri_exists(dest):
                lake.put_file(path, dest)
    except Rejected as r:
        return {"reject": {"source_uri": source_uri, "video_id": None, "reason": r.reason, "message": r.message}}
    except (FileNotFoundError, PermissionError) as e:
        return {"reject": {"source_uri": source_uri, "video_id": None, "reason": "unreadable", "message": str(e)}}
    except Exception as e:  # noqa: BLE001 - network/storage errors become rejects, the batch goes on
        return {"reject": {"source_uri": source_uri, "video_id": None, "reason": "fetch_failed", "message": f"{type(e).__name__}: {e}"}}
    row = {
        "video_id": video_id,
        "source_uri": source_uri,
        "raw_uri": dest,
        "batch_id": batch_id,
        "ingested_at": datetime.now(timezone.utc),
        **{k: getattr(probe, k) for k in probe.__dataclass_fields__},
    }
    return {"video": row}


def _problem_text(problem: str) -> str:
    return {
        "path_escapes_root": "manifest entry resolves outside the manifest's folder (the source root)",
        "missing_file": "manifest entry names a file that does not exist",
    }.get(problem, problem)


