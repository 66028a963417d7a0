"""Dataset-wide speaker ids (`assets.binding.speaker_ids`): order independence, reruns,
reprocessed videos, renames. Synthetic unit vectors (fast, no models).

A tiny in-memory "lake" (units, speakers, assignments) is driven exactly as the asset
would drive it: the batch's units replace its videos' units, then `touched_speaker_ids` ->
`members_of` -> `update_speaker_ids` -> `apply_update`. Every test also checks the lake
invariants (`_check`): each speaker has members and its row equals the rollup of its
members, each id is the name of its smallest member, every unit with an embedding has an id.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import polars as pl
import pytest

from assets.binding.speaker_ids import (
    IDENTITY_UNITS,
    SPEAKER_ASSIGNMENTS,
    apply_update,
    drop_videos,
    identity_units,
    members_of,
    speaker_id_for_unit,
    speakers_from_members,
    touched_speaker_ids,
    track_speaker_ids,
    update_speaker_ids,
)
from orchestration.tables import TABLES

TH = 0.45  # sql/thresholds.csv speaker_id_cos
D = 512


def _people(n: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).standard_normal((n, D))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


PEOPLE = _people(6)


def _face(person: int, seed: int, noise: float = 0.6) -> list[float]:
    """A unit embedding of ``person``: same person ~0.74 cosine, different ~0 (separated)."""
    g = np.random.default_rng(1000 + seed).standard_normal(D) / np.sqrt(D)
    v = PEOPLE[person] + noise * g
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def _units(rows) -> pl.DataFrame:
    """rows: (video_id, unit, person or None (no embedding) or an explicit vector, seconds)."""
    out = []
    for v, u, p, sec in rows:
        seed = zlib.crc32(f"{v}/{u}".encode())  # a unit's face and track count: fixed per key
        if p is None:
            e = None
        elif isinstance(p, (int, np.integer)):
            e = _face(int(p), seed)
        else:
            e = np.asarray(p, np.float32).tolist()
        out.append({"video_id": v, "unit": u, "embedding": e, "n_tracks": 1 + seed % 3, "seconds": sec})
    return pl.DataFrame(out, schema=IDENTITY_UNITS.polars_schema)


class Lake:
    def __init__(self):
        self.units = IDENTITY_UNITS.empty()
        self.speakers = TABLES["speakers"].empty()
        self.assignments = SPEAKER_ASSIGNMENTS.empty()
        self.updates = []

    def ingest(self, batch: pl.DataFrame, *, threshold: float = TH):
        vids = batch["video_id"].unique().to_list()
        # the per-video binding step replaces the batch videos' identity_units ...
        self.units = pl.concat([self.units.filter(~pl.col("video_id").is_in(vids)), batch]).sort("video_id", "unit")
        # ... then the serialized speakers asset
        touched = touched_speaker_ids(batch, self.speakers, self.assignments, threshold=threshold)
        up = update_speaker_ids(batch, self.speakers, members_of(self.assignments, self.units, touched), threshold=threshold)
        self.speakers, self.assignments = apply_update(self.speakers, self.assignments, up)
        self.updates.append(up)
        return up

    def drop(self, vids):
        touched = sorted(set(self.assignments.filter(pl.col("video_id").is_in(vids))["speaker_id"].to_list()))
        self.units = self.units.filter(~pl.col("video_id").is_in(vids))
        up = drop_videos(vids, self.speakers, members_of(self.assignments, self.units, touched), threshold=TH)
        self.speakers, self.assignments = apply_update(self.speakers, self.assignments, up)
        return up

    def ids(self) -> dict[tuple[str, str], str]:
        return {(v, u): s for v, u, s in self.assignments.iter_rows()}

    def state(self):
        return self.speakers.sort("speaker_id"), self.assignments.sort("video_id", "unit")


def _check(lake: Lake) -> None:
    sp, a = lake.state()
    assert sp["speaker_id"].is_unique().all() and a.select(pl.struct("video_id", "unit").is_unique().all()).item()
    assert set(sp["speaker_id"]) == set(a["speaker_id"]), "a speaker without members, or a member without speaker row"
    rollup = speakers_from_members(members_of(a, lake.units, sp["speaker_id"].to_list())).sort("speaker_id")
    assert rollup.equals(sp), "speakers rows are not the rollup of their members"
    for (sid,), g in a.group_by(["speaker_id"]):
        v, u = min(g.select("video_id", "unit").iter_rows())
        assert sid == speaker_id_for_unit(v, u), "id is not the name of the smallest member"
    with_emb = lake.units.filter(pl.col("embedding").is_not_null()).select("video_id", "unit")
    assert set(with_emb.iter_rows()) == set(a.select("video_id", "unit").iter_rows())


def _partition(lake: Lake, person_of: dict) -> list[set]:
    """The clusters as sets of persons: a correct result is one person per cluster."""
    by: dict[str, set] = {}
    for k, s in lake.ids().items():
        by.setdefault(s, set()).add(person_of[k])
    return sorted(by.values(), key=sorted)


# three batches; persons 0..4 recur across batches and videos, ids must not depend on order
BATCHES = [
    [("v3", "spk0", 0, 10.0), ("v3", "spk1", 1, 4.0), ("v5", "spk0", 2, 6.0), ("v5", "track:7", 0, 1.5)],
    [("v1", "spk0", 1, 3.0), ("v1", "spk1", 3, 8.0), ("v4", "spk0", 0, 2.0), ("v4", "track:2", None, 1.0)],
    [("v2", "spk0", 2, 5.0), ("v2", "spk1", 4, 7.0), ("v2", "spk2", 0, 1.0), ("v6", "spk0", 3, 9.0)],
]
PERSON = {(v, u): p for b in BATCHES for v, u, p, _ in b}


def test_synthetic_faces_are_separated():
    """The premise of strict order independence (module doc): same >= s, different <= d,
    s >= t and d < t * s."""
    allu = _units([r for b in BATCHES for r in b]).filter(pl.col("embedding").is_not_null())
    e = np.array(allu["embedding"].to_list())
    p = [PERSON[k] for k in allu.select("video_id", "unit").iter_rows()]
    s = e @ e.T
    same = [s[i, j] for i in range(len(p)) for j in range(i) if p[i] == p[j]]
    diff = [s[i, j] for i in range(len(p)) for j in range(i) if p[i] != p[j]]
    assert min(same) >= TH and max(diff) < TH * min(same)


def test_batch_order_does_not_change_ids():
    results = []
    for order in itertools.permutations(range(len(BATCHES))):
        lake = Lake()
        for i in order:
            lake.ingest(_units(BATCHES[i]))
            _check(lake)
        results.append((order, lake))
    ref_sp, ref_a = results[0][1].state()
    for order, lake in results[1:]:
        sp, a = lake.state()
        assert a.equals(ref_a), f"order {order}: other ids"
        assert sp.equals(ref_sp), f"order {order}: other speakers rows"
    # ... and the same as ingesting everything at once
    once = Lake()
    once.ingest(_units([r for b in BATCHES for r in b]))
    assert once.state()[1].equals(ref_a) and once.state()[0].equals(ref_sp)
    # one cluster per person, each person one cluster (v4/track:2 has no embedding)
    assert _partition(results[0][1], PERSON) == [{0}, {1}, {2}, {3}, {4}]


def test_same_two_people_in_two_batches_end_with_two_ids():
    lake = Lake()
    lake.ingest(_units([("vb", "spk0", 0, 5.0), ("vb", "spk1", 1, 5.0)]))
    lake.ingest(_units([("va", "spk0", 1, 5.0), ("va", "spk1", 0, 5.0), ("vc", "track:3", 0, 2.0)]))
    _check(lake)
    ids = lake.ids()
    assert len(set(ids.values())) == 2
    assert ids["vb", "spk0"] == ids["va", "spk1"] == ids["vc", "track:3"]
    assert ids["vb", "spk1"] == ids["va", "spk0"]
    assert lake.speakers.height == 2 and sorted(lake.speakers["n_videos"]) == [2, 3]


def test_rerun_is_idempotent():
    lake = Lake()
    for b in BATCHES:
        lake.ingest(_units(b))
    before = lake.state()
    up = lake.ingest(_units(BATCHES[1]))  # the same batch again (a retry after a crash)
    _check(lake)
    after = lake.state()
    assert after[0].equals(before[0]) and after[1].equals(before[1])
    assert up.removed == [] and up.deleted_assignments.is_empty()
    # nothing it writes differs from what is there: counts not incremented, same ids
    assert up.speakers.equals(before[0].filter(pl.col("speaker_id").is_in(up.speakers["speaker_id"].to_list())))
    assert up.assignments.join(before[1], on=["video_id", "unit", "speaker_id"], how="anti").is_empty()


def test_reprocessed_video_leaves_no_stale_cluster():
    lake = Lake()
    lake.ingest(_units([("v1", "spk0", 5, 6.0), ("v1", "spk1", 1, 2.0)]))  # person 5 only here
    lake.ingest(_units([("v2", "spk0", 1, 4.0), ("v2", "spk1", 2, 3.0)]))
    old = lake.ids()
    lone = old["v1", "spk0"]
    # v1 reprocessed: spk0 is now person 2's face, spk1 was split into track:9 (no embedding)
    up = lake.ingest(_units([("v1", "spk0", 2, 6.0), ("v1", "track:9", None, 2.0)]))
    _check(lake)
    ids = lake.ids()
    assert ids["v1", "spk0"] == ids["v2", "spk1"]
    assert ("v1", "spk1") not in ids and ("v1", "track:9") not in ids
    assert up.deleted_assignments.rows() == [("v1", "spk1")]
    assert up.unassigned.rows() == [("v1", "track:9", "no_embedding")]
    # person 5's cluster lost its only member: gone; person 2's cluster took v1/spk0's name
    assert ids["v1", "spk0"] == lone == speaker_id_for_unit("v1", "spk0")
    assert old["v2", "spk1"] in up.removed and old["v2", "spk1"] not in set(lake.speakers["speaker_id"])
    p2 = lake.speakers.filter(pl.col("speaker_id") == lone).row(0, named=True)
    assert (p2["n_videos"], p2["seconds"]) == (2, 9.0)  # not 6 + 3 + person 5's 6
    p1 = lake.speakers.filter(pl.col("speaker_id") == ids["v2", "spk0"]).row(0, named=True)
    assert (p1["n_videos"], p1["seconds"]) == (1, 4.0)  # lost v1/spk1
    # the same lake as ingesting the current units from scratch
    fresh = Lake()
    fresh.ingest(lake.units)
    assert fresh.state()[0].equals(lake.state()[0]) and fresh.state()[1].equals(lake.state()[1])


def test_rename_when_smaller_key_joins_is_consistent():
    lake = Lake()
    lake.ingest(_units([("v7", "spk0", 0, 3.0), ("v8", "spk0", 0, 3.0)]))
    first = lake.ids()["v7", "spk0"]
    assert first == speaker_id_for_unit("v7", "spk0")
    up = lake.ingest(_units([("v0", "spk3", 0, 1.0)]))
    _check(lake)
    new = speaker_id_for_unit("v0", "spk3")
    assert set(lake.ids().values()) == {new}
    assert up.removed == [first]
    assert sorted(up.assignments.rows()) == [("v0", "spk3", new), ("v7", "spk0", new), ("v8", "spk0", new)]
    assert lake.speakers["speaker_id"].to_list() == [new]
    rev = Lake()  # the other order: no rename needed, same end state
    rev.ingest(_units([("v0", "spk3", 0, 1.0)]))
    rev.ingest(_units([("v7", "spk0", 0, 3.0), ("v8", "spk0", 0, 3.0)]))
    assert rev.state()[0].equals(lake.state()[0]) and rev.state()[1].equals(lake.state()[1])


def test_unit_without_embedding_gets_no_id_and_is_reported():
    lake = Lake()
    up = lake.ingest(_units([("v1", "spk0", None, 5.0), ("v1", "track:4", None, 1.0), ("v1", "spk1", 3, 2.0)]))
    _check(lake)
    assert sorted(up.unassigned.rows()) == [("v1", "spk0", "no_embedding"), ("v1", "track:4", "no_embedding")]
    assert up.assignments.select("video_id", "unit").rows() == [("v1", "spk1")]
    # a unit that had an id and loses its embedding on reprocessing loses the id
    up = lake.ingest(_units([("v1", "spk0", None, 5.0), ("v1", "spk1", None, 2.0)]))
    _check(lake)
    assert lake.assignments.is_empty() and lake.speakers.is_empty()
    assert up.deleted_assignments.rows() == [("v1", "spk1")] and up.removed == [speaker_id_for_unit("v1", "spk1")]


def test_reconcile_merges_clusters_that_a_unit_bridges():
    """Not separated: a (person 0) and b (cos 0.3 to a) found two clusters; c, between them,
    joins one and pulls its centroid within reach of the other: reconcile merges them."""
    a = np.array(PEOPLE[0])
    q = PEOPLE[1] - (PEOPLE[1] @ a) * a
    q /= np.linalg.norm(q)
    b = 0.3 * a + np.sqrt(1 - 0.09) * q
    c = (a + b) / np.linalg.norm(a + b)
    lake = Lake()
    up = lake.ingest(_units([("v1", "spk0", a, 1.0), ("v2", "spk0", b, 1.0), ("v3", "spk0", c, 1.0)]))
    _check(lake)
    assert len(set(lake.ids().values())) == 1 and up.speakers.height == 1


def test_a_new_unit_joining_an_unloaded_cluster_is_refused():
    lake = Lake()
    lake.ingest(_units([("v1", "spk0", 0, 1.0)]))
    batch = _units([("v2", "spk0", 0, 1.0)])
    assert touched_speaker_ids(batch, lake.speakers, lake.assignments, threshold=TH) == [speaker_id_for_unit("v1", "spk0")]
    with pytest.raises(ValueError, match="members were not given"):
        update_speaker_ids(batch, lake.speakers, None, threshold=TH)


def test_near_untouched_clusters_are_reported_and_resolved():
    """Not separated: x2 sits between persons 0 and 1. Cluster X = {x1 (person 0), x2}, Y =
    {y (person 1)} (X's centroid is 0.38 from y). Dropping v1 leaves X = {x2}, 0.71 from Y's
    centroid, but Y is untouched (its members are not loaded): reported in near_untouched;
    passing Y's members too merges them."""
    a = np.array(PEOPLE[0])
    y = PEOPLE[1] - (PEOPLE[1] @ a) * a
    y /= np.linalg.norm(y)
    x2 = (a + y) / np.linalg.norm(a + y)
    lake = Lake()
    lake.ingest(_units([("v1", "spk0", a, 1.0), ("v2", "spk0", x2, 1.0), ("v3", "spk0", y, 1.0)]))
    _check(lake)
    X, Y = speaker_id_for_unit("v1", "spk0"), speaker_id_for_unit("v3", "spk0")
    assert lake.ids() == {("v1", "spk0"): X, ("v2", "spk0"): X, ("v3", "spk0"): Y}
    up = lake.drop(["v1"])
    _check(lake)
    X2 = speaker_id_for_unit("v2", "spk0")
    assert up.removed == [X] and up.near_untouched.select("speaker_id", "untouched_speaker_id").rows() == [(X2, Y)]
    assert up.near_untouched["cosine"][0] == pytest.approx(np.sqrt(0.5), abs=1e-5)
    both = members_of(lake.assignments, lake.units, [X2, Y])
    up = update_speaker_ids(IDENTITY_UNITS.empty(), lake.speakers, both, threshold=TH)
    lake.speakers, lake.assignments = apply_update(lake.speakers, lake.assignments, up)
    _check(lake)
    assert set(lake.ids().values()) == {X2} and up.removed == [Y] and up.near_untouched.is_empty()


def test_drop_videos_removes_their_members():
    lake = Lake()
    for b in BATCHES:
        lake.ingest(_units(b))
    up = lake.drop(["v2", "v6"])  # person 4 only in v2; person 3 also in v1
    _check(lake)
    assert speaker_id_for_unit("v2", "spk1") in up.removed
    assert not lake.assignments.filter(pl.col("video_id").is_in(["v2", "v6"])).height
    fresh = Lake()
    fresh.ingest(lake.units)
    assert fresh.state()[0].equals(lake.state()[0]) and fresh.state()[1].equals(lake.state()[1])


def test_identity_units_from_tracks():
    e0 = np.array([1.0, 0.0, 0.0], np.float32)
    e1 = np.array([0.0, 1.0, 0.0], np.float32)
    ti = pl.DataFrame(
        {"video_id": ["v", "v", "v", "v", "w"], "track_id": [0, 1, 2, 3, 0], "speaker_local": ["s0", "s0", None, None, "s0"]},
        schema={"video_id": pl.String, "track_id": pl.Int32, "speaker_local": pl.String},
    )
    ft = pl.DataFrame(
        {
            "video_id": ["v", "v", "v", "v", "w"],
            "track_id": [0, 1, 2, 3, 0],
            "embedding": [e0.tolist(), e1.tolist(), (2 * e1).tolist(), None, e1.tolist()],
            "start": [0.0, 0.0, 1.0, 0.0, 0.0],
            "end": [3.0, 1.0, 2.0, 4.0, 2.0],
        },
        schema={"video_id": pl.String, "track_id": pl.Int32, "embedding": pl.List(pl.Float32), "start": pl.Float64, "end": pl.Float64},
    )
    u = identity_units(ti, ft)
    assert u.schema == IDENTITY_UNITS.polars_schema
    rows = {(r["video_id"], r["unit"]): r for r in u.iter_rows(named=True)}
    assert sorted(rows) == [("v", "s0"), ("v", "track:2"), ("v", "track:3"), ("w", "s0")]
    s0 = rows["v", "s0"]
    assert (s0["n_tracks"], s0["seconds"]) == (2, 4.0)
    np.testing.assert_allclose(s0["embedding"], np.array([3.0, 1.0, 0.0]) / np.sqrt(10), rtol=1e-6)  # duration-weighted
    np.testing.assert_allclose(rows["v", "track:2"]["embedding"], e1, rtol=1e-6)  # re-normalised
    assert rows["v", "track:3"]["embedding"] is None and rows["v", "track:3"]["seconds"] == 4.0
    # track ids from the units' assignments
    a = pl.DataFrame({"video_id": ["v", "v"], "unit": ["s0", "track:2"], "speaker_id": ["spk_a", "spk_b"]})
    t = track_speaker_ids(ti.with_columns(speaker_id=pl.lit(None, pl.String)), a)
    assert t.columns == ["video_id", "track_id", "speaker_local", "speaker_id"]
    assert t["speaker_id"].to_list() == ["spk_a", "spk_a", "spk_b", None, None]


def test_speakers_from_members_rollup():
    """Duration-weighted centroid; a duplicate row (a rerun) counted once; a member without
    embedding counts in n_tracks/seconds only; null speaker_id ignored."""
    m = pl.DataFrame(
        [
            ("v2", "spk0", "spk_a", [0.0, 1.0, 0.0], 2, 1.0),
            ("v1", "spk0", "spk_a", [1.0, 0.0, 0.0], 1, 3.0),
            ("v1", "spk0", "spk_a", [1.0, 0.0, 0.0], 1, 3.0),
            ("v1", "track:4", "spk_a", None, 1, 5.0),
            ("v3", "spk0", "spk_b", [0.0, 0.0, 2.0], 4, 0.0),
            ("v3", "spk1", None, [0.0, 1.0, 0.0], 1, 9.0),
        ],
        schema={"video_id": pl.String, "unit": pl.String, "speaker_id": pl.String, "embedding": pl.List(pl.Float32), "n_tracks": pl.Int32, "seconds": pl.Float64},
        orient="row",
    )
    sp = speakers_from_members(m)
    assert sp.schema == TABLES["speakers"].polars_schema
    rows = {r["speaker_id"]: r for r in sp.iter_rows(named=True)}
    assert sorted(rows) == ["spk_a", "spk_b"]
    a, b = rows["spk_a"], rows["spk_b"]
    np.testing.assert_allclose(a["centroid"], np.array([3.0, 1.0, 0.0]) / np.sqrt(10), rtol=1e-6)
    assert (a["n_videos"], a["n_tracks"], a["seconds"]) == (2, 4, 9.0)
    np.testing.assert_allclose(b["centroid"], [0.0, 0.0, 1.0])
    assert (b["n_videos"], b["n_tracks"], b["seconds"]) == (1, 4, 0.0)
    # the member order does not matter, bit for bit
    assert speakers_from_members(m.reverse()).sort("speaker_id").equals(sp.sort("speaker_id"))


# ---------------------------------------------------------------- real ArcFace embeddings
def test_real_arcface_batches_in_any_order(photo_faces):
    f = photo_faces
    batches = [
        [("p2", "spk0", f["yao_team"], 6.0), ("p2", "spk1", f["player"], 2.0), ("p5", "track:1", f["t1"][0], 1.0)],
        [("p1", "spk0", f["yao"], 4.0), ("p3", "spk0", f["t1"][0], 3.0), ("p3", "spk1", f["t1"][1], 3.0), ("p3", "spk2", f["t1"][2], 1.0)],
        [("p4", "spk0", f["t1"][3], 2.0), ("p4", "spk1", f["t1"][4], 2.0), ("p4", "spk2", f["t1"][5], 2.0), ("p4", "spk3", f["t1"][1], 5.0)],
    ]
    same = float(_vec32(f["yao"]) @ _vec32(f["yao_team"]))
    embs = [_vec32(e) for e in [f["yao"], f["player"], *f["t1"]]]
    diff = max(float(a @ b) for i, a in enumerate(embs) for b in embs[:i])
    print(f"ArcFace: Yao/Yao {same:.2f}, different people <= {diff:.2f}, threshold {TH}")
    assert same >= TH and diff < TH * same  # separated: the premise of strict order independence
    states = []
    for order in itertools.permutations(range(3)):
        lake = Lake()
        for i in order:
            lake.ingest(_units(batches[i]))
            _check(lake)
        states.append(lake.state())
    for sp, a in states[1:]:
        assert sp.equals(states[0][0]) and a.equals(states[0][1])
    ids = dict(((v, u), s) for v, u, s in states[0][1].iter_rows())
    assert ids["p1", "spk0"] == ids["p2", "spk0"] == speaker_id_for_unit("p1", "spk0")
    assert ids["p3", "spk0"] == ids["p5", "track:1"] and ids["p3", "spk1"] == ids["p4", "spk3"]
    assert len(set(ids.values())) == 8  # Yao, the other player, the six people of t1.jpg


def _vec32(e) -> np.ndarray:
    v = np.asarray(e, np.float64)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_orders_and_reprocessing_equal_a_fresh_ingest(seed):
    """Property: 40 videos of 6 people in random batch splits and orders, then random
    videos reprocessed with other faces (some units gone, some without embedding): the
    lake always equals ingesting its current units from scratch."""
    rng = np.random.default_rng(seed)

    def video(v: str) -> list:
        n = int(rng.integers(1, 4))
        people = rng.choice(6, size=n, replace=False)
        rows = [(v, f"spk{k}", int(p), float(rng.integers(1, 9))) for k, p in enumerate(people)]
        if rng.random() < 0.3:
            rows.append((v, f"track:{int(rng.integers(0, 50))}", None if rng.random() < 0.5 else int(rng.integers(0, 6)), 1.0))
        return rows

    # faces are fixed per (video, unit) key: give reprocessed units new keys ("r<k>") so
    # a changed person is a changed face
    vids = [f"v{i:02d}" for i in range(40)]
    units = {v: video(v) for v in vids}
    fresh = Lake()
    fresh.ingest(_units([r for v in sorted(units) for r in units[v]]))
    for trial in range(2):
        order = list(rng.permutation(vids))
        cuts = sorted(rng.choice(np.arange(1, 40), size=int(rng.integers(2, 8)), replace=False).tolist())
        lake = Lake()
        for lo, hi in zip([0, *cuts], [*cuts, 40]):
            lake.ingest(_units([r for v in order[lo:hi] for r in units[v]]))
        _check(lake)
        assert lake.state()[0].equals(fresh.state()[0]) and lake.state()[1].equals(fresh.state()[1]), f"trial {trial}"
    # reprocess 8 videos (two batches) with new units
    for batch in (rng.choice(vids, 4, replace=False), rng.choice(vids, 4, replace=False)):
        new = {v: [(v, f"r{k}" + u, p, s) for k, (_, u, p, s) in enumerate(video(v))] for v in batch}
        units.update(new)
        lake.ingest(_units([r for v in sorted(new) for r in new[v]]))
        _check(lake)
    again = Lake()
    again.ingest(_units([r for v in sorted(units) for r in units[v]]))
    assert lake.state()[0].equals(again.state()[0]) and lake.state()[1].equals(again.state()[1])
