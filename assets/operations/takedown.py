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


def match_expr(columns, removal: Removal) -> pl.Expr:
    """True for the rows of a table with ``columns`` that derive from ``removal`` (lazy: a
    filter on a scan reads only the matching rows)."""
    r = _roles(columns)
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
    return pl.any_horizontal(conds).fill_null(False) if conds else pl.lit(False)


def role_columns(table: str) -> list[str]:
    """The columns of ``table`` a takedown looks at (all a match needs)."""
    return [c for cols in _roles(TABLES[table].schema).values() for c in cols]


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


def speaker_closure(speaker_ids: set[str], assignments: pl.LazyFrame, track_identities: pl.LazyFrame, removal: Removal) -> None:
    """Add a speaker's identity units (``speaker_assignments``) and their face tracks
    (``track_identities``: a unit is a speaker_local, or ``track:<id>`` for a face that never speaks)."""
    units = assignments.filter(pl.col("speaker_id").is_in(list(speaker_ids))).select("video_id", "unit").collect()
    for video_id, unit in units.iter_rows():
        removal.units[video_id].add(unit)
    tracks = (
        track_identities.filter(pl.col("video_id").is_in(list(removal.units)))
        .with_columns(pl.coalesce(pl.col("speaker_local"), pl.lit("track:") + pl.col("track_id").cast(pl.String)).alias("unit"))
        .filter(_in_pairs("video_id", "unit", removal.units))
        .select("video_id", "track_id")
        .collect()
    )
    for video_id, track_id in tracks.iter_rows():
        removal.tracks[video_id].add(track_id)


def close_over_pairs(removal: Removal, clips: pl.LazyFrame, pair_tables: dict[str, pl.LazyFrame]) -> None:
    """Add the clips of the removal's videos, speakers, units and tracks, then every pair and
    chain (``pair_tables``: scans of tables with a pair_id or chain_id) that holds one of them."""
    removal.clips |= set(clips.filter(match_expr(clips.collect_schema().names(), removal)).select("clip_id").collect()["clip_id"].to_list())
    for lf in pair_tables.values():
        names = lf.collect_schema().names()
        hit = lf.filter(match_expr(names, removal)).select([c for c in ("pair_id", "chain_id") if c in names]).collect()
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
