"""Dagster wiring of the VidChatBench evaluator: multi-asset ``vidchat_eval`` (non-partitioned; tables
``vidchat_scores`` and ``vidchat_summary`` with their key checks) scores
a prediction folder, and the built-in ground_truth / static_frame sets, against the lake's
``vidchat_testset`` and writes ``vidchat_scores`` and ``vidchat_summary``. Job
``vidchat_eval`` runs it alone; the CLI (``speakerlake vidchat-eval``) calls :func:`run_vidchat_eval`.
Not part of the batch job: evaluating is a user's request with its own folder.
"""

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from assets.audio import diarization as diar
from assets.vidchat.evaluate import (
    BUILTIN_SETS,
    EvalModels,
    EvalParams,
    builtin_source,
    cut_references,
    evaluate,
    folder_source,
    summary,
)
from assets.binding.sync import load_sync_models
from assets.vidchat import features as feat
from assets.vision import load_vision_models
from orchestration import lake as lake_io
from orchestration.lake import sql_list
from orchestration.checks import key_check_results, key_check_specs
from orchestration.metadata import asset_spec, markdown_table, materialization_metadata
from orchestration.resources import LakeResource, ModelsResource
from orchestration.settings import require_path
from orchestration.thresholds import threshold

GROUP = "evaluation"
VIDCHAT_JOB = "score_predictions"  # not the asset's name: a job and an op may not share one
TURN_COLUMNS = ("video_id", "speaker_local", "start", "end")


class VidChatEvalConfig(dg.Config):
    pred_dir: str = Field(default="", description="folder with one <pair_id>.mp4 per test pair; empty: score only the built-in sets")
    name: str = Field(default="", description="prediction set name in the result tables (default: the folder's name)")
    builtins: bool = Field(default=True, description="also score the built-in reference sets (ground_truth, static_frame)")


def _configured(value: str | None) -> bool:
    return bool(value and str(value).strip())


def load_eval_models(models: ModelsResource) -> EvalModels:
    """The evaluator's models; an optional metric's model is loaded when its setting is given
    (a wrong path fails naming the setting), else the metric is reported skipped."""
    speaker = require_path(models.speaker_model, "speaker_model", what="resemblyzer speaker encoder (voice similarity)")
    return EvalModels(
        faces=load_vision_models(models.face_model_dir),
        voice_encoder=diar.load_voice_encoder(str(speaker)),
        sync=load_sync_models(models.sync_backend, models.syncnet_weights),
        fid=feat.load_fid_inception(models.fid_model) if _configured(models.fid_model) else None,
        fvd=feat.load_i3d(models.fvd_model) if _configured(models.fvd_model) else None,
        expression_fid=feat.load_expression_net(models.expression_model) if _configured(models.expression_model) else None,
        text=(
            feat.load_text_models(models.text_embedding_model_dir, models.asr_model_dir, models.asr_language, beam_size=int(threshold("asr_beam_size")))
            if _configured(models.text_embedding_model_dir)
            else None
        ),
    )


def folder_set(pred_dir: str, name: str | None = None) -> dict[str, str]:
    """{set name: folder} for one prediction folder (name defaults to the folder's name)."""
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    return {name or folder.resolve().name: str(folder)}


def run_vidchat_eval(
    lake: LakeResource,
    models: ModelsResource,
    folders: dict[str, str],
    *,
    builtins: bool,
    log: Callable[[str], None] = print,
    params: EvalParams | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score prediction ``folders`` ({set name: folder}) and, with ``builtins``, the built-in sets
    in one pass over the pairs (each reference is cut and analysed once); write them to the lake
    (a re-scored set replaces its rows). ``params``: default from sql/thresholds.csv and the
    ``sync_backend`` setting. Returns (scores, summary)."""
    reserved = set(folders) & set(BUILTIN_SETS)
    if reserved:
        raise ValueError(f"prediction set names {sorted(reserved)} are reserved for the built-in sets; pass another name")
    params = params or EvalParams.from_thresholds(models.sync_backend or "mouth")
    sets = {name: folder_source(Path(folder), params) for name, folder in folders.items()}
    if builtins:
        sets.update({b: builtin_source(b) for b in BUILTIN_SETS})
    if not sets:
        raise ValueError("nothing to score: give a prediction folder or keep the built-in sets")
    testset = lake.read("vidchat_testset")
    if testset.is_empty():
        raise ValueError(f"the lake {lake.uri} has no vidchat_testset pairs: run the branches first")
    ids = testset["video_id"].unique().to_list()
    eval_models = load_eval_models(models)
    with tempfile.TemporaryDirectory(prefix="speakerlake-vidchat-") as work:
        refs = cut_references(
            testset,
            lake.read("clips", video_ids=ids),
            lake.read("videos", video_ids=ids),
            lake.scan("speaker_turns").select(TURN_COLUMNS).filter(pl.col("video_id").is_in(ids)).collect(),
            lake_io.local_copy,
            Path(work),
        )
        scores = evaluate(sets, refs, eval_models, params, log=log)
    summ = summary(scores, datetime.now(UTC))
    # a re-scored set replaces every row it had (its pairs may have changed)
    lake.delete_where("vidchat_scores", f"prediction_set IN ({sql_list(sets)})")
    lake.write("vidchat_scores", scores)
    lake.write("vidchat_summary", summ)
    return scores, summ


@dg.multi_asset(
    name="vidchat_eval",
    specs=[
        asset_spec("vidchat_scores", deps=["vidchat_testset", "clips"], group_name=GROUP, kinds={"delta", "insightface"}),
        asset_spec("vidchat_summary", deps=["vidchat_scores"], group_name=GROUP, kinds={"delta"}),
    ],
    check_specs=key_check_specs(["vidchat_scores", "vidchat_summary"]),
)
def vidchat_eval(context: dg.AssetExecutionContext, config: VidChatEvalConfig, lake: LakeResource, models: ModelsResource):
    """VidChatBench: scores a prediction folder (<pair_id>.mp4 per test pair) and the built-in ground_truth and
    static_frame sets against the reference responder clips: PSNR, SSIM, ArcFace identity, landmark error, lip-sync
    confidence and offset (the configured sync backend), voice similarity; FID / FVD / expression FID / dialogue
    coherence when their models are configured (else reported skipped with the setting to set)."""
    folders = folder_set(config.pred_dir, config.name or None) if config.pred_dir else {}
    scores, summ = run_vidchat_eval(lake, models, folders, builtins=config.builtins, log=context.log.info)
    table = summ.drop("not_scored_pairs", "skipped_metrics", "evaluated_at")
    yield dg.MaterializeResult(
        asset_key="vidchat_scores",
        metadata={
            **materialization_metadata("vidchat_scores", scores, lake.count("vidchat_scores")),
            "not_scored": dg.MetadataValue.md("\n".join(f"- {s}: {p}" for s, ps in summ.select("prediction_set", "not_scored_pairs").iter_rows() for p in ps) or "(none)"),
        },
    )
    yield dg.MaterializeResult(
        asset_key="vidchat_summary",
        metadata={**materialization_metadata("vidchat_summary", summ, lake.count("vidchat_summary")), "sets": dg.MetadataValue.md(markdown_table(table, max_rows=table.height))},
    )
    yield from key_check_results("vidchat_scores", scores)
    yield from key_check_results("vidchat_summary", summ)


vidchat_eval_job = dg.define_asset_job(
    VIDCHAT_JOB,
    selection=dg.AssetSelection.assets("vidchat_scores", "vidchat_summary"),
    description="Score a prediction folder against the VidChatBench test split (run config: pred_dir, name, builtins).",
)
