"""The four branches (single, dialogue, listening, multi-turn) and the VidChatBench test
split, decided in DuckDB SQL (sql/branches.sql) over the lake's views and the materialized
``clip_tiers``, so re-cutting them is editing sql/thresholds.csv.

The one step that is not SQL is the test split's draw (:func:`draw_test_speakers`): a greedy
walk over speaker pairs in a seeded order, which needs the running set of speakers already
taken. It runs over one row per speaker pair (a few hundred thousand at SpeakerVid-5M scale)
and stops as soon as the split is full.

Functions take a DuckDB connection that already has the lake's views
(:func:`orchestration.lake.duckdb_connection`) and return tables; the Dagster wiring is in
``assets/branches/assets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from orchestration.lake import SQL_DIR, run_sql_with_limits

BRANCHES_SQL = SQL_DIR / "branches.sql"
# output table -> the view of sql/branches.sql that holds its rows
BRANCH_VIEWS = {
    "single": "single_rows",
    "dialogue_pairs": "dialogue_rows",
    "listening_pairs": "listening_rows",
    "multi_turn_context": "multi_turn_context_rows",
    "multi_turn_chains": "multi_turn_chain_rows",
    "vidchat_testset": "vidchat_rows",
}
BRANCH_TABLES = tuple(BRANCH_VIEWS)


@dataclass(frozen=True)
class TestSplit:
    """How the VidChatBench draw went."""

    requested: int  # vidchat_test_pairs
    pairs: int  # test pairs drawn (N)
    speakers: tuple[str, ...]  # the test speaker ids, sorted
    seed: int
    max_train_loss: float  # vidchat_max_train_loss
    train_loss: float  # share of kept talking clips the test speakers hold
    candidate_pairs: int  # dialogue pairs with two distinct non-null speaker ids

    @property
    def capped(self) -> bool:
        return self.pairs < self.requested


def prepare(con: duckdb.DuckDBPyConnection) -> dict:
    """Run sql/branches.sql on ``con`` (intermediate tables and the output views) and return
    the settings it uses; refuses a thresholds file that lacks one."""
    return run_sql_with_limits(con, BRANCHES_SQL, "branch_limits")


def draw_test_speakers(dyads: pl.DataFrame, speaker_clips: dict[str, int], *, requested: int, max_train_loss: float) -> tuple[set[str], int, float]:
    """The test speakers: walk the speaker pairs (``speaker_a``, ``speaker_b``, ``pairs``,
    ``draw_order``) in ``draw_order`` and take a pair's two speakers while the split holds
    fewer than ``requested`` pairs and the test speakers' kept talking clips
    (``speaker_clips``) stay within ``max_train_loss`` of all of them; a pair that would
    exceed the budget is skipped (a smaller one later may fit). Returns the speakers, the
    test pairs they give (pairs of two test speakers, however they were reached; capped at
    ``requested``) and the share of clips they take from training."""
    total = sum(speaker_clips.values())
    budget = max_train_loss * total
    order = dyads.sort("draw_order", "speaker_a", "speaker_b").select("speaker_a", "speaker_b", "pairs").rows()
    partners: dict[str, list[tuple[str, int]]] = {}
    for a, b, n in order:
        partners.setdefault(a, []).append((b, int(n)))
        partners.setdefault(b, []).append((a, int(n)))
    taken: set[str] = set()
    lost = n_pairs = 0
    for a, b, _ in order:
        if n_pairs >= requested:
            break
        new = {a, b} - taken
        cost = sum(speaker_clips.get(s, 0) for s in new)
        if not new or lost + cost > budget:
            continue
        before = set(taken)
        taken |= new
        lost += cost
        # the pairs this step closes: a new speaker with a partner taken before, or the two new ones (counted once)
        n_pairs += sum(n for s in new for o, n in partners[s] if o in before or (o in new and o > s))
    return taken, min(n_pairs, requested), (lost / total if total else 0.0)


def draw_split(con: duckdb.DuckDBPyConnection) -> TestSplit:
    """Run sql/branches.sql, draw the test split (:func:`draw_test_speakers`) and record its
    speakers on ``con``: from then on the branch views leave them out."""
    limits = prepare(con)
    dyads = pl.from_arrow(con.execute("SELECT * FROM vidchat_dyads").to_arrow_table())
    speaker_clips = dict(con.execute("SELECT speaker_id, clips FROM speaker_training_clips").fetchall())
    requested = int(limits["vidchat_test_pairs"])
    speakers, _, loss = draw_test_speakers(dyads, speaker_clips, requested=requested, max_train_loss=float(limits["vidchat_max_train_loss"]))
    if speakers:
        con.executemany("INSERT INTO vidchat_test_speakers VALUES (?)", [[s] for s in sorted(speakers)])
    return TestSplit(
        requested=requested,
        pairs=con.execute("SELECT count(*) FROM vidchat_rows").fetchone()[0],
        speakers=tuple(sorted(speakers)),
        seed=int(limits["vidchat_seed"]),
        max_train_loss=float(limits["vidchat_max_train_loss"]),
        train_loss=loss,
        candidate_pairs=int(dyads["pairs"].sum() or 0) if dyads.height else 0,
    )


def branch_rows(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    """One branch table's rows (after :func:`draw_split` on ``con``). The asset reads and
    writes them one table at a time, so only one output is held in memory."""
    return pl.from_arrow(con.execute(f"SELECT * FROM {BRANCH_VIEWS[table]}").to_arrow_table())


def build_branches(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, pl.DataFrame], TestSplit]:
    """Every branch table and the test split (module doc) from one connection."""
    split = draw_split(con)
    return {name: branch_rows(con, name) for name in BRANCH_TABLES}, split


def all_dialogue_pairs(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every dialogue pair before the test split (training and test pairs, and the pairs the
    split dropped because one side is a test speaker): what the pairing rule finds."""
    prepare(con)
    return pl.from_arrow(con.execute("SELECT * FROM dialogue_candidates").to_arrow_table())


def clip_durations(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """clip_id, duration of every kept clip (after :func:`prepare`)."""
    return pl.from_arrow(con.execute("SELECT clip_id, duration FROM kept_clips").to_arrow_table())


def branch_stats(table: str, rows: pl.DataFrame, durations: pl.DataFrame) -> dict:
    """Rows, hours and speaker ids of one branch table. A pair's hours count both of its
    clips (initiator and responder; a listening pair its listener clip, whose span is the
    audio's), a chain its every clip, a context row its context clips; ``durations`` from
    :func:`clip_durations`."""

    def hours(ids: pl.Series) -> float:
        return float(pl.DataFrame({"clip_id": ids}).join(durations, on="clip_id", how="left")["duration"].sum() or 0.0) / 3600

    def speakers(*cols: pl.Series) -> int:
        return pl.concat([c.drop_nulls() for c in cols]).n_unique()

    clips_of = {
        "single": ["clip_id"], "dialogue_pairs": ["initiator_clip_id", "responder_clip_id"], "listening_pairs": ["listener_clip_id"],
        "multi_turn_context": ["context_clip_ids"], "multi_turn_chains": ["clip_id"], "vidchat_testset": ["initiator_clip_id", "responder_clip_id"],
    }[table]
    speakers_of = {
        "single": ["speaker_id"], "dialogue_pairs": ["initiator_speaker_id", "responder_speaker_id"], "listening_pairs": ["listener_speaker_id", "speaker_id"],
        "multi_turn_context": ["context_speaker_ids"], "multi_turn_chains": ["speaker_id"], "vidchat_testset": ["initiator_speaker_id", "responder_speaker_id"],
    }[table]
    flat = lambda c: rows[c].explode() if isinstance(rows.schema[c], pl.List) else rows[c]  # noqa: E731
    return {
        "branch": table,
        "rows": rows["chain_id"].n_unique() if table == "multi_turn_chains" else rows.height,
        "hours": hours(pl.concat([flat(c) for c in clips_of])),
        "speaker_ids": speakers(*(flat(c) for c in speakers_of)),
    }


def branch_summary(tables: dict[str, pl.DataFrame], durations: pl.DataFrame) -> pl.DataFrame:
    """:func:`branch_stats` of every branch table, one row each (chains count chains)."""
    return pl.DataFrame([branch_stats(t, tables[t], durations) for t in BRANCH_TABLES], schema={"branch": pl.String, "rows": pl.Int64, "hours": pl.Float64, "speaker_ids": pl.Int64})
