"""Discover source media: a local folder, an S3 prefix, or a manifest (CSV / JSONL).

Discovery is cheap (listing only, no hashing) so sensors can run it often. Each file gets
a fingerprint (size + mtime, or the S3 ETag) so an unchanged file is planned once; the
content hash that becomes ``video_id`` is computed at ingest.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# Extensions scanned in folders / prefixes. Manifests may name anything: every entry is
# probed, and a non-video becomes a reject rather than being silently skipped.
MEDIA_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"}
MANIFEST_EXTENSIONS = {".csv", ".jsonl", ".ndjson"}


# Names of files still being written by common downloaders / uploaders.
PARTIAL_MARKERS = (".part", ".tmp", ".crdownload", ".download", ".partial")


def _is_partial(name: str) -> bool:
    low = name.lower()
    return low.startswith(".") or any(m in low for m in PARTIAL_MARKERS)


@dataclass(frozen=True)
class SourceFile:
    uri: str
    fingerprint: str
    size_bytes: int
    problem: str | None = None  # a reason code when the entry cannot be ingested at all


def _local_entry(path: Path) -> SourceFile:
    st = path.stat()
    return SourceFile(str(path), f"{st.st_size}:{st.st_mtime_ns}", st.st_size)


def discover(source: str, *, settle_seconds: float = 0.0) -> list[SourceFile]:
    """List the media a source holds, sorted by URI.

    Files modified less than ``settle_seconds`` ago, or named like an unfinished download
    (``*.part``, ``*.tmp``, ...), are left for a later scan: a half-copied file would
    otherwise be planned (and rejected as truncated) before its writer finished.
    """
    import time

    cutoff = time.time() - settle_seconds
    if source.startswith("s3://"):
        files = _discover_s3(source, cutoff)
    else:
        path = Path(source).expanduser().resolve()
        if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
            files = _discover_manifest(path)
        elif path.is_dir():
            files = [
                _local_entry(p)
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in MEDIA_EXTENSIONS
                and not _is_partial(p.name)
                and p.stat().st_mtime <= cutoff
            ]
        else:
            raise FileNotFoundError(f"source {source!r} is neither a folder, a manifest (.csv/.jsonl) nor an s3:// prefix")
    return sorted(files, key=lambda f: f.uri)


def _discover_s3(prefix_uri: str, cutoff: float) -> list[SourceFile]:
    from orchestration.lake import s3_client, split_s3

    bucket, prefix = split_s3(prefix_uri)
    out = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            settled = obj["LastModified"].timestamp() <= cutoff
            if Path(key).suffix.lower() in MEDIA_EXTENSIONS and not _is_partial(Path(key).name) and settled:
                out.append(SourceFile(f"s3://{bucket}/{key}", obj["ETag"].strip('"'), int(obj["Size"])))
    return out


def read_manifest(path: Path) -> list[str]:
    """Entries of a manifest: CSV with a ``path``/``uri``/``url`` column (or one bare column), or JSONL."""
    text = path.read_text()
    entries: list[str] = []
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in ("path", "uri", "url", "source") if c in header), None)
        body = rows[1:] if col is not None else rows
        entries = [r[col or 0].strip() for r in body if r and r[col or 0].strip()]
    else:
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            value = obj if isinstance(obj, str) else next(obj[k] for k in ("path", "uri", "url", "source") if k in obj)
            entries.append(str(value).strip())
    return entries


def _discover_manifest(manifest: Path) -> list[SourceFile]:
    """Resolve manifest entries. Local paths must stay inside the manifest's folder (the source root)."""
    root = manifest.parent.resolve()
    out = []
    for entry in read_manifest(manifest):
        if is_youtube(entry):
            out.append(SourceFile(entry, "youtube", -1))
            continue
        if urlparse(entry).scheme in ("s3", "http", "https"):
            # Remote entries are fingerprinted by their URI; their content hash dedups them at ingest.
            out.append(SourceFile(entry, "remote", -1))
            continue
        path = (root / entry.removeprefix("file://")).resolve()
        if not path.is_relative_to(root):
            out.append(SourceFile(entry, "escape", -1, problem="path_escapes_root"))
        elif not path.is_file():
            out.append(SourceFile(str(path), "missing", -1, problem="missing_file"))
        else:
            out.append(_local_entry(path))
    return out


def is_youtube(entry: str) -> bool:
    host = urlparse(entry).netloc.lower()
    if host.endswith(("youtube.com", "youtu.be")):
        return True
    return len(entry) == 11 and all(c.isalnum() or c in "-_" for c in entry)
