"""Issue 21 item 2: the bad-input matrix, the inputs that decode but mislead.

The ingest rejects (zero bytes, truncated, corrupt, not a video, no video stream, too short,
a manifest path escaping its root, duplicates) are tested in tests/test_lakehouse.py and the
audio reasons (no audio stream, digital silence) in tests/test_audio.py; docs/operations.md
"Bad inputs" lists the whole matrix. Here: a 7680x4320 video (bounded working size, peak RSS
measured in a subprocess), a phone video stored on its side with a display matrix, variable
frame rate, an audio stream starting after the video, a single frame and a near-black video.
Every file is made here from the demo corpus' real footage with PyAV.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest

from assets.audio.decode import SAMPLE_RATE, decode_audio
from assets.audio.pipeline import diarization_params, run_diarization, run_vad, vad_params
from assets.ingest.ingest import ingest_file
from assets.ingest.planning import plan_batches
from assets.ingest.probe import probe_video
from assets.quality.sampling import iter_pairs
from assets.vision import VisionStats, analyze_video
from assets.vision.params import VisionParams
from orchestration import lake
from tests import media_factory as mf

REPO = Path(__file__).resolve().parent.parent
K8 = (7680, 4320)

# Peak RSS of the vision stage on the 8K clip, in a fresh process, after its models are loaded.
# Measured on the 13-frame clip below: 1417 MB before the bounded decode (every frame held in
# the shot lag queue as a 100 MB BGR array), 252 MB after; a minute of 8K at 25 fps held ~5 GB.
MAX_8K_GROWTH_MB = 600

# Peak RSS from VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent
# (the pytest process, with its models loaded), so a child's ru_maxrss starts at the parent's size.
RSS_SCRIPT = """
import json, os, sys
from assets.vision import VisionStats, analyze_video, load_vision_models

def peak_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

models = load_vision_models(os.environ["SPEAKERLAKE_FACE_MODEL_DIR"])
loaded = peak_mb()
stats = VisionStats()
out = analyze_video("k8", sys.argv[1], models, stats=stats)
peak = peak_mb()
print(json.dumps({"growth_mb": peak - loaded, "peak_mb": peak, "size": [stats.width, stats.height],
                  "boxes": [t[0] for t in out["face_tracks"]["boxes"].to_list()]}))
"""


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _first_boxes(tracks) -> list[list[float]]:
    return sorted(t[0] for t in tracks["boxes"].to_list())


@pytest.fixture(scope="module")
def conv_a(demo_corpus_dir) -> Path:
    return demo_corpus_dir / "conv_a.mp4"


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs")


@pytest.fixture(scope="module")
def faces(stage_models):
    return stage_models.faces


@pytest.fixture(scope="module")
def made(conv_a, demo_corpus_dir, media_dir) -> dict[str, Path]:
    """The hard inputs other than 8K, each a few seconds of real footage (built in ~5 s)."""
    return {
        # conv_a's frames stored on their side, a display matrix turning them back
        "phone": mf.rotated(conv_a, media_dir / "phone.mp4", seconds=3.2),
        "plain": mf.upscaled(conv_a, media_dir / "plain.mp4", size=(640, 360), seconds=3.2, fps=25),
        # 25 fps for 2 s, then 5 fps; a hard cut from conv_a to mono at 3.0 s
        "vfr": mf.variable_rate(conv_a, demo_corpus_dir / "mono.mp4", media_dir / "vfr.mp4", cut_s=3.0, dense_until_s=2.0, sparse_fps=5, seconds=5.0),
        "late": mf.delayed_audio(conv_a, media_dir / "late.mp4", delay_s=1.5, seconds=8.0),
        "on_time": mf.delayed_audio(conv_a, media_dir / "on_time.mp4", delay_s=0.0, seconds=8.0),
        "one": mf.single_frame(conv_a, media_dir / "one_frame.mp4"),
        "dark": mf.near_black(conv_a, media_dir / "dark.mp4", seconds=4.0),
    }


# ---------------------------------------------------------------- 7680 x 4320
@pytest.fixture(scope="module")
def k8(conv_a, media_dir) -> tuple[Path, Path]:
    """3 s of conv_a scaled up 12x to 7680x4320 (4 frames a second: CI-sized), and the same
    frames at conv_a's 640x360."""
    big = mf.upscaled(conv_a, media_dir / "k8.mp4", size=K8, seconds=3.0, fps=4)
    small = mf.upscaled(conv_a, media_dir / "k8_small.mp4", size=(640, 360), seconds=3.0, fps=4)
    return big, small


def test_8k_video_is_decoded_at_a_bounded_working_size(k8, faces, shipped_models):
    """The vision stage's peak RSS grows by less than MAX_8K_GROWTH_MB, frames are at most
    decode_max_side, and boxes come back in source pixels: 12x the boxes found at 640x360."""
    big, small = k8
    run = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(big)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"8K vision: peak RSS {got['peak_mb']:.0f} MB, growth after model load {got['growth_mb']:.0f} MB")
    assert got["growth_mb"] < MAX_8K_GROWTH_MB, got
    assert got["size"] == list(K8)  # the source size as displayed, not the working size

    reference = _first_boxes(analyze_video("small", small, faces)["face_tracks"])
    found = sorted(got["boxes"])
    assert len(found) == len(reference) == 2, (found, reference)
    for b8, b in zip(found, reference):
        assert _iou(np.asarray(b8) / 12.0, b) > 0.8, (b8, b)

    max_side = VisionParams.from_thresholds().decode_max_side
    [pair] = list(iter_pairs(big, [4], 2, max_side=max_side))  # clip_quality's sampler
    assert max(pair.frame.shape[:2]) == max_side and pair.scale == max_side / K8[0]


def test_syncnet_crops_the_same_face_from_the_working_size_frames(k8, conv_a, faces):
    """SyncNet's face crops (source-pixel boxes scaled to the working frames) hold the same
    face as crops of the 640x360 frames; the backend runs end to end on a randomly initialised
    SyncNet (no SyncNet weights ship) over the 8K clip."""
    from assets.binding.sync import SyncWindow
    from assets.binding.syncnet import _net, crop_face, syncnet_sync
    from assets.vision.decode import FrameReader, video_fps

    big, small = k8
    tracks = analyze_video("small", small, faces)["face_tracks"]
    max_side = VisionParams.from_thresholds().decode_max_side
    with FrameReader(big, max_side=max_side) as r8, FrameReader(small) as r1:
        (_, img8), (_, img1) = next(iter(r8)), next(iter(r1))
        scale = r8.geometry.scale
    for box in tracks["boxes"].to_list():
        b = np.asarray(box[0])
        a, c = crop_face(img8, b * 12.0 * scale), crop_face(img1, b)
        assert np.corrcoef(a.astype(float).ravel(), c.astype(float).ravel())[0, 1] > 0.9

    scaled = tracks.with_columns(pl.col("boxes").list.eval(pl.element().list.eval(pl.element() * 12.0)))
    audio = decode_audio(conv_a)[: 3 * SAMPLE_RATE]
    windows = [SyncWindow(int(t), 0, "SPEAKER_00", 0, 12) for t in scaled["track_id"].to_list()]
    out = syncnet_sync(windows, scaled, audio, big, video_fps(big), max_offset=2, net=_net().eval(), max_side=max_side)
    assert set(out) == {(w.track_id, 0) for w in windows}


# ---------------------------------------------------------------- rotation metadata
def test_rotated_phone_video_boxes_are_upright_in_the_displayed_frame(made, faces):
    """conv_a's frames stored on their side (360x640) with a display matrix turning them back:
    ingest reports the displayed 640x360 and the vision stage finds the same upright faces, in
    the same displayed coordinates, as on the original frames."""
    side, plain = made["phone"], made["plain"]
    probe = probe_video(side)
    assert (probe.width, probe.height) == (640, 360)

    stats = VisionStats()
    turned = analyze_video("phone", side, faces, stats=stats)["face_tracks"]
    upright = analyze_video("plain", plain, faces)["face_tracks"]
    assert (stats.width, stats.height) == (640, 360)
    assert turned.height == upright.height == 2
    for a, b in zip(_first_boxes(turned), _first_boxes(upright)):
        assert _iou(a, b) > 0.9, (a, b)
    assert np.allclose(sorted(turned["person_box"].to_list()), sorted(upright["person_box"].to_list()), atol=0.01)


def test_release_crops_of_a_rotated_video_are_upright(made):
    """The release exporter crops a person box (normalised to the displayed frame) from the
    phone video: the same pixels as from the unrotated frames."""
    from assets.release import media as release_media

    box = release_media.crop_box([0.05, 0.05, 0.4, 0.9], 640, 360)
    crops = []
    for name in ("phone", "plain"):
        data, n = release_media.crop_mp4(made[name], 0.0, 1.0, box, None)
        with av.open(io.BytesIO(data)) as c:
            crops.append(np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)]).astype(np.float32))
        assert n == 25
    assert crops[0].shape == crops[1].shape == (25, box.h, box.w)
    assert np.abs(crops[0] - crops[1]).mean() < 3.0  # only the two encodes differ


# ---------------------------------------------------------------- variable frame rate
def test_variable_frame_rate_times_come_from_timestamps(made, faces):
    """25 fps for 2 s, then 5 fps; a hard cut from conv_a to mono at 3.0 s. The cut is the 55th
    frame, so index / average fps would put it at 4.1 s; on the timestamp grid the shot starts
    at 3.0 s and conv_a's face tracks end there."""
    path = made["vfr"]
    stats = VisionStats()
    out = analyze_video("vfr", path, faces, stats=stats)
    slot = 1.0 / stats.fps
    shots, tracks = out["shots"], out["face_tracks"]
    assert shots.height == 2, shots
    assert abs(shots["start"][1] - 3.0) <= slot, shots
    assert abs(shots["end"][1] - 4.8) <= 2 * slot  # the last frame is shown at 4.8 s
    first = tracks.filter(tracks["shot_id"] == 0)
    assert first.height == 2 and all(abs(e - 3.0) <= slot for e in first["end"].to_list()), first
    assert tracks.filter(tracks["shot_id"] == 1).height >= 1  # mono's face after the cut


# ---------------------------------------------------------------- audio starting after the video
def test_audio_starting_late_is_on_the_video_clock(made, stage_models):
    """conv_a's first 8 s with its audio stream starting 1.5 s after the video: the decoded
    audio is the on-time audio 1.5 s later, and the diarized turns move by 1.5 s with it."""
    a, b = decode_audio(made["late"]), decode_audio(made["on_time"])
    lead = int(1.5 * SAMPLE_RATE)
    assert np.abs(a[: lead - 800]).max() < 1e-3  # silence until the audio stream starts
    seg = b[SAMPLE_RATE : 3 * SAMPLE_RATE]
    lags = [float(np.dot(a[SAMPLE_RATE + k : SAMPLE_RATE + k + seg.size], seg)) for k in range(0, 2 * SAMPLE_RATE, 8)]
    assert abs(int(np.argmax(lags)) * 8 / SAMPLE_RATE - 1.5) < 0.005

    models = stage_models.audio

    def turns(audio):
        regions = run_vad(audio, models.vad, vad_params())
        return [(t.start, t.end) for t in run_diarization(audio, regions, models, diarization_params())]

    late_turns, on_time_turns = turns(a), turns(b)
    assert late_turns and min(s for s, _ in late_turns) >= 1.5 - 0.1
    first = min(s for s, _ in on_time_turns)
    print(f"first turn: on time {first:.2f} s, late audio {min(s for s, _ in late_turns):.2f} s")
    assert abs(min(s for s, _ in late_turns) - (max(first, 0.0) + 1.5)) < 0.15


# ---------------------------------------------------------------- a single frame, a near-black video
def test_single_frame_is_rejected_at_ingest_and_gives_empty_tracks(made, faces, local_lake):
    one = made["one"]
    out = ingest_file(str(one), "b-bad")
    assert out["reject"]["reason"] == "too_short", out
    res = analyze_video("one", one, faces)  # the stage itself copes too: one shot, no track
    assert res["shots"].select("start_frame", "end_frame").rows() == [(0, 1)]
    assert res["face_tracks"].height == 0


def test_near_black_video_is_ingested_and_has_no_face_tracks(made, faces, local_lake):
    """conv_a at 3 % brightness (pixel values up to ~8): a valid video, so no reject; no face
    is found and its one shot is kept whole (no fade invented), so it yields no clips."""
    dark = made["dark"]
    out = ingest_file(str(dark), "b-bad")
    assert out.get("reject") is None, out
    res = analyze_video("dark", dark, faces)
    assert res["shots"].select("start_frame", "end_frame").rows() == [(0, 100)]
    assert res["face_tracks"].height == 0


# ---------------------------------------------------------------- wrong extension
def test_wrong_extension_is_read_by_content(ingest_inputs, tmp_path, local_lake):
    """An MP4 named .avi, and one named .dat listed in a manifest (a folder scan only plans
    media extensions): both are ingested by what their bytes are, the container is the real
    one; a text file named .mp4 is the ``not_a_video`` reject (tests/test_lakehouse.py)."""
    root = tmp_path / "named"
    root.mkdir()
    shutil.copyfile(ingest_inputs["good_talking"], root / "talk.avi")
    shutil.copyfile(ingest_inputs["good_bikes"], root / "bikes.dat")
    (root / "list.csv").write_text("path\ntalk.avi\nbikes.dat\n")
    [batch] = plan_batches(str(root / "list.csv"), max_files=10)
    planned = lake.read("batch_files").filter(pl.col("batch_id") == batch)["source_uri"].to_list()
    assert sorted(planned) == [str(root / "bikes.dat"), str(root / "talk.avi")]
    for uri in planned:
        out = ingest_file(uri, batch)
        assert "video" in out, out
        assert out["video"]["container"].startswith("mov,mp4"), out["video"]["container"]


# ---------------------------------------------------------------- the batch finishes
def test_a_batch_of_hard_inputs_finishes_with_every_stage_ok(k8, made, tmp_path, shipped_models, monkeypatch):
    """The process_batch job (ingest and every per-video stage) on one batch of the hard inputs: the single
    frame is the only reject, every stage is ok for every other video (a reason where a video
    gave the stage nothing), and the lake holds the normalised geometry and times."""
    import dagster as dg

    from orchestration.definitions import build_defs
    from orchestration.resources import LakeResource, models_from_env

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = {"k8": k8[0], **{n: made[n] for n in ("phone", "vfr", "late", "one", "dark")}}
    for name, path in names.items():
        shutil.copyfile(path, inbox / f"{name}.mp4")
    uri = str(tmp_path / "lake")
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    (batch,) = plan_batches(str(inbox), 10, uri)
    defs = build_defs(resources={"lake": LakeResource(location=uri), "models": models_from_env(resolved=True)})
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("ingest_batches", [batch])
        job = defs.resolve_job_def("process_batch")
        # ingest and every per-video stage (the batch-level tiers, branches and report after
        # clip_quality read tables, not media: tests/test_pipeline.py runs them)
        later = {"clip_tiers", "sft_subset", "single", "dialogue_pairs", "listening_pairs", "multi_turn_chains", "multi_turn_context", "vidchat_testset", "dataset_report"}
        keys = [k for k in job.asset_layer.executable_asset_keys if k.to_user_string() not in later]
        assert job.execute_in_process(partition_key=batch, instance=instance, asset_selection=keys).success

    videos = lake.read("videos", uri)
    vid = {Path(u).stem: v for u, v in videos.select("source_uri", "video_id").iter_rows()}
    rejects = lake.read("rejects", uri)
    assert set(vid) == set(names) - {"one"}
    got = {(Path(u).stem, stage, reason) for u, stage, reason in rejects.select("source_uri", "stage", "reason").iter_rows()}
    assert got == {("one", "ingest", "too_short")} | {(n, "audio", "no_audio_stream") for n in ("k8", "phone", "vfr", "dark")}, got
    status = lake.read("stage_status", uri)
    assert set(status["status"]) == {"ok"}, status.filter(pl.col("status") != "ok")
    assert status.group_by("video_id").len()["len"].n_unique() == 1  # every stage ran for every video

    size = {Path(u).stem: (w, h) for u, w, h in videos.select("source_uri", "width", "height").iter_rows()}
    assert size["k8"] == K8 and size["phone"] == (640, 360)
    k8_boxes = np.concatenate([np.asarray(b) for b in lake.read("face_tracks", uri, video_ids=[vid["k8"]])["boxes"].to_list()])
    assert k8_boxes[:, 2].max() > 1920  # source pixels, not the working size
    assert lake.read("face_tracks", uri, video_ids=[vid["dark"]]).is_empty()
    assert abs(lake.read("shots", uri, video_ids=[vid["vfr"]]).sort("shot_id")["start"][1] - 3.0) < 0.1
    assert lake.read("speaker_turns", uri, video_ids=[vid["late"]])["start"].min() >= 1.4
