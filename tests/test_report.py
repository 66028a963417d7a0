"""The dataset report (assets/report, sql/report.sql) on a small synthetic lake whose numbers
are known by construction: tiers, branches, yield and reasons in the summary, the histogram
bins, the asset's metadata, and the images served by the Dagster UI's GraphQL API."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.report import REPORT_ASSET
from assets.report import assets as report_assets
from assets.report.report import build_report, summary_markdown
from orchestration import lake as lake_io
from orchestration.resources import LakeResource, ThresholdsResource
from orchestration.tables import TABLES
from tests.test_ui import _free_port, _graphql, _wait_for

REPO = Path(__file__).resolve().parent.parent
HOUR = 3600.0
HISTOGRAMS = ("duration", "resolution", "visual_quality", "sync_confidence", "clips_per_speaker")

# Two source videos: v1 10 min at 1080p, v2 5 min at 720p (raw input 0.25 h).
VIDEOS = [
    {"video_id": "v1", "duration_s": 600.0, "width": 1920, "height": 1080},
    {"video_id": "v2", "duration_s": 300.0, "width": 1280, "height": 720},
]
# clip -> (video, speaker, talking, duration s, tier, rejection reasons, visual quality, sync confidence)
CLIPS = {
    "c1": ("v1", "spk_a", True, 10.0, "sft", [], 0.82, 5.0),
    "c2": ("v1", "spk_b", True, 8.0, "pretrain", [], 0.51, 3.0),
    "c3": ("v1", "spk_b", False, 6.0, "pretrain", [], 0.47, 0.4),
    "c4": ("v1", "spk_a", True, 4.0, "rejected", ["F2_visual_quality_low", "F4_face_blur_low"], 0.1, 4.0),
    "c5": ("v2", "spk_c", True, 12.0, "sft", [], 0.93, 7.5),
    "c6": ("v2", "spk_c", True, 3.5, "rejected", ["F5_avg_logprob_low"], 0.7, 6.0),
}


def _write_synthetic_lake(uri: str) -> None:
    def per_video(table: str, rows: list[dict]) -> None:
        lake_io.write(table, TABLES[table].frame(rows), video_ids=[v["video_id"] for v in VIDEOS], lake=uri)

    lake_io.write("videos", TABLES["videos"].frame(VIDEOS), lake=uri)
    size = {v["video_id"]: (v["width"], v["height"]) for v in VIDEOS}
    clips, quality, tiers = [], [], []
    for i, (cid, (vid, spk, talking, dur, tier, reasons, vq, sync)) in enumerate(CLIPS.items()):
        start = 20.0 * i
        clips.append({
            "clip_id": cid, "video_id": vid, "speaker_id": spk, "start_seconds": start, "end_seconds": start + dur, "duration": dur,
            "is_talking": talking, "raw_video_width": size[vid][0], "raw_video_height": size[vid][1], "sync_confidence": sync,
        })
        quality.append({"clip_id": cid, "video_id": vid, "visual_quality": vq})
        tiers.append({"clip_id": cid, "video_id": vid, "speaker_id": spk, "is_talking": talking, "duration": dur, "tier": tier,
                      "reasons": reasons, "sft_missed": []})
    per_video("clips", clips)
    per_video("clip_quality", quality)
    lake_io.write("clip_tiers", TABLES["clip_tiers"].frame(tiers), lake=uri)
    lake_io.write("rejects", TABLES["rejects"].frame([
        {"reject_id": "r1", "stage": "ingest", "source_uri": "/in/broken.mp4", "reason": "unreadable"},
        {"reject_id": "r2", "stage": "ingest", "source_uri": "/in/empty.mp4", "reason": "unreadable"},
        {"reject_id": "r3", "stage": "audio", "video_id": "v2", "reason": "stage_error", "message": "boom"},
    ]), lake=uri)
    lake_io.write("stage_status", TABLES["stage_status"].frame([
        {"stage": "audio", "video_id": "v1", "status": "ok"},
        {"stage": "audio", "video_id": "v2", "status": "error", "reason": "stage_error"},
        {"stage": "vision", "video_id": "v1", "status": "ok"},
        {"stage": "vision", "video_id": "v2", "status": "ok", "reason": "no_faces"},
        {"stage": "binding", "video_id": "v1", "status": "ok"},
    ]), lake=uri)
    # the branches (issue 18's other assets) as their tables will hold them; the test split stays unwritten
    lake_io.write("single", TABLES["single"].frame([
        {"clip_id": c, "video_id": CLIPS[c][0], "speaker_id": CLIPS[c][1], "duration": CLIPS[c][3], "tier": CLIPS[c][4]} for c in ("c1", "c2", "c5")
    ]), lake=uri)
    lake_io.write("dialogue_pairs", TABLES["dialogue_pairs"].frame([
        {"pair_id": "p1", "video_id": "v1", "initiator_clip_id": "c1", "responder_clip_id": "c2", "initiator_speaker_id": "spk_a",
         "responder_speaker_id": "spk_b", "gap_s": 0.4, "tier": "pretrain"},
    ]), lake=uri)
    lake_io.write("listening_pairs", TABLES["listening_pairs"].frame([
        {"pair_id": "l1", "video_id": "v1", "listener_clip_id": "c3", "listener_speaker_id": "spk_b", "speaker_id": "spk_a",
         "audio_start": 40.0, "audio_end": 46.0, "kind": "co_present", "tier": "pretrain"},
    ]), lake=uri)
    lake_io.write("multi_turn_context", TABLES["multi_turn_context"].frame([
        {"pair_id": "p1", "video_id": "v1", "responder_clip_id": "c2", "context_clip_ids": ["c1"], "context_speaker_ids": ["spk_a"]},
    ]), lake=uri)
    lake_io.write("multi_turn_chains", TABLES["multi_turn_chains"].frame([
        {"chain_id": "ch1", "video_id": "v1", "position": 0, "clip_id": "c1", "speaker_id": "spk_a"},
        {"chain_id": "ch1", "video_id": "v1", "position": 1, "clip_id": "c2", "speaker_id": "spk_b", "gap_before_s": 0.4},
    ]), lake=uri)


@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("report") / "lake")
    _write_synthetic_lake(uri)
    return uri


@pytest.fixture(scope="module")
def report(synthetic_lake):
    return build_report(lake_io.duckdb_connection(synthetic_lake))


def test_tiers_sft_share_and_yield(report):
    tiers = {r["tier"]: r for r in report.tiers.iter_rows(named=True)}
    assert {t: r["clips"] for t, r in tiers.items()} == {"rejected": 2, "pretrain": 2, "sft": 2}
    assert tiers["rejected"]["hours"] == pytest.approx(7.5 / HOUR)
    assert tiers["pretrain"]["hours"] == pytest.approx(14.0 / HOUR)
    assert tiers["sft"]["hours"] == pytest.approx(22.0 / HOUR)
    assert tiers["pretrain"]["speaker_ids"] == 1 and tiers["sft"]["speaker_ids"] == 2
    assert (report.kept_clips, report.kept_hours) == (4, pytest.approx(36.0 / HOUR))
    assert report.sft_share_clips == pytest.approx(0.5)
    assert report.sft_share_hours == pytest.approx(22.0 / 36.0)
    assert report.yield_["raw_hours"] == pytest.approx(900.0 / HOUR)
    assert report.yield_["clip_hours"] == pytest.approx(43.5 / HOUR)
    assert report.hour_yield == pytest.approx(36.0 / 900.0)


def test_branches(report):
    b = {r["branch"]: r for r in report.branches.iter_rows(named=True)}
    assert (b["single"]["rows"], b["single"]["clips"], b["single"]["speaker_ids"], b["single"]["sft_clips"]) == (3, 3, 3, 2)
    assert b["single"]["hours"] == pytest.approx(30.0 / HOUR) and b["single"]["sft_hours"] == pytest.approx(22.0 / HOUR)
    # a dialogue pair uses both turns
    assert (b["dialogue_pairs"]["rows"], b["dialogue_pairs"]["clips"], b["dialogue_pairs"]["speaker_ids"]) == (1, 2, 2)
    assert b["dialogue_pairs"]["hours"] == pytest.approx(18.0 / HOUR)
    # the listener's clip; the speaker whose audio it pairs with counts as a speaker id too
    assert (b["listening_pairs"]["rows"], b["listening_pairs"]["clips"], b["listening_pairs"]["speaker_ids"]) == (1, 1, 2)
    assert b["listening_pairs"]["hours"] == pytest.approx(6.0 / HOUR) and b["listening_pairs"]["sft_clips"] == 0
    assert (b["multi_turn_context"]["rows"], b["multi_turn_context"]["clips"]) == (1, 2)
    assert (b["multi_turn_chains"]["rows"], b["multi_turn_chains"]["clips"], b["multi_turn_chains"]["speaker_ids"]) == (1, 2, 2)
    # a branch not written yet is an empty view: listed with zeros
    assert (b["vidchat_testset"]["rows"], b["vidchat_testset"]["clips"], b["vidchat_testset"]["hours"]) == (0, 0, 0.0)


def test_reject_reasons_and_stage_failures(report):
    reasons = {r["reason"]: (r["clips"], r["hours"]) for r in report.clip_reasons.iter_rows(named=True)}
    assert reasons == {
        "F2_visual_quality_low": (1, pytest.approx(4.0 / HOUR)),
        "F4_face_blur_low": (1, pytest.approx(4.0 / HOUR)),
        "F5_avg_logprob_low": (1, pytest.approx(3.5 / HOUR)),
    }
    rejects = {(r["stage"], r["reason"]): (r["rejects"], r["videos"]) for r in report.rejects.iter_rows(named=True)}
    assert rejects == {("ingest", "unreadable"): (2, 0), ("audio", "stage_error"): (1, 1)}
    status = {r["stage"]: (r["ok"], r["ok_with_reason"], r["error"], r["pending"]) for r in report.stage_status.iter_rows(named=True)}
    assert status == {"audio": (1, 0, 1, 0), "vision": (2, 1, 0, 0), "binding": (1, 0, 0, 1)}
    assert report.failed_stage_videos == 1


def test_histogram_bins(report):
    hists = {h.name: h for h in report.histograms}
    assert tuple(hists) == HISTOGRAMS

    def nonzero(name: str) -> dict[tuple[str, str], int]:
        return {(r["label"], r["series"]): r["count"] for r in hists[name].counts.filter(pl.col("count") > 0).iter_rows(named=True)}

    # kept clips only, stacked by tier; 1 s bins from clip_min_s (3 s) to clip_max_s (14 s)
    assert hists["duration"].counts["label"].unique(maintain_order=True).to_list()[0] == "3-4"
    assert nonzero("duration") == {("6-7", "pretrain"): 1, ("8-9", "pretrain"): 1, ("10-11", "sft"): 1, ("12-13", "sft"): 1}
    assert nonzero("resolution") == {("1080p", "pretrain"): 2, ("1080p", "sft"): 1, ("720p", "sft"): 1}
    assert nonzero("visual_quality") == {("0.45-0.50", "pretrain"): 1, ("0.50-0.55", "pretrain"): 1, ("0.80-0.85", "sft"): 1, ("0.90-0.95", "sft"): 1}
    # talking clips only (c1, c2, c5), bins up to the largest confidence rounded up (8)
    sync = hists["sync_confidence"].counts
    assert sync["count"].sum() == 3 and sync.filter(pl.col("count") > 0)["bin"].max() == int(7.5 / 0.4)
    # spk_a and spk_c keep one clip each, spk_b two
    assert nonzero("clips_per_speaker") == {("1", "speakers"): 2, ("2-3", "speakers"): 1}


def test_summary_markdown_states_the_numbers(report):
    md = summary_markdown(report)
    assert "| kept clips (pretrain + sft) | 0.01 | 4.0 % |" in md
    assert "**50.0 %** of clips (2 of 4)" in md and "**61.1 %** of hours" in md
    assert "| single | 3 | 3 | 0.00833 | 3 | 66.7 % | 73.3 % |" in md
    assert "| F5_avg_logprob_low | 1 | 0.000972 |" in md
    assert "| audio | stage_error | 1 | 1 |" in md
    assert "| binding | 1 | 0 | 0 | 1 |" in md


def _png_sizes(entries: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Width and height of the inline PNG in each markdown entry, decoded by Pillow."""
    from PIL import Image

    sizes = {}
    for label, md in entries.items():
        (data,) = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
        sizes[label] = Image.open(io.BytesIO(base64.b64decode(data))).size
    return sizes


def _materialize(uri: str, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [report_assets.dataset_report],
        resources={"lake": LakeResource(location=uri), "thresholds": ThresholdsResource()},
        instance=instance,
    )


def test_asset_materializes_the_report(synthetic_lake, tmp_path):
    result = _materialize(synthetic_lake)
    assert result.success
    (mat,) = result.asset_materializations_for_node(REPORT_ASSET)
    meta = mat.metadata
    images = {k: v.value for k, v in meta.items() if k.startswith("histogram_")}
    assert set(images) == {f"histogram_{h}" for h in HISTOGRAMS}
    assert all(w > 200 and h > 100 for w, h in _png_sizes(images).values())
    assert "## Branches" in meta["summary"].value and "| dialogue pairs | 1 | 2 |" in meta["summary"].value
    assert meta["kept_clips"].value == 4
    assert meta["hour_yield"].value == pytest.approx(0.04)
    assert meta["sft_share_hours"].value == pytest.approx(22.0 / 36.0)
    assert meta["failed_stage_videos"].value == 1

    # an empty lake (nothing ingested yet): the report still materializes, ratios left out
    empty = _materialize(str(tmp_path / "empty"))
    (mat,) = empty.asset_materializations_for_node(REPORT_ASSET)
    assert mat.metadata["kept_clips"].value == 0 and "hour_yield" not in mat.metadata
    assert len([k for k in mat.metadata if k.startswith("histogram_")]) == len(HISTOGRAMS)


UI_QUERY = """
{ assetNodes(assetKeys: [{path: ["dataset_report"]}]) { assetKey { path } groupName
    assetMaterializations(limit: 1) { metadataEntries { label __typename
        ... on MarkdownMetadataEntry { mdStr } ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } } } } }
"""


def test_the_ui_serves_the_report_images(synthetic_lake, tmp_path):
    """The Dagster webserver over the project's workspace (as `dagster dev` serves it) returns
    the latest dataset_report materialization with its histogram images and summary."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPEAKERLAKE_LAKE": synthetic_lake}
    # its own process group, so the code server it starts stops with it
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        # materialize into the instance the webserver reads while it loads the code location
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert _materialize(synthetic_lake, instance).success
        _wait_for(port, "{ assetNodes { assetKey { path } } }", seconds=180)
        deadline = time.time() + 120
        while not (nodes := _graphql(port, UI_QUERY)["data"]["assetNodes"]) and time.time() < deadline:
            time.sleep(1)  # the code location is still loading
        (node,) = nodes
        assert node["groupName"] == "report"
        (mat,) = node["assetMaterializations"]
        entries = {e["label"]: e for e in mat["metadataEntries"]}
        images = {label: e["mdStr"] for label, e in entries.items() if label.startswith("histogram_")}
        assert {e["__typename"] for label, e in entries.items() if label.startswith("histogram_")} == {"MarkdownMetadataEntry"}
        assert set(images) == {f"histogram_{h}" for h in HISTOGRAMS}
        assert all(w > 200 and h > 100 for w, h in _png_sizes(images).values())
        assert "## Yield" in entries["summary"]["mdStr"]
        assert entries["kept_clips"]["intValue"] == 4
        assert entries["hour_yield"]["floatValue"] == pytest.approx(0.04)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
