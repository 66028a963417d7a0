"""Dataset-wide ``speaker_id``: order-independent clusters of *identity units*.

Pure functions (Polars / NumPy in, Polars out; no lake I/O, no Dagster). Meant to run in
one serialized, non-partitioned ``speakers`` asset downstream of the per-batch binding,
so no two calls ever race on the same clusters.

Identity units
--------------
A *unit* is what gets a ``speaker_id``: the face tracks of one video that the binding step
says are one person, i.e. one (video_id, speaker_local) group, or one face track whose
``speaker_local`` is null (``unit = "track:<track_id>"``). Its ``embedding`` is the
L2-normalised, duration-weighted mean ArcFace embedding of its tracks that have one (weight
``max(end - start, 1e-3)``, as in `assets.binding.identity`), ``n_tracks`` / ``seconds``
count all its tracks. A unit with no usable embedding gets no id (it is reported in
`SpeakerIdUpdate.unassigned`); the tracks of a unit all share its id, including tracks
without an embedding of their own. `identity_units` builds them per video; the per-video
binding step writes them to the ``identity_units`` table (`IDENTITY_UNITS`,
``replace_videos``), the ids live in ``speaker_assignments`` (`SPEAKER_ASSIGNMENTS`,
``merge`` on (video_id, unit) plus key deletes).

One call (`update_speaker_ids`)
------------------------------
Input: the units of the videos being ingested (*all* units of each such video: a video is
replaced as a whole), the current ``speakers`` table, and the *members* of the touched
clusters (their assignment rows joined with their units, see `members_of`). The touched
clusters are `touched_speaker_ids`: the clusters that held units of the ingested videos,
plus every cluster that some new unit reaches at cosine >= ``threshold`` (a cluster is
"touched" exactly when its members are passed). Steps:

1. *Remove*: the ingested videos' old units leave their clusters (a rerun or a reprocessed
   video replaces them). Touched clusters get their centroid recomputed from what remains.
2. *Assign*: the new units, in canonical order (sorted by (video_id, unit)), each join the
   cluster whose centroid is most similar if that cosine is >= ``threshold``, else found a
   cluster. A joined cluster's centroid is updated at once (running weighted sum).
3. *Reconcile*: touched and new clusters whose centroids reach ``threshold`` are merged,
   closest pair first (centroid linkage), until no pair does. Untouched clusters are not
   merged (their members are not loaded); a touched cluster that now reaches an untouched
   one is reported in `SpeakerIdUpdate.near_untouched`, and passing that cluster's members
   too in a second call resolves it.
4. *Name*: every touched/new cluster is ``"spk_" + sha1("<video_id>/<unit>")[:12]`` of its
   smallest member key (`speaker_id_for_unit`) — a function of its member set, not of the
   order it was built in. A cluster renamed because a smaller key joined (or two clusters
   merged) returns the new id for all its members in ``assignments`` and the old id in
   ``removed``; a cluster left without members is in ``removed`` too.
5. *Roll up*: ``speakers`` rows of the touched/new clusters are recomputed from their
   members (`speakers_from_members`, summed in canonical member order), never
   incremented, so reruns cannot double-count and the centroid is bit-for-bit a function
   of the member set.

`apply_update` gives the reference semantics of writing the result (MERGE ``assignments``
and ``speakers``, delete ``deleted_assignments`` keys and ``removed`` ids).

When is it order independent?
-----------------------------
*Strictly* (same ids, same centroids bit for bit, for any batch order, any batch split,
and for reruns) when identities are **separated** at the threshold ``t`` on the unit
embeddings: any two units of one person have cosine >= ``s`` and units of different people
<= ``d``, with ``s >= t`` and ``d < t * s``. Take the centroid ``c = sum w e / |sum w e|``
of any set of one person's units: ``|sum w e| <= sum w``, and ``|sum w e|^2 = sum w_i w_j
e_i.e_j >= s (sum w)^2``. So a unit ``u`` of that person has ``u.c >= s (sum w) / |sum w e|
>= s >= t`` (it joins), a unit ``v`` of anyone else ``v.c <= d / sqrt(s) < t`` (it does
not), and the centroids of two different people ``<= d / s < t`` (reconcile never merges
them). So every unit joins exactly its person's cluster whatever came before, each person
is exactly one cluster, and names and centroids are functions of the member sets.
ArcFace w600k_mbf on the shipped photos (``tests/test_speaker_ids.py``, as in
``tests/test_binding.py``): same person 0.63, different people <= 0.23; with
``speaker_id_cos`` = 0.45, ``t * s`` = 0.28 > 0.23. That is two photos of one person, not
a guarantee: profile views, low resolution, age gaps or look-alikes in real data will put
some units outside the condition.
Outside it (a unit near the threshold of two clusters, a person whose units spread below
``t``, look-alikes), the greedy join can depend on which units arrived first; the canonical
order makes a *single* call deterministic (same inputs, same output), and the reconcile
step merges clusters that drift together. A rerun of the same batch usually changes
nothing even then (it removes the videos' units, which restores the centroids the first
run started from, and redoes the same steps), but that is not guaranteed if the first run
merged clusters (the merge is not undone by the removal) or if the rerun touches a cluster
the first run did not (its centroid moved into reach). Untouched clusters never move.
Cosines to untouched centroids are float32 and to touched/new ones float64, so two orders
that give a cluster different roles can decide differently only within ~1e-6 of ``t``.

Cost
----
Per call: one float32 product new units x all centroids (chunked: 256 units at a time)
in `touched_speaker_ids`, one in `update_speaker_ids` (candidates among untouched
clusters) and one touched/new clusters x untouched centroids (``near_untouched``); a
Python loop over the new units scoring each against the touched/new clusters only; the
members of the touched clusters (a few per cluster) for the rollup. Nothing reads every
member of the lake. Memory: the centroid matrix, float32, is 83 K x 512 x 4 B = 162 MiB
(20 K: 39 MiB), next to the ``speakers`` frame itself (165 MB); NumPy's peak during a
batch step was 545 MiB at 83 K (140 MiB at 20 K).
Measured with ``python -m bench.speaker_ids_bench`` (random 512-d unit vectors, one batch
of 1,000 units, half of them new faces of existing speakers), on this 2-core machine while
other jobs kept its load average at 4.5-5, so wall times are pessimistic:

==========================  =========================  ==========================
                            20 K speakers / 72 K units  83 K speakers / 300 K units
==========================  =========================  ==========================
touched_speaker_ids         0.3-1.4 s                  1.3-2.7 s
members_of (1.8 K rows)     0.03 s                     0.6 s
update_speaker_ids          1.6-4.2 s                  5.5 s
batch total (wall / CPU)    2.1-5.6 s / 2.8 s           7.4-8.8 s / 8.4 s
==========================  =========================  ==========================

Of the 83 K batch, converting the ``speakers`` centroids to the matrix takes ~0.5-0.7 s
and each units x centroids product ~1-1.5 s; both are done twice (``touched`` and
``update``) and could be shared. A full rollup of all 300 K units (`speakers_from_members`
over the whole lake, e.g. a migration check) took 10-19 s. Not suitable: one call holding
*all* 300 K units at once (the per-unit loop scores each unit against every cluster founded
in the call: O(units x new clusters)); rebuild a lake by ingesting its videos in batches of
~1,000 units, in any order.

Caller (the serialized ``speakers`` asset)
-------------------------------------------
1. The per-video binding step writes `IDENTITY_UNITS` rows (``replace_videos``).
2. For the videos ingested since the last run: ``new_units`` = their identity_units;
   ``touched = touched_speaker_ids(new_units, speakers, assignments of those videos)``;
   ``members = members_of(assignments where speaker_id in touched, identity_units of the
   member videos, touched)``; ``up = update_speaker_ids(new_units, speakers, members,
   threshold=speaker_id_cos)``. A video that now has no unit at all goes through
   `drop_videos`.
3. Write as `apply_update` does: delete ``up.deleted_assignments`` keys and MERGE
   ``up.assignments`` into ``speaker_assignments``; delete ``up.removed`` and MERGE
   ``up.speakers`` into ``speakers``. If ``up.near_untouched`` is not empty, call again
   with no new units and the members of both sides of each pair (repeat until empty).
4. Track-level ids are the unit's id (`track_speaker_ids`); a rename changes the id of
   tracks in *other* videos, so ``track_identities.speaker_id`` is best derived by a join
   (or rewritten for the videos in ``up.assignments``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from orchestration.tables import F32_LIST, TABLES

EMBEDDING_FLOOR_S = 1e-3
"""Duration weight floor of a track / unit (as in `assets.binding.identity`)."""

IDENTITY_UNITS = TABLES["identity_units"]
SPEAKER_ASSIGNMENTS = TABLES["speaker_assignments"]

MEMBERS_SCHEMA = {
    "video_id": pl.String,
    "unit": pl.String,
    "speaker_id": pl.String,
    "embedding": F32_LIST,
    "n_tracks": pl.Int32,
    "seconds": pl.Float64,
}
"""Schema of the members frame (assignments joined with identity_units)."""

UNASSIGNED_SCHEMA = {"video_id": pl.String, "unit": pl.String, "reason": pl.String}
DELETED_SCHEMA = {"video_id": pl.String, "unit": pl.String}
NEAR_SCHEMA = {"speaker_id": pl.String, "untouched_speaker_id": pl.String, "cosine": pl.Float64}

# ---------------------------------------------------------------- small helpers
def unit_key(video_id: str, unit: str) -> str:
    """The member key a cluster is named after: ``"<video_id>/<unit>"``."""
    return f"{video_id}/{unit}"


def speaker_id_for_unit(video_id: str, unit: str) -> str:
    """``"spk_" + sha1("<video_id>/<unit>")[:12]``: the id of a cluster whose smallest
    member (by (video_id, unit)) is this unit."""
    return "spk_" + hashlib.sha1(unit_key(video_id, unit).encode()).hexdigest()[:12]


def unit_expr() -> pl.Expr:
    """A track's unit (over a frame with ``track_id`` and ``speaker_local``)."""
    return pl.coalesce(pl.col("speaker_local"), pl.lit("track:") + pl.col("track_id").cast(pl.String)).alias("unit")


def _vec(x) -> np.ndarray | None:
    """A usable embedding as a unit float64 vector, else None."""
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        return None
    n = float(np.linalg.norm(a))
    return a / n if n > 1e-12 else None


def _norm(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _weight(seconds) -> float:
    s = float(seconds) if seconds is not None else 0.0
    return max(s, EMBEDDING_FLOOR_S) if np.isfinite(s) else EMBEDDING_FLOOR_S


def _with_cols(df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    for c, t in schema.items():
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=t).alias(c))
    return df.select([pl.col(c).cast(t, strict=False) for c, t in schema.items()])


def _centroid_matrix(centroids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float32 matrix of unit rows, bool mask of usable rows) from a list[f32] column."""
    n = centroids.len()
    if n == 0:
        return np.zeros((0, 0), np.float32), np.zeros(0, bool)
    lens = centroids.list.len().fill_null(0).to_numpy()
    d = int(np.max(lens)) if len(lens) else 0
    ok = lens == d
    if d == 0:
        return np.zeros((n, 0), np.float32), np.zeros(n, bool)
    m = np.zeros((n, d), np.float32)
    idx = np.flatnonzero(ok)
    if len(idx):
        flat = centroids.filter(pl.Series(ok)).explode().cast(pl.Float32).to_numpy()
        m[idx] = flat.reshape(len(idx), d)
    m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    norms = np.linalg.norm(m, axis=1)
    ok &= norms > 1e-12
    m[ok] /= norms[ok, None]
    return m, ok


# ---------------------------------------------------------------- identity units
def identity_units(track_identities: pl.DataFrame, face_tracks: pl.DataFrame) -> pl.DataFrame:
    """`IDENTITY_UNITS` rows of one or more videos.

    ``track_identities``: video_id, track_id, speaker_local (nullable), ...;
    ``face_tracks``: video_id, track_id, embedding, start, end. A track of
    ``track_identities`` without a face_tracks row (or embedding) counts in ``n_tracks``
    but not in the embedding; a unit none of whose tracks has an embedding gets a null
    embedding (and later no speaker_id).
    """
    if track_identities.is_empty():
        return IDENTITY_UNITS.empty()
    ft = face_tracks.select(
        pl.col("video_id").cast(pl.String), pl.col("track_id").cast(pl.Int32), "embedding", seconds=(pl.col("end") - pl.col("start")).cast(pl.Float64)
    )
    ti = track_identities.select(pl.col("video_id").cast(pl.String), pl.col("track_id").cast(pl.Int32), pl.col("speaker_local").cast(pl.String))
    df = ti.join(ft, on=["video_id", "track_id"], how="left").with_columns(unit_expr()).sort("video_id", "unit", "track_id")
    rows = []
    for (vid, unit), g in df.group_by(["video_id", "unit"], maintain_order=True):
        acc = None
        for e, s in zip(g["embedding"].to_list(), g["seconds"].to_list()):
            v = _vec(e)
            if v is None:
                continue
            acc = _weight(s) * v if acc is None else acc + _weight(s) * v
        emb = _vec(acc) if acc is not None else None
        rows.append(
            {
                "video_id": vid,
                "unit": unit,
                "embedding": emb.astype(np.float32).tolist() if emb is not None else None,
                "n_tracks": g.height,
                "seconds": float(g["seconds"].fill_null(0.0).clip(lower_bound=0.0).sum()),
            }
        )
    return IDENTITY_UNITS.conform(pl.DataFrame(rows, schema=IDENTITY_UNITS.polars_schema))


def track_speaker_ids(track_identities: pl.DataFrame, assignments: pl.DataFrame) -> pl.DataFrame:
    """``track_identities`` with ``speaker_id`` taken from its unit's assignment (null if
    the unit has none)."""
    a = assignments.select(pl.col("video_id").cast(pl.String), pl.col("unit").cast(pl.String), pl.col("speaker_id").cast(pl.String))
    cols = track_identities.columns
    out = track_identities.drop("speaker_id", strict=False).with_columns(unit_expr()).join(a, on=["video_id", "unit"], how="left")
    return out.select(cols if "speaker_id" in cols else cols + ["speaker_id"])


def members_of(assignments: pl.DataFrame, units: pl.DataFrame, speaker_ids) -> pl.DataFrame:
    """Members of the given clusters: their ``assignments`` rows joined with
    ``identity_units`` (`MEMBERS_SCHEMA`). Units missing from ``units`` keep a null
    embedding (they still count as members)."""
    ids = sorted(set(speaker_ids))
    a = assignments.filter(pl.col("speaker_id").is_in(ids)).select("video_id", "unit", "speaker_id")
    u = units.select("video_id", "unit", "embedding", "n_tracks", "seconds")
    return _with_cols(a.join(u, on=["video_id", "unit"], how="left"), MEMBERS_SCHEMA)


# ---------------------------------------------------------------- rollup
def speakers_from_members(members: pl.DataFrame) -> pl.DataFrame:
    """``speakers`` rows recomputed from member units (one row per (video_id, unit,
    speaker_id); `MEMBERS_SCHEMA`): ``centroid`` = L2-normalised sum of ``max(seconds,
    1e-3) * embedding`` over members with an embedding (summed in (video_id, unit) order,
    so it is a function of the member set), ``n_videos`` distinct videos, ``n_tracks`` and
    ``seconds`` summed. Members with a null speaker_id are ignored; duplicate
    (video_id, unit) rows are counted once, so a rerun can never double-count."""
    spec = TABLES["speakers"]
    m = _with_cols(members, MEMBERS_SCHEMA).filter(pl.col("speaker_id").is_not_null())
    m = m.unique(subset=["video_id", "unit"], keep="first", maintain_order=True).sort("speaker_id", "video_id", "unit")
    if m.is_empty():
        return spec.empty()
    counts = m.group_by("speaker_id", maintain_order=True).agg(
        n_videos=pl.col("video_id").n_unique().cast(pl.Int32),
        n_tracks=pl.col("n_tracks").fill_null(0).sum().cast(pl.Int32),
        seconds=pl.col("seconds").fill_null(0.0).sum().cast(pl.Float64),
    )
    ids = m["speaker_id"].to_numpy()
    emb, ok = _centroid_matrix(m["embedding"])
    w = m["seconds"].fill_null(0.0).to_numpy().astype(np.float64)
    w = np.where(np.isfinite(w), np.maximum(w, EMBEDDING_FLOOR_S), EMBEDDING_FLOOR_S)  # as _weight
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # counts is in the same group order
    if emb.shape[1]:
        sums = np.add.reduceat(emb.astype(np.float64) * (w * ok)[:, None], starts, axis=0)
        has = np.add.reduceat(ok.astype(np.int64), starts) > 0
        norms = np.linalg.norm(sums, axis=1)
        has &= norms > 1e-12
        cen = (sums / np.where(has, norms, 1.0)[:, None]).astype(np.float32)
        col = pl.Series("centroid", cen).cast(pl.Array(pl.Float32, cen.shape[1])).cast(F32_LIST)
        col = pl.select(pl.when(pl.Series(has)).then(col).otherwise(None)).to_series().alias("centroid")
    else:
        col = pl.Series("centroid", [None] * len(starts), dtype=F32_LIST)
    out = counts.with_columns(col)
    return spec.conform(out.select(list(spec.schema)))


# ---------------------------------------------------------------- the update
@dataclass
class SpeakerIdUpdate:
    """What one `update_speaker_ids` call changes (see `apply_update`)."""

    assignments: pl.DataFrame
    """`SPEAKER_ASSIGNMENTS` rows to MERGE: every new unit with an id, plus members of
    touched clusters whose id changed (rename / merge)."""
    speakers: pl.DataFrame
    """``speakers`` rows to MERGE: every touched or new cluster that has members."""
    removed: list[str]
    """speaker_ids to delete: touched clusters left without members, or renamed."""
    deleted_assignments: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DELETED_SCHEMA))
    """(video_id, unit) keys of the ingested videos that had an id and now have none."""
    unassigned: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=UNASSIGNED_SCHEMA))
    """New units that got no id, with the reason (``no_embedding``)."""
    near_untouched: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=NEAR_SCHEMA))
    """(touched/new cluster, untouched cluster, cosine) pairs whose centroids reach the
    threshold after this call; pass the untouched cluster's members too to merge them."""


class _Cluster:
    __slots__ = ("old_id", "members", "sum", "row")

    def __init__(self, old_id: str | None):
        self.old_id = old_id
        self.members: list[dict] = []
        self.sum: np.ndarray | None = None
        self.row = -1

    def add(self, m: dict) -> None:
        self.members.append(m)
        if m["vec"] is not None:
            wv = m["w"] * m["vec"]
            self.sum = wv if self.sum is None else self.sum + wv

    def centroid(self) -> np.ndarray | None:
        return _norm(self.sum) if self.sum is not None else None

    def min_key(self) -> tuple[str, str]:
        return min((m["video_id"], m["unit"]) for m in self.members)


def _rows(df: pl.DataFrame) -> list[dict]:
    """Rows without their embedding lists, plus ``vec`` (unit float64 vector or None) and
    ``w`` (duration weight)."""
    mat, ok = _centroid_matrix(df["embedding"])
    out = df.drop("embedding").to_dicts()
    for i, r in enumerate(out):
        r["vec"] = mat[i].astype(np.float64) if ok[i] else None
        r["w"] = _weight(r["seconds"])
    return out


def _pairs_at_least(a: np.ndarray, b: np.ndarray, b_ok: np.ndarray, threshold: float, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row in a, row in b, cosine) of every pair with cosine >= threshold, b's unusable
    rows excluded; float32, ``chunk`` rows of ``a`` at a time (memory chunk x len(b))."""
    rows, cols, sims = [], [], []
    if len(a) and len(b) and a.shape[1] and b.shape[1]:
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"embedding dims differ: {a.shape[1]} vs {b.shape[1]}")
        bt = b.astype(np.float32, copy=False).T  # a view: BLAS reads it transposed
        for i in range(0, len(a), chunk):
            s = a[i : i + chunk].astype(np.float32, copy=False) @ bt
            r, c = np.nonzero(s >= threshold)
            keep = b_ok[c]
            rows.append(r[keep] + i)
            cols.append(c[keep])
            sims.append(s[r[keep], c[keep]])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def touched_speaker_ids(new_units: pl.DataFrame, speakers: pl.DataFrame, assignments: pl.DataFrame, *, threshold: float, chunk: int = 256) -> list[str]:
    """The clusters whose members `update_speaker_ids` needs: those holding units of the
    ingested videos (``assignments``: current assignment rows, any superset of those
    videos') and every cluster some new unit reaches at cosine >= ``threshold``."""
    vids = new_units["video_id"].unique().to_list()
    ids = set(assignments.filter(pl.col("video_id").is_in(vids))["speaker_id"].drop_nulls().to_list())
    if not speakers.is_empty() and not new_units.is_empty():
        cm, ok = _centroid_matrix(speakers["centroid"])
        um, uok = _centroid_matrix(new_units["embedding"])
        _, cols, _ = _pairs_at_least(um[uok], cm, ok, threshold - 1e-6, chunk)
        sid = speakers["speaker_id"].to_list()
        ids |= {sid[c] for c in np.unique(cols).tolist()}
    return sorted(ids)


def update_speaker_ids(new_units: pl.DataFrame, speakers: pl.DataFrame | None, assignments_of_touched: pl.DataFrame | None, *, threshold: float, chunk: int = 256) -> SpeakerIdUpdate:
    """Ingest the identity units of some videos (see the module doc).

    ``new_units``: `IDENTITY_UNITS` rows, all units of each ingested video (a video that
    now has no unit at all has no row to carry it: use `drop_videos` for it).
    ``speakers``: the current ``speakers`` table.
    ``assignments_of_touched``: `MEMBERS_SCHEMA` rows (see `members_of`) of every cluster in
    `touched_speaker_ids`; rows of the ingested videos are their *old* units and are
    replaced. A cluster counts as touched iff it has rows here. Raises ``ValueError`` if a
    new unit would join a cluster whose members were not given.
    """
    return _update(new_units, speakers, assignments_of_touched, threshold=threshold, chunk=chunk, videos=None)


def drop_videos(video_ids, speakers: pl.DataFrame | None, assignments_of_touched: pl.DataFrame | None, *, threshold: float) -> SpeakerIdUpdate:
    """Remove videos (deleted, or reprocessed into no units) from their clusters."""
    return _update(IDENTITY_UNITS.empty(), speakers, assignments_of_touched, threshold=threshold, chunk=256, videos=set(video_ids))


def _update(new_units, speakers, members, *, threshold: float, chunk: int, videos: set | None) -> SpeakerIdUpdate:
    sp = speakers if speakers is not None else TABLES["speakers"].empty()
    mem = _with_cols(members if members is not None else pl.DataFrame(schema=MEMBERS_SCHEMA), MEMBERS_SCHEMA).filter(pl.col("speaker_id").is_not_null())
    nu = _with_cols(new_units, IDENTITY_UNITS.schema).sort("video_id", "unit")
    if nu.select(pl.struct("video_id", "unit").is_duplicated().any()).item():
        raise ValueError("new_units has duplicate (video_id, unit) keys")
    new_videos = set(nu["video_id"].to_list()) | (videos or set())

    # 1. remove the ingested videos' old units
    stale = mem.filter(pl.col("video_id").is_in(sorted(new_videos)))
    keep = mem.filter(~pl.col("video_id").is_in(sorted(new_videos))).unique(subset=["video_id", "unit"], keep="first").sort("video_id", "unit")
    touched_ids = sorted(set(mem["speaker_id"].to_list()))
    clusters: dict[str, _Cluster] = {s: _Cluster(s) for s in touched_ids}
    for m in _rows(keep):
        clusters[m["speaker_id"]].add(m)

    new_rows = _rows(nu)
    valid = [m for m in new_rows if m["vec"] is not None]
    unassigned = [{"video_id": m["video_id"], "unit": m["unit"], "reason": "no_embedding"} for m in new_rows if m["vec"] is None]

    # static (untouched) clusters: centroids from the speakers table
    static = sp.filter(~pl.col("speaker_id").is_in(touched_ids))
    s_ids = static["speaker_id"].to_list()
    s_mat, s_ok = _centroid_matrix(static["centroid"])
    dims = {len(m["vec"]) for m in valid} | {len(c.sum) for c in clusters.values() if c.sum is not None}
    if len(dims) > 1:
        raise ValueError(f"embedding dims differ among units and members: {sorted(dims)}")
    d = dims.pop() if dims else 0
    if d and s_mat.shape[0] and s_mat.shape[1] and s_mat.shape[1] != d:
        raise ValueError(f"embedding dims differ: units {d}, centroids {s_mat.shape[1]}")

    # candidates among static clusters, per new unit: (sim, index) >= threshold, best first
    cand: list[list[tuple[float, int]]] = [[] for _ in valid]
    if valid and len(s_ids) and s_mat.shape[1]:
        um = np.stack([m["vec"] for m in valid]).astype(np.float32)
        for r, c, sim in zip(*_pairs_at_least(um, s_mat, s_ok, threshold, chunk)):
            cand[int(r)].append((float(sim), int(c)))
        for c in cand:
            c.sort(key=lambda x: (-x[0], x[1]))

    # 2. assign, canonical order; dynamic clusters (touched + new) scored exactly
    dyn: list[_Cluster] = [c for _, c in sorted(clusters.items())]
    cap = len(dyn) + len(valid) + 1
    dmat = np.zeros((cap, max(d, 1)), np.float64)
    for i, c in enumerate(dyn):
        c.row = i
        cen = c.centroid()
        if cen is not None:
            dmat[i] = cen
    n_dyn = len(dyn)
    for k, m in enumerate(valid):
        best, best_sim = None, -np.inf
        if n_dyn:
            sims = dmat[:n_dyn] @ m["vec"]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                best, best_sim = dyn[j], float(sims[j])
        for sim, j in cand[k]:
            if sim <= best_sim:
                break
            sid = s_ids[j]
            if sid in clusters:
                continue  # became dynamic: scored above (cannot happen, kept for safety)
            raise ValueError(f"unit {unit_key(m['video_id'], m['unit'])} joins cluster {sid} whose members were not given (pass members_of(touched_speaker_ids(...)))")
        if best is None:
            best = _Cluster(None)
            best.row = n_dyn
            dyn.append(best)
            n_dyn += 1
        best.add(m)
        dmat[best.row] = best.centroid()

    # 3. reconcile: merge touched/new clusters whose centroids reach the threshold
    live = sorted((c for c in dyn if c.members and c.sum is not None), key=lambda c: c.min_key())
    if len(live) > 1:
        cm = np.stack([c.centroid() for c in live])
        sim = cm @ cm.T
        np.fill_diagonal(sim, -np.inf)
        alive = np.ones(len(live), bool)
        while True:
            flat = int(np.argmax(sim))
            i, j = divmod(flat, len(live))
            if not np.isfinite(sim[i, j]) or sim[i, j] < threshold:
                break
            i, j = min(i, j), max(i, j)
            for m in live[j].members:
                live[i].add(m)
            live[j].members, live[j].sum = [], None
            alive[j] = False
            sim[j, :] = -np.inf
            sim[:, j] = -np.inf
            row = cm @ live[i].centroid()
            row[~alive] = -np.inf
            row[i] = -np.inf
            sim[i, :] = row
            sim[:, i] = row
            cm[i] = live[i].centroid()
    # members without an embedding alone in a cluster (all others left) keep it alive too
    final = [c for c in dyn if c.members]

    # 4. name, 5. roll up
    out_assign, final_ids = [], []
    new_ids: set[str] = set()
    for c in final:
        sid = speaker_id_for_unit(*c.min_key())
        new_ids.add(sid)
        for m in c.members:
            final_ids.append((m["video_id"], m["unit"], sid))
            if m.get("speaker_id") != sid or m["video_id"] in new_videos:
                out_assign.append({"video_id": m["video_id"], "unit": m["unit"], "speaker_id": sid})
    assigned_keys = {(r["video_id"], r["unit"]) for r in out_assign}
    deleted = sorted({(v, u) for v, u in stale.select("video_id", "unit").iter_rows() if (v, u) not in assigned_keys})
    removed = sorted(set(touched_ids) - new_ids)

    sp_rows = TABLES["speakers"].empty()
    if final_ids:
        ids_df = pl.DataFrame(final_ids, schema={"video_id": pl.String, "unit": pl.String, "speaker_id": pl.String}, orient="row")
        cols = [c for c in MEMBERS_SCHEMA if c != "speaker_id"]
        pool = pl.concat([keep.select(cols), nu.select(cols)])
        sp_rows = speakers_from_members(ids_df.join(pool, on=["video_id", "unit"], how="left"))
    near = []
    if len(s_ids) and s_mat.shape[1] and not sp_rows.is_empty():
        fm, fok = _centroid_matrix(sp_rows["centroid"])
        fids = [f for f, o in zip(sp_rows["speaker_id"].to_list(), fok) if o]
        for r, c, sim in zip(*_pairs_at_least(fm[fok], s_mat, s_ok, threshold, chunk)):
            near.append({"speaker_id": fids[r], "untouched_speaker_id": s_ids[c], "cosine": float(sim)})
    return SpeakerIdUpdate(
        assignments=SPEAKER_ASSIGNMENTS.conform(pl.DataFrame(out_assign, schema=SPEAKER_ASSIGNMENTS.polars_schema)).sort("video_id", "unit"),
        speakers=sp_rows.sort("speaker_id"),
        removed=removed,
        deleted_assignments=pl.DataFrame(deleted, schema=DELETED_SCHEMA, orient="row"),
        unassigned=pl.DataFrame(unassigned, schema=UNASSIGNED_SCHEMA),
        near_untouched=pl.DataFrame(near, schema=NEAR_SCHEMA).sort("speaker_id", "untouched_speaker_id"),
    )


def apply_update(speakers: pl.DataFrame, assignments: pl.DataFrame, update: SpeakerIdUpdate) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reference semantics of writing an update (what the asset does on Delta): delete
    ``removed`` speakers and ``deleted_assignments`` keys, then MERGE ``speakers`` on
    speaker_id and ``assignments`` on (video_id, unit). Returns (speakers, assignments)."""
    sp_spec = TABLES["speakers"]
    sp = speakers.filter(~pl.col("speaker_id").is_in(update.removed + update.speakers["speaker_id"].to_list()))
    sp = pl.concat([sp_spec.conform(sp), sp_spec.conform(update.speakers)]).sort("speaker_id")
    a = SPEAKER_ASSIGNMENTS.conform(assignments)
    drop = pl.concat([update.deleted_assignments, update.assignments.select("video_id", "unit")])
    a = a.join(drop, on=["video_id", "unit"], how="anti")
    a = pl.concat([a, update.assignments]).sort("video_id", "unit")
    return sp, a
