"""Takedown: remove a video, or a speaker, and every row derived from it, from every table.

What derives from a target is found from the column names of the table catalogue
(``orchestration.tables``), so a new table is covered when its columns follow the naming:

* ``video_id`` - the taken-down video (video takedown);
* ``*clip_id`` / ``pair_id`` / ``chain_id`` - the clips of the target (the video's, or the
  speaker's: its speaker_id, its identity units or its face tracks), and every pair and chain
  that holds one of those clips or speakers (list columns such as ``context_clip_ids`` too);
* ``*speaker_id`` - the taken-down speaker;
* ``track_id`` / ``speaker_track_id`` and ``speaker_local`` / ``unit`` / ``identity_unit`` /
  ``partner_speaker_local`` (with ``video_id``) - the speaker's face tracks and its identity
  units (its voice: turns, transcripts, bindings, and the listening spans over its speech);
* ``source_uri`` - the source files of the taken-down video (its ``batch_files`` plan rows and
  ``duplicate`` rejects), so a rescan plans them anew and ingest rejects them as taken_down.

The ``takedowns`` table itself keeps the record. The speakers table of a video takedown is
recomputed from the remaining members (`assets.binding.speaker_ids.drop_videos`), as when a
video is reprocessed into no identity unit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import polars as pl

from orchestration.lake import sql_list
from orchestration.tables import TABLES

RECORD_TABLE = "takedowns"
UNIT_COLUMNS = ("speaker_local", "unit", "identity_unit", "partner_speaker_local")
TRACK_COLUMNS = ("track_id", "speaker_track_id")


@dataclass
class Removal:
    """Everything a takedown removes, as ids (tracks and units are per video)."""

    videos: set[str] = field(default_factory=set)
    speakers: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    clips: set[str] = field(default_factory=set)
    pairs: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)
    tracks: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    units: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _roles(columns) -> dict[str, list[str]]:
    return {
        "video": [c for c in columns if c == "video_id"],
        "clip": [c for c in columns if c.endswith("clip_id")],
        "clip_list": [c for c in columns if c.endswith("clip_ids")],
        "speaker": [c for c in columns if c.endswith("speaker_id")],
        "speaker_list": [c for c in columns if c.endswith("speaker_ids")],
        "pair": [c for c in columns if c == "pair_id"],
        "chain": [c for c in columns if c == "chain_id"],
        "source": [c for c in columns if c == "source_uri"],
        "track": [c for c in columns if c in TRACK_COLUMNS] if "video_id" in columns else [],
        "unit": [c for c in columns if c in UNIT_COLUMNS] if "video_id" in columns else [],
    }


def _in_pairs(video_col: str, col: str, by_video: dict) -> pl.Expr:
    """(video_id, col) is one of ``by_video``'s (video, value) pairs."""
    keys = [f"{v}\x00{x}" for v, xs in by_video.items() for x in xs]
    return (pl.col(video_col) + "\x00" + pl.col(col).cast(pl.String)).is_in(keys)


def matches(df: pl.DataFrame, removal: Removal) -> pl.Series:
    """Which rows of a catalogue table ``df`` derive from ``removal``."""
    r = _roles(df.columns)
    conds = [pl.col(c).is_in(list(removal.videos)) for c in r["video"]]
    conds += [pl.col(c).is_in(list(removal.clips)) for c in r["clip"]]
    conds += [pl.col(c).list.eval(pl.element().is_in(list(removal.clips))).list.any() for c in r["clip_list"]]
    conds += [pl.col(c).is_in(list(removal.speakers)) for c in r["speaker"]]
    conds += [pl.col(c).list.eval(pl.element().is_in(list(removal.speakers))).list.any() for c in r["speaker_list"]]
    conds += [pl.col(c).is_in(list(removal.pairs)) for c in r["pair"]]
    conds += [pl.col(c).is_in(list(removal.chains)) for c in r["chain"]]
    conds += [pl.col(c).is_in(list(removal.sources)) for c in r["source"]]
    conds += [_in_pairs("video_id", c, removal.tracks) for c in r["track"]]
    conds += [_in_pairs("video_id", c, removal.units) for c in r["unit"]]
    if not conds:
        return pl.Series([False] * df.height)
    return df.select(pl.any_horizontal(conds).fill_null(False)).to_series()


def predicate(table: str, removal: Removal) -> str | None:
    """The Delta delete predicate (SQL) of the rows of ``table`` that derive from ``removal``,
    on scalar columns only: rows matched through a list column are caught by their pair_id /
    chain_id, which `close_over_pairs` added to ``removal``. None: nothing to delete."""
    r = _roles(TABLES[table].schema)
    ors = []
    for role, ids in (("video", removal.videos), ("clip", removal.clips), ("speaker", removal.speakers), ("pair", removal.pairs), ("chain", removal.chains), ("source", removal.sources)):
        if ids:
            ors += [f"{c} IN ({sql_list(sorted(ids))})" for c in r[role]]
    for role, by_video in (("track", removal.tracks), ("unit", removal.units)):
        for video_id, values in sorted(by_video.items()):
            if not values:
                continue
            inner = " OR ".join(
                f"{c} IN ({', '.join(str(int(v)) for v in sorted(values))})" if role == "track" else f"{c} IN ({sql_list(sorted(values))})" for c in r[role]
            )
            if inner:
                ors.append(f"(video_id = {sql_list([video_id])} AND ({inner}))")
    return " OR ".join(ors) or None


def speaker_closure(speaker_ids: set[str], assignments: pl.DataFrame, track_identities: pl.DataFrame, removal: Removal) -> None:
    """Add a speaker's identity units (``speaker_assignments``) and their face tracks
    (``track_identities``: a unit is a speaker_local, or ``track:<id>`` for a face that never speaks)."""
    units = assignments.filter(pl.col("speaker_id").is_in(list(speaker_ids)))
    for video_id, unit in units.select("video_id", "unit").iter_rows():
        removal.units[video_id].add(unit)
    tracks = track_identities.with_columns(
        pl.coalesce(pl.col("speaker_local"), pl.lit("track:") + pl.col("track_id").cast(pl.String)).alias("unit")
    ).filter(_in_pairs("video_id", "unit", removal.units))
    for video_id, track_id in tracks.select("video_id", "track_id").iter_rows():
        removal.tracks[video_id].add(track_id)


def close_over_pairs(removal: Removal, clips: pl.DataFrame, pair_tables: dict[str, pl.DataFrame]) -> None:
    """Add the clips of the removal's videos, speakers, units and tracks, then every pair and
    chain (``pair_tables``: tables with a pair_id or chain_id) that holds one of them."""
    removal.clips |= set(clips.filter(matches(clips, removal))["clip_id"].to_list())
    for df in pair_tables.values():
        hit = df.filter(matches(df, removal))
        if "pair_id" in hit.columns:
            removal.pairs |= set(hit["pair_id"].to_list())
        if "chain_id" in hit.columns:
            removal.chains |= set(hit["chain_id"].to_list())


def pair_tables() -> list[str]:
    """Catalogue tables whose rows are pairs or chains of clips (and hold clip ids)."""
    return [n for n, s in TABLES.items() if ("pair_id" in s.schema or "chain_id" in s.schema) and any(c.endswith(("clip_id", "clip_ids")) for c in s.schema)]


def purged_tables() -> list[str]:
    """Every catalogue table a takedown deletes from (all but its own record)."""
    return [n for n in TABLES if n != RECORD_TABLE]
