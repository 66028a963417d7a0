"""The SFT subset's data contract as a Great Expectations suite.

What a fine-tuning loader may rely on in ``sft_subset``: the declared columns, non-null keys,
unique clip ids, 3-14 s clips, a person box inside the frame, and every SFT threshold (plus
the filters a kept clip passed). Every limit is read from the same thresholds file the tier
SQL uses, so the contract and the decision cannot drift apart.

GX 1.x has no Polars engine: the frame is validated as pandas (stack-notes §5). The person
box is a list column, which GX cannot look into, so :func:`contract_frame` adds its four
numbers and its right/bottom edges as columns (prefixed ``bbox_``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from orchestration.tables import TABLES

SUITE_NAME = "sft_subset_contract"
BBOX_COLUMNS = ("bbox_len", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_right", "bbox_bottom")
# bbox is float32: x + w of a box clipped to the frame can land a rounding step above 1
BBOX_EDGE_TOLERANCE = 1e-6


def contract_frame(sft: pl.DataFrame) -> pl.DataFrame:
    """``sft`` with the person box spelled out as scalar columns GX can check."""
    box = pl.col("bbox")
    x, y, w, h = (box.list.get(i, null_on_oob=True).cast(pl.Float64) for i in range(4))
    return sft.with_columns(
        bbox_len=box.list.len(),
        bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h,
        bbox_right=x + w, bbox_bottom=y + h,
    )


def build_suite(t: dict[str, str]):
    """The contract suite from a thresholds file's name -> value (``orchestration.thresholds.load``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    v = lambda name: float(t[name])  # noqa: E731
    talking = {"row_condition": Column("is_talking") == True}  # noqa: E712 (a GX condition, not a comparison): rules on the clip's own speech
    columns = [*TABLES["sft_subset"].schema, *BBOX_COLUMNS]
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (
            "clip_id", "video_id", "start_seconds", "end_seconds", "duration", "is_talking", "bbox_len",
            "luminance", "visual_quality", "face_blur", "motion_score",
        )],
        gxe.ExpectColumnValuesToBeUnique(column="clip_id"),
        gxe.ExpectColumnValuesToBeBetween(column="duration", min_value=v("clip_min_s"), max_value=v("clip_max_s")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_seconds", column_B="start_seconds"),
        # person box [x, y, w, h], normalised: four numbers, inside the frame, not empty
        gxe.ExpectColumnValuesToBeInSet(column="bbox_len", value_set=[4]),
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0) for c in ("bbox_x", "bbox_y")],
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0, strict_min=True) for c in ("bbox_w", "bbox_h")],
        *[gxe.ExpectColumnValuesToBeBetween(column=c, max_value=1.0 + BBOX_EDGE_TOLERANCE) for c in ("bbox_right", "bbox_bottom")],
        # the SFT cut (strictly above each value)
        gxe.ExpectColumnValuesToBeBetween(column="face_blur", min_value=v("sft_face_blur_min"), strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="hand_blur", min_value=v("sft_hand_blur_min"), strict_min=True),  # null: no hand visible
        gxe.ExpectColumnValuesToBeBetween(column="visual_quality", min_value=v("sft_visual_quality_min"), strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="motion_score", min_value=v("sft_motion_score_min"), strict_min=True),
        gxe.ExpectColumnValuesToNotBeNull(column="avg_logprob", **talking),
        gxe.ExpectColumnValuesToBeBetween(column="avg_logprob", min_value=v("sft_avg_logprob_min"), strict_min=True, **talking),
        # the filters every kept clip passed (F3's lake-wide clarity rank is not a row property)
        gxe.ExpectColumnValuesToBeBetween(column="luminance", min_value=v("tier_luminance_min"), max_value=v("tier_luminance_max")),
        gxe.ExpectColumnValuesToBeBetween(column="no_speech_prob", max_value=v("tier_no_speech_prob_max"), **talking),
        gxe.ExpectColumnValuesToBeBetween(column="compression_ratio", max_value=v("tier_compression_ratio_max"), **talking),
        gxe.ExpectColumnValuesToBeInSet(column="language", value_set=t["tier_languages"].split()),
    ]
    for e in expectations:
        suite.add_expectation(e)
    return suite


@dataclass(frozen=True)
class Failure:
    expectation: str  # e.g. expect_column_values_to_be_between(duration)
    unexpected_count: int | None
    detail: str


@dataclass(frozen=True)
class ContractResult:
    success: bool
    evaluated: int
    rows: int
    failures: list[Failure]

    def markdown(self) -> str:
        if not self.failures:
            return f"all {self.evaluated} expectations met on {self.rows} rows"
        lines = ["| expectation | unexpected rows | detail |", "|---|---:|---|"]
        lines += [f"| {f.expectation} | {'' if f.unexpected_count is None else f.unexpected_count} | {f.detail} |" for f in self.failures]
        return "\n".join(lines)


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def validate(sft: pl.DataFrame, thresholds: dict[str, str]) -> ContractResult:
    """Validate ``sft`` (rows of the sft_subset table) against the contract built from ``thresholds``."""
    import great_expectations as gx

    # a fresh in-memory context per validation (~0.1 s): the suite depends on the thresholds
    # file, and nothing of one validation may linger into the next
    ctx = _context()
    suite = ctx.suites.add(build_suite(thresholds))
    batch = ctx.data_sources.add_pandas("lake").add_dataframe_asset("sft_subset").add_batch_definition_whole_dataframe("whole")
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    res = vd.run(batch_parameters={"dataframe": contract_frame(sft).to_pandas()}, result_format="SUMMARY")
    failures = []
    for r in res.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kw = cfg.kwargs
        target = kw.get("column") or (f"{kw['column_A']}>{kw['column_B']}" if "column_A" in kw else "table")
        detail = ""
        if r.exception_info and r.exception_info.get("raised_exception"):
            detail = str(r.exception_info.get("exception_message", ""))[:200]
        elif "observed_value" in (r.result or {}):
            detail = f"observed {r.result['observed_value']}"
        elif r.result.get("partial_unexpected_list"):
            detail = "e.g. " + ", ".join(str(x) for x in r.result["partial_unexpected_list"][:3])
        failures.append(Failure(f"{cfg.type}({target})", r.result.get("unexpected_count"), detail.replace("|", "\\|")))
    return ContractResult(bool(res.success), len(res.results), sft.height, failures)
