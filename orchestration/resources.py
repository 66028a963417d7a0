"""Dagster resources: where the lake is, where the models are, which thresholds file the
dataset-wide tiers read.

All are ``ConfigurableResource``s, so the launchpad shows every field and a run can override
it. :func:`default_resources` fills them from the environment with ``dg.EnvVar`` (the
variables named in :data:`orchestration.settings.MODEL_SETTINGS`, ``SPEAKERLAKE_LAKE``), so
existing settings keep working. A model setting that is not in the environment stays unset
and the stage that needs it fails at setup, naming the variable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from assets.audio.pipeline import AudioModelSettings
from orchestration import lake as lake_io
from orchestration.settings import MODEL_SETTINGS, resolve_lake
from orchestration.thresholds import THRESHOLDS_CSV, load


def _setting_field(name: str, default=None):
    s = MODEL_SETTINGS[name]
    return Field(default=default, description=f"{s.description} (env {s.env})")


class ModelsResource(dg.ConfigurableResource):
    """Every model location and backend choice. Nothing is downloaded: each is a local path."""

    face_model_dir: str | None = _setting_field("face_model_dir")
    asr_model_dir: str | None = _setting_field("asr_model_dir")
    align_model_dir: str | None = _setting_field("align_model_dir")
    vad_model: str | None = _setting_field("vad_model")
    speaker_model: str | None = _setting_field("speaker_model")
    segmentation_model: str | None = _setting_field("segmentation_model")
    pyannote_dir: str | None = _setting_field("pyannote_dir")
    asr_language: str | None = _setting_field("asr_language")
    sync_backend: str | None = _setting_field("sync_backend", "mouth")
    syncnet_weights: str | None = _setting_field("syncnet_weights")
    dover_onnx: str | None = _setting_field("dover_onnx")
    vlm_model_dir: str | None = _setting_field("vlm_model_dir")
    topic_llm_dir: str | None = _setting_field("topic_llm_dir")
    fid_model: str | None = _setting_field("fid_model")
    fvd_model: str | None = _setting_field("fvd_model")
    expression_model: str | None = _setting_field("expression_model")
    text_embedding_model_dir: str | None = _setting_field("text_embedding_model_dir")

    def audio(self) -> AudioModelSettings:
        return AudioModelSettings(
            vad_model=self.vad_model,
            asr_model_dir=self.asr_model_dir,
            speaker_model=self.speaker_model,
            segmentation_model=self.segmentation_model,
            pyannote_dir=self.pyannote_dir,
            align_model_dir=self.align_model_dir,
            asr_language=self.asr_language,
        )

    def fingerprint(self) -> str:
        """What a video's results depend on besides its bytes: every model setting and the
        thresholds file. Stored per video and stage (``stage_status.fingerprint``) so results
        of an older configuration can be found with SQL."""
        h = hashlib.sha256()
        for name in sorted(MODEL_SETTINGS):
            h.update(f"{name}={getattr(self, name)}\n".encode())
        h.update(THRESHOLDS_CSV.read_bytes())
        return h.hexdigest()[:16]


class LakeResource(dg.ConfigurableResource):
    """The lake: a local folder or ``s3://bucket/prefix``. S3 credentials come only from the
    standard AWS_* environment variables (never from config, never logged)."""

    location: str = Field(default="lake", description="lake location: a folder or s3://bucket/prefix (env SPEAKERLAKE_LAKE)")

    @property
    def uri(self) -> str:
        return resolve_lake(self.location)

    def scan(self, table: str) -> pl.LazyFrame:
        return lake_io.scan(table, self.uri)

    def read(self, table: str, *, video_ids: Iterable[str] | None = None) -> pl.DataFrame:
        return lake_io.read(table, self.uri, video_ids=video_ids)

    def write(self, table: str, df: pl.DataFrame, *, video_ids: Iterable[str] | None = None) -> int:
        return lake_io.write(table, df, video_ids=video_ids, lake=self.uri)

    def delete_where(self, table: str, predicate: str) -> int:
        return lake_io.delete_where(table, predicate, self.uri)

    def count(self, table: str) -> int:
        return lake_io.count(table, self.uri)

    def duckdb_connection(self, thresholds_csv: str | None = None) -> duckdb.DuckDBPyConnection:
        """DuckDB with a view per table; the ``thresholds`` view reads ``thresholds_csv``
        (default: the shipped sql/thresholds.csv)."""
        return lake_io.duckdb_connection(self.uri, thresholds_csv=thresholds_csv or THRESHOLDS_CSV)


class ThresholdsResource(dg.ConfigurableResource):
    """The thresholds file the tier assets (and their Great Expectations contract) read. Point
    it at an edited copy in the launchpad to re-cut the tiers without touching the shipped file
    or rerunning any model stage (job ``retier``)."""

    path: str = Field(default=str(THRESHOLDS_CSV), description="thresholds CSV (name,value,stage,description)")

    def values(self) -> dict[str, str]:
        return load(self.path)


def models_from_env(environ: Mapping[str, str] | None = None, *, resolved: bool = False) -> ModelsResource:
    """A models resource whose set fields come from the environment: ``dg.EnvVar`` (resolved
    when a run starts, shown as such in the launchpad), or the values themselves with
    ``resolved`` (scripts, tests and the benchmark calling stage functions directly). Fields
    whose variable is unset keep their default."""
    env = os.environ if environ is None else environ
    return ModelsResource(**{name: env[s.env] if resolved else dg.EnvVar(s.env) for name, s in MODEL_SETTINGS.items() if env.get(s.env)})


def lake_from_env(environ: Mapping[str, str] | None = None) -> LakeResource:
    env = os.environ if environ is None else environ
    return LakeResource(location=dg.EnvVar("SPEAKERLAKE_LAKE")) if env.get("SPEAKERLAKE_LAKE") else LakeResource()


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"lake": lake_from_env(), "models": models_from_env(), "thresholds": ThresholdsResource()}
