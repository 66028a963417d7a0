"""Quality tiers (sql/tiers.sql), the SFT contract (expectations/) and the retier job, on
synthetic clips + clip_quality Delta tables in a temporary lake."""

from __future__ import annotations

import shutil
import time

import dagster as dg
import polars as pl
import pytest

from assets.branches.branches import BRANCH_TABLES
from assets.tiers import assets as tiers_assets
from assets.tiers.tiers import clip_tiers, prepare
from expectations.sft_contract import validate
from orchestration import lake as lake_io
from orchestration.resources import LakeResource, ThresholdsResource
from orchestration.tables import TABLES
from orchestration.thresholds import THRESHOLDS_CSV, load

# A clip that meets every filter and every SFT rule (paper values: face blur > 0.7, hand blur
# > 0.5, quality > 0.6, motion > 2, avg_logprob > -1).
CLEAN_CLIP = {
    "speaker_id": "spk_a", "speaker_local": "S0", "identity_unit": "S0", "track_id": 1,
    "start_seconds": 10.0, "duration": 6.0, "is_talking": True, "clip_speaker_num": 1,
    "bbox": [0.2, 0.1, 0.5, 0.8], "raw_video_width": 1920, "raw_video_height": 1080, "shot_id": 0, "turn_id": 0,
    "text": "hello there", "language": "en", "language_prob": 0.99,
    "avg_logprob": -0.3, "no_speech_prob": 0.05, "compression_ratio": 1.4,
    "sync_offset": 0, "sync_confidence": 0.8, "sync_dist": 7.0,
}
CLEAN_QUALITY = {
    "n_frames_sampled": 8, "luminance": 120.0, "clarity": 1.0, "visual_quality": 0.8,
    "face_blur": 0.9, "hands_visible": True, "hand_blur": 0.8, "motion": 3.0, "motion_score": 3,
}
NO_QUALITY = None

# rule -> (clip overrides, quality overrides or NO_QUALITY): each breaks exactly that rule
RULE_ROWS = {
    "no_quality": ({}, NO_QUALITY),
    "F1_luminance_missing": ({}, {"luminance": None}),
    "F1_luminance_low": ({}, {"luminance": 9.9}),
    "F1_luminance_high": ({}, {"luminance": 210.5}),
    "F2_visual_quality_missing": ({}, {"visual_quality": None}),
    "F2_visual_quality_low": ({}, {"visual_quality": 0.2}),
    "F3_clarity_missing": ({}, {"clarity": None}),
    "F3_clarity_low": ({}, {"clarity": 0.001}),  # the one lowest of > 20 clips: within the lowest 5 %
    "F4_face_blur_missing": ({}, {"face_blur": None}),
    "F4_face_blur_low": ({}, {"face_blur": 0.05}),
    "F4_hand_blur_low": ({}, {"hand_blur": 0.05}),
    "F5_asr_missing": ({"no_speech_prob": None}, {}),
    "F5_avg_logprob_low": ({"avg_logprob": -1.6}, {}),
    "F5_no_speech_prob_high": ({"no_speech_prob": 0.85}, {}),
    "F5_compression_ratio_high": ({"compression_ratio": 2.6}, {}),
    "F6_language_missing": ({"language": None}, {}),
    "F6_language_not_accepted": ({"language": "fr"}, {}),
}
# SFT rule -> overrides of a kept clip that misses exactly that rule (tier pretrain)
SFT_ROWS = {
    "SFT_face_blur": ({}, {"face_blur": 0.7}),  # strictly above 0.7 is needed
    "SFT_hand_blur": ({}, {"hand_blur": 0.5}),
    "SFT_visual_quality": ({}, {"visual_quality": 0.55}),
    "SFT_motion_score": ({}, {"motion_score": 2}),
    "SFT_avg_logprob": ({"avg_logprob": -1.2}, {}),
}
# kept at the paper's limits (inclusive drop bounds) and without visible hands: no reason
EDGE_ROWS = {
    "edge_low": ({"avg_logprob": -1.5, "no_speech_prob": 0.8, "compression_ratio": 2.5},
                 {"luminance": 10.0, "visual_quality": 0.25, "face_blur": 0.1, "hand_blur": 0.1}),
    "edge_high": ({}, {"luminance": 210.0}),
    "no_hands": ({}, {"hands_visible": False, "hand_blur": None}),
    # a listening clip: the F5 rules and the SFT avg_logprob rule need the clip's own speech
    "listening_bad_asr": ({"is_talking": False, "avg_logprob": -3.0, "no_speech_prob": 0.99, "compression_ratio": 4.0, "turn_id": None,
                           "listening_kind": "co_present", "partner_speaker_local": "S1"}, {}),
    "listening_no_asr": ({"is_talking": False, "avg_logprob": None, "no_speech_prob": None, "compression_ratio": None, "language": None}, {}),
}
FILLERS = 24  # clean clips, so the single low-clarity clip is within the lowest 5 %


def _rows(spec: dict[str, tuple[dict, dict | None]], video_id: str = "vid0") -> tuple[pl.DataFrame, pl.DataFrame]:
    clips, quality = [], []
    for i, (name, (clip_over, quality_over)) in enumerate(spec.items()):
        clip_id = f"{video_id}_{name}"
        clip = {**CLEAN_CLIP, "clip_id": clip_id, "video_id": video_id, "start_seconds": 30.0 * i, **clip_over}
        clips.append({**clip, "end_seconds": clip["start_seconds"] + clip["duration"]})
        if quality_over is not None:
            quality.append({**CLEAN_QUALITY, "clip_id": clip_id, "video_id": video_id, **quality_over})
    return TABLES["clips"].frame(clips), TABLES["clip_quality"].frame(quality)


def _write_lake(uri: str, spec: dict) -> None:
    clips, quality = _rows(spec)
    lake_io.write("clips", clips, video_ids=["vid0"], lake=uri)
    lake_io.write("clip_quality", quality, video_ids=["vid0"], lake=uri)


LAKE_SPEC = {**RULE_ROWS, **SFT_ROWS, **EDGE_ROWS, "clean": ({}, {}), **{f"filler{i:02d}": ({}, {}) for i in range(FILLERS)}}


@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("tiers") / "lake")
    _write_lake(uri, LAKE_SPEC)
    return uri


@pytest.fixture(scope="module")
def tiers(synthetic_lake) -> dict[str, dict]:
    df = clip_tiers(lake_io.duckdb_connection(synthetic_lake))
    assert df.height == len(LAKE_SPEC)  # no clip dropped by the join
    return {r["clip_id"].removeprefix("vid0_"): r for r in df.iter_rows(named=True)}


@pytest.mark.parametrize("rule", list(RULE_ROWS))
def test_a_row_breaking_one_rule_gets_exactly_that_reason(tiers, rule):
    row = tiers[rule]
    assert row["reasons"] == [rule]
    assert row["tier"] == "rejected"


@pytest.mark.parametrize("rule", list(SFT_ROWS))
def test_a_kept_row_missing_one_sft_rule_is_pretrain(tiers, rule):
    row = tiers[rule]
    assert (row["tier"], row["reasons"], row["sft_missed"]) == ("pretrain", [], [rule])


def test_clean_rows_edges_and_listening(tiers):
    assert (tiers["clean"]["tier"], tiers["clean"]["reasons"], tiers["clean"]["sft_missed"]) == ("sft", [], [])
    assert all(tiers[f"filler{i:02d}"]["tier"] == "sft" for i in range(FILLERS))
    # drop bounds are exclusive: a clip exactly at the paper's limits is kept (but not SFT)
    assert tiers["edge_low"]["reasons"] == [] and tiers["edge_low"]["tier"] == "pretrain"
    assert tiers["edge_high"]["tier"] == "sft"
    assert tiers["no_hands"]["tier"] == "sft"  # hand rules need a visible hand
    # listening clips are not judged on ASR of their own speech, neither filter nor SFT rule
    for name in ("listening_bad_asr", "listening_no_asr"):
        assert (tiers[name]["tier"], tiers[name]["reasons"], tiers[name]["sft_missed"]) == ("sft", [], []), name


def test_clarity_cut_is_the_lowest_share_of_the_whole_lake(tmp_path):
    uri = str(tmp_path / "lake")
    # 100 clips over 4 videos with clarity 1..100: the lowest 5 % are clarity 1-5, whatever video they are in
    for v in range(4):
        spec = {f"c{k:03d}": ({}, {"clarity": float(k)}) for k in range(1, 101) if k % 4 == v}
        clips, quality = _rows(spec, video_id=f"vid{v}")
        lake_io.write("clips", clips, video_ids=[f"vid{v}"], lake=uri)
        lake_io.write("clip_quality", quality, video_ids=[f"vid{v}"], lake=uri)
    df = clip_tiers(lake_io.duckdb_connection(uri))
    low = sorted(int(c.split("_c")[1]) for c in df.filter(pl.col("reasons").list.contains("F3_clarity_low"))["clip_id"])
    assert low == [1, 2, 3, 4, 5]
    # one source video (every clip the same clarity) is not cut at all: ties are never split
    one = str(tmp_path / "one")
    clips, quality = _rows({f"c{k}": ({}, {}) for k in range(30)})
    lake_io.write("clips", clips, video_ids=["vid0"], lake=one)
    lake_io.write("clip_quality", quality, video_ids=["vid0"], lake=one)
    assert clip_tiers(lake_io.duckdb_connection(one))["tier"].unique().to_list() == ["sft"]


def test_a_missing_threshold_row_is_refused(synthetic_lake, tmp_path):
    edited = tmp_path / "thresholds.csv"
    edited.write_text("".join(line for line in THRESHOLDS_CSV.read_text().splitlines(keepends=True) if not line.startswith("sft_motion_score_min,")))
    with pytest.raises(lake_io.MissingThresholdError, match="sft_motion_score_min"):
        prepare(lake_io.duckdb_connection(synthetic_lake, thresholds_csv=edited))


# ---------------------------------------------------------------- the SFT contract gate
@dg.asset(deps=["sft_subset"])
def sft_consumer() -> None:
    """Stands for anything built from the SFT subset (a training export)."""


def _gate_run(uri: str):
    return dg.materialize(
        [tiers_assets.clip_tiers, tiers_assets.sft_subset, tiers_assets.sft_contract, sft_consumer],
        resources={"lake": LakeResource(location=uri), "thresholds": ThresholdsResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _contract(result):
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "sft_contract"]
    return check


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_contract_passes_on_clean_sft_rows_and_blocks_downstream_when_broken(tmp_path):
    good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
    spec = {"clean": ({}, {}), "no_hands": ({}, {"hands_visible": False, "hand_blur": None}), "pretrain": SFT_ROWS["SFT_face_blur"]}
    _write_lake(good, spec)
    ok = _gate_run(good)
    check = _contract(ok)
    assert check.passed, check.metadata
    assert _materialized(ok) == {"clip_tiers", "sft_subset", "sft_consumer"}
    assert lake_io.count("sft_subset", good) == 2

    # corrupted upstream rows that pass the tier filters: a 20 s clip and a box past the frame
    _write_lake(bad, {**spec, "too_long": ({"duration": 20.0}, {}), "box_out": ({"bbox": [0.6, 0.1, 0.7, 0.8]}, {})})
    broken = _gate_run(bad)
    check = _contract(broken)
    assert not check.passed
    failed = {k: v.value for k, v in check.metadata.items() if k.startswith("expect_")}
    assert failed == {"expect_column_values_to_be_between(duration)": 1, "expect_column_values_to_be_between(bbox_right)": 1}
    assert "| expect_column_values_to_be_between(duration) | 1 |" in check.metadata["failed_expectations"].value
    assert _materialized(broken) == {"clip_tiers", "sft_subset"}  # the consumer never ran
    assert "sft_consumer" not in {e.asset_key.to_user_string() for e in broken.get_asset_materialization_events()}


def test_contract_checks_every_sft_threshold():
    clips, quality = _rows({"clean": ({}, {})})
    row = clips.join(quality, on=["video_id", "clip_id"]).select(list(TABLES["sft_subset"].schema))
    t = load()
    assert validate(row, t).success
    broken = {
        "face_blur": 0.7, "hand_blur": 0.5, "visual_quality": 0.6, "motion_score": 2, "avg_logprob": -1.0,
        "luminance": 211.0, "no_speech_prob": 0.81, "compression_ratio": 2.51, "language": "de",
    }
    # one row per broken threshold: each expectation fails on exactly its row
    rows = pl.concat([row.with_columns(pl.lit(value).cast(row.schema[column]).alias(column), clip_id=pl.lit(f"bad_{column}")) for column, value in broken.items()])
    result = validate(rows, t)
    assert {f.expectation.split("(")[1].rstrip(")"): f.unexpected_count for f in result.failures} == {column: 1 for column in broken}
    # a listening clip needs no ASR of its own
    assert validate(row.with_columns(is_talking=False, avg_logprob=pl.lit(None, pl.Float64)), t).success
    dup = validate(pl.concat([row, row]), t)
    assert [f.expectation for f in dup.failures] == ["expect_column_values_to_be_unique(clip_id)"]


# ---------------------------------------------------------------- re-tiering by editing data
def test_editing_a_threshold_and_running_retier_changes_only_the_tiers(synthetic_lake, tmp_path):
    from orchestration.definitions import build_defs

    lake = str(tmp_path / "lake")
    shutil.copytree(synthetic_lake, lake)
    edited = tmp_path / "thresholds.csv"
    shutil.copy(THRESHOLDS_CSV, edited)
    job = build_defs("in_process", resources={"lake": LakeResource(location=lake), "thresholds": ThresholdsResource(path=str(edited))}).resolve_job_def(
        tiers_assets.RETIER_JOB
    )
    instance = dg.DagsterInstance.ephemeral()
    first = job.execute_in_process(instance=instance)
    before = lake_io.read("clip_tiers", lake)
    assert before.filter(pl.col("tier") == "sft").height > FILLERS

    # every clean clip has face blur 0.9: demanding more than that empties the SFT tier
    edited.write_text(edited.read_text().replace("sft_face_blur_min,0.7,", "sft_face_blur_min,0.95,"))
    start = time.perf_counter()
    second = job.execute_in_process(instance=instance)
    seconds = time.perf_counter() - start
    after = lake_io.read("clip_tiers", lake)

    for run in (first, second):
        assert run.success
        assert _materialized(run) == {"clip_tiers", "sft_subset", *BRANCH_TABLES, "dataset_report"}  # the tiers, the branches cut from them, the report; no model stage
    assert seconds < 20, seconds
    assert after.filter(pl.col("tier") == "sft").is_empty()
    moved = before.join(after, on="clip_id", suffix="_new").filter(pl.col("tier") != pl.col("tier_new"))
    assert moved.height == before.filter(pl.col("tier") == "sft").height
    assert set(moved["tier_new"]) == {"pretrain"} and all("SFT_face_blur" in m for m in moved["sft_missed_new"])
    assert lake_io.count("sft_subset", lake) == 0
    # rejected clips do not depend on SFT thresholds
    assert before.filter(pl.col("tier") == "rejected")["clip_id"].sort().to_list() == after.filter(pl.col("tier") == "rejected")["clip_id"].sort().to_list()
