"""Training batches straight from the lake: PyTorch iterable datasets over a DuckDB query.

The query runs once, when the dataset is built, over the lake's views (the same connection as
``speakerlake sql``: local folder or s3://). Its rows are sorted by video and clip start and
cut into contiguous, disjoint shards, one per (rank, DataLoader worker): every row is read
exactly once per epoch across all ranks and workers, no row is padded in or dropped (ranks
may get a row more or fewer than others), and each worker reads its videos' clips in order
(one open, or one S3 download, per video and worker). A clip whose media is missing or
damaged is skipped with a logging warning naming the clip, the file and the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import av
import polars as pl
from botocore.exceptions import BotoCoreError, ClientError
from torch.utils.data import IterableDataset
from webdataset.utils import pytorch_worker_info

from assets.release.media import other_speaker_spans
from assets.train.media import MediaError, read_audio, read_frames
from orchestration import lake as lake_io
from orchestration.cli import check_read_only
from orchestration.lake import SQL_DIR, run_sql_file
from orchestration.thresholds import threshold

log = logging.getLogger(__name__)

TRAIN_SQL = SQL_DIR / "train.sql"
# what a bad source file raises: PyAV/FFmpeg (unreadable, truncated), the file system (missing),
# S3 (missing object, no access), and MediaError (frames missing over the clip)
MEDIA_ERRORS = (av.FFmpegError, OSError, BotoCoreError, ClientError, MediaError)
PAIR_COLUMNS = ("pair_id", "initiator_clip_id", "responder_clip_id")


class _ClipFailed(Exception):
    """A clip's media failed (one of MEDIA_ERRORS); the message names the clip, file and reason."""


def shard_bounds(n: int, shard: int, shards: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of shard ``shard`` of ``shards`` contiguous shards of ``n`` rows
    (sizes differ by at most one; together they are the ``n`` rows, each once)."""
    return n * shard // shards, n * (shard + 1) // shards


def current_shard(built_rank: tuple[int, int] = (0, 1)) -> tuple[int, int]:
    """(shard, shards) of the calling process: rank x DataLoader worker. The rank is
    webdataset's reading (torchrun's RANK/WORLD_SIZE, else torch.distributed once
    initialised); where that sees one process, ``built_rank``, the (rank, world) of the process
    that built the dataset: a spawned DataLoader worker has neither."""
    rank, world, worker, workers = pytorch_worker_info()
    if world == 1:
        rank, world = built_rank
    return rank * workers + worker, world * workers


class _OpenMedia:
    """A local path for the current video's raw media, kept while consecutive clips use it
    (an S3 object is downloaded once per run of clips, not once per clip)."""

    def __init__(self) -> None:
        self.uri: str | None = None
        self.path: Path | None = None
        self.stack = contextlib.ExitStack()

    def path_for(self, uri: str) -> Path:
        if uri != self.uri or self.path is None:
            self.close()
            self.uri = uri
            self.path = self.stack.enter_context(lake_io.local_copy(uri))
        return self.path

    def close(self) -> None:
        self.stack.close()
        self.uri, self.path = None, None


class _LakeDataset(IterableDataset):
    """The query, the clip fields of every clip it names, and the sharded iteration."""

    clip_columns: tuple[str, ...] = ()

    def __init__(
        self,
        sql: str,
        lake: str,
        fps: float = 25.0,
        size: tuple[int, int] = (128, 128),
        sample_rate: int = 16000,
        cleaned_audio: bool = True,
    ) -> None:
        super().__init__()
        self.sql, self.lake = sql, lake
        self.fps, self.size, self.sample_rate, self.cleaned_audio = float(fps), (int(size[0]), int(size[1])), int(sample_rate), cleaned_audio
        self.max_gap_s = threshold("train_max_frame_gap_s")
        rank, world, _, _ = pytorch_worker_info()
        self._built_rank = (rank, world)
        rows, clips, turns = self._query()
        # Everything Polars does happens here: a forked DataLoader worker deadlocks in a Polars
        # thread pool; __iter__ reads plain Python rows only. (Forked workers can still hang on
        # other libraries' locks taken in the parent, e.g. inside the test suite's process:
        # the README and the tests use spawned workers.)
        turns_by_video = {k[0]: v for k, v in turns.partition_by("video_id", as_dict=True).items()}
        self._clips: dict[str, dict] = {}
        for c in clips.iter_rows(named=True):
            turns_of = turns_by_video.get(c["video_id"])
            c["silence"] = other_speaker_spans(turns_of, c["speaker_local"], c["start_seconds"], c["end_seconds"]) if turns_of is not None else []
            self._clips[c["clip_id"]] = c
        self.rows = self._ordered(rows)  # the query's rows in reading order (public, for inspection)
        self._records = self.rows.to_dicts()

    def _query(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        con = lake_io.duckdb_connection(self.lake)
        try:
            check_read_only(con, self.sql)
            rows = con.sql(self.sql).pl()
            missing = [c for c in self.clip_columns if c not in rows.columns]
            if missing:
                raise ValueError(f"the query must return {list(self.clip_columns)}; it lacks {missing} (columns: {rows.columns})")
            ids = pl.concat([rows.select(pl.col(c).cast(pl.String).alias("clip_id")) for c in self.clip_columns]).drop_nulls().unique()
            con.register("train_ids", ids.to_arrow())
            run_sql_file(con, TRAIN_SQL)
            clips = con.sql("SELECT * FROM train_clips").pl()
            turns = con.sql("SELECT * FROM train_turns").pl() if self.cleaned_audio else pl.DataFrame(schema={"video_id": pl.String})
        finally:
            con.close()
        return rows, clips, turns

    def _ordered(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The rows whose clips are all in ``clips`` (others: warned and left out), sorted by the
        first clip's video and start so a shard holds runs of one video."""
        known = pl.lit(True)
        for c in self.clip_columns:
            known = known & pl.col(c).is_in(list(self._clips)).fill_null(False)  # a null clip id is unknown too
        unknown = rows.filter(~known)
        for r in unknown.select(self.clip_columns).iter_rows():
            log.warning("skipping query row %s: clip not in the clips table", dict(zip(self.clip_columns, r)))
        first = self.clip_columns[0]
        order = pl.DataFrame(
            [(c["clip_id"], c["video_id"], c["start_seconds"]) for c in self._clips.values()],
            schema={first: pl.String, "_video": pl.String, "_start": pl.Float64},
            orient="row",
        )
        return (
            rows.filter(known)
            .with_row_index("_row")
            .with_columns(pl.col(first).cast(pl.String))
            .join(order, on=first, how="left")
            .sort("_video", "_start", first, "_row")
            .drop("_row", "_video", "_start")
        )

    def _clip(self, clip_id: str, media: _OpenMedia) -> dict:
        """One clip's training sample (raises _ClipFailed, naming the clip, its file and the
        reason, when its media fails)."""
        c = self._clips[clip_id]
        try:
            if c["raw_uri"] is None:
                raise MediaError(f"video {c['video_id']} has no videos row (no raw media)")
            return self._sample(c, media.path_for(c["raw_uri"]))
        except MEDIA_ERRORS as e:
            raise _ClipFailed(f"clip {clip_id}, media {c['raw_uri']}: {type(e).__name__}: {e}") from e

    def _sample(self, c: dict, path: Path) -> dict:
        start, end = c["start_seconds"], c["end_seconds"]
        return {
            "clip_id": c["clip_id"],
            "video_id": c["video_id"],
            "speaker_id": c["speaker_id"],
            "start_s": start,
            "end_s": end,
            "frames": read_frames(path, start, end, c["bbox"], self.fps, self.size, self.max_gap_s),
            "audio": read_audio(path, start, end, self.sample_rate, c["silence"] if self.cleaned_audio else None),
            "text": c["text"],
            "words": [{"word": w["word"], "start": w["start"] - start, "end": w["end"] - start} for w in c["words"] or []],
            "annotations": {},
        }

    def _item(self, row: dict, media: _OpenMedia) -> dict:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        lo, hi = shard_bounds(len(self._records), *current_shard(self._built_rank))
        media = _OpenMedia()
        try:
            for row in self._records[lo:hi]:
                try:
                    item = self._item(row, media)
                except _ClipFailed as e:
                    log.warning("skipping %s: %s", {c: row[c] for c in self.clip_columns}, e)
                    continue
                yield item
        finally:
            media.close()


class LakeClipDataset(_LakeDataset):
    """Clips of a DuckDB query over the lake (at least a ``clip_id`` column; join anything from
    clips, clip_quality, clip_tiers, the branch tables). Each item::

        clip_id, video_id, speaker_id, start_s, end_s   the clip (clips table)
        frames       uint8 T x H x W x 3 RGB: the clip's person crop (clips.bbox) resized to
                     ``size`` = (H, W), sampled at ``fps`` (T = round(duration x fps))
        audio        float32 mono at ``sample_rate``, round(duration x sample_rate) samples;
                     ``cleaned_audio``: other speakers' turns silenced (as the release's .wav);
                     zeros when the video has no audio
        text, words  ASR text; words [{word, start, end}] in seconds from the clip start
        annotations  the query's other columns (every column but clip_id)
    """

    clip_columns = ("clip_id",)

    def _item(self, row: dict, media: _OpenMedia) -> dict:
        item = self._clip(row["clip_id"], media)
        item["annotations"] = {k: v for k, v in row.items() if k != "clip_id"}
        return item


class LakePairDataset(_LakeDataset):
    """Dialogue pairs of a DuckDB query returning ``pair_id``, ``initiator_clip_id`` and
    ``responder_clip_id`` (e.g. over ``dialogue_pairs`` or ``vidchat_testset``). Each item:
    ``{pair_id, initiator: <clip item>, responder: <clip item>, annotations}`` (clip items as
    LakeClipDataset's, their annotations empty; the pair's annotations: the query's other
    columns). A pair is skipped when either clip's media fails."""

    clip_columns = ("initiator_clip_id", "responder_clip_id")

    def _ordered(self, rows: pl.DataFrame) -> pl.DataFrame:
        if "pair_id" not in rows.columns:
            raise ValueError(f"the query must return {list(PAIR_COLUMNS)}; it lacks pair_id (columns: {rows.columns})")
        return super()._ordered(rows)

    def _item(self, row: dict, media: _OpenMedia) -> dict:
        return {
            "pair_id": row["pair_id"],
            "initiator": self._clip(row["initiator_clip_id"], media),
            "responder": self._clip(row["responder_clip_id"], media),
            "annotations": {k: v for k, v in row.items() if k not in PAIR_COLUMNS},
        }


def _hf_clip(item: dict) -> dict:
    """A clip item as a Hugging Face record (annotations as JSON text: their columns are
    whatever the query returned, of any type)."""
    return {**item, "annotations": json.dumps(item["annotations"], default=str, sort_keys=True)}


def to_hf_dataset(
    sql: str,
    lake: str,
    *,
    pairs: bool = False,
    fps: float = 25.0,
    size: tuple[int, int] = (128, 128),
    sample_rate: int = 16000,
    cleaned_audio: bool = True,
):
    """The same query's samples as a Hugging Face ``datasets.Dataset`` (written to the
    ``datasets`` cache as Arrow): LakeClipDataset's items, or LakePairDataset's with
    ``pairs=True``; ``annotations`` become a JSON string. Needs the optional ``datasets``
    package (``pip install 'speakerlake[hf]'``)."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            "to_hf_dataset needs the Hugging Face `datasets` package, which speakerlake does not install: "
            "pip install 'speakerlake[hf]' (or pip install datasets). LakeClipDataset / LakePairDataset need only torch."
        ) from e

    h, w = int(size[0]), int(size[1])
    clip = {
        "clip_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "speaker_id": datasets.Value("string"),
        "start_s": datasets.Value("float64"),
        "end_s": datasets.Value("float64"),
        "frames": datasets.Array4D(shape=(None, h, w, 3), dtype="uint8"),
        "audio": datasets.Sequence(datasets.Value("float32")),
        "text": datasets.Value("string"),
        "words": [{"word": datasets.Value("string"), "start": datasets.Value("float64"), "end": datasets.Value("float64")}],
        "annotations": datasets.Value("string"),
    }
    options = {"fps": fps, "size": (h, w), "sample_rate": sample_rate, "cleaned_audio": cleaned_audio}
    if pairs:
        features = datasets.Features({"pair_id": datasets.Value("string"), "initiator": clip, "responder": clip, "annotations": datasets.Value("string")})
    else:
        features = datasets.Features(clip)
    # datasets caches a generator's output under a hash of the generator and gen_kwargs: the
    # digest of the query's rows and clips makes a changed lake a new dataset, not a stale cache
    source = (LakePairDataset if pairs else LakeClipDataset)(sql, lake, **options)
    digest = hashlib.sha256(json.dumps([source.rows.to_dicts(), sorted(source._clips.items())], default=str).encode()).hexdigest()
    return datasets.Dataset.from_generator(
        _hf_records, features=features, gen_kwargs={"sql": sql, "lake": lake, "pairs": pairs, "options": options, "digest": digest}
    )


def _hf_records(sql: str, lake: str, pairs: bool, options: dict, digest: str) -> Iterator[dict]:
    """to_hf_dataset's generator (module level: datasets hashes it; ``digest`` only keys the cache)."""
    if pairs:
        for item in LakePairDataset(sql, lake, **options):
            yield {**_hf_clip(item), "initiator": _hf_clip(item["initiator"]), "responder": _hf_clip(item["responder"])}
    else:
        yield from (_hf_clip(item) for item in LakeClipDataset(sql, lake, **options))
