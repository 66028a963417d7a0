"""The dataset report: the paper's Figure 3 histograms (clip duration, source resolution, visual
quality, sync confidence, clips per speaker) and a summary of hours, clips and speaker ids per
branch, the SFT share, the hour yield from raw input and the reasons for what was dropped.

Everything is aggregated in DuckDB over the lake's views (sql/report.sql; histogram bins are
counted in SQL too), so a 5 M-clip lake never leaves DuckDB as rows: only bin counts and
per-branch totals reach Python. The Dagster wiring is ``assets/report/assets.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import polars as pl

from orchestration.lake import SQL_DIR, run_sql_file
from orchestration.metadata import png_markdown

REPORT_SQL = SQL_DIR / "report.sql"
KEPT_TIERS = ("pretrain", "sft")
BRANCHES = ("single", "dialogue_pairs", "listening_pairs", "multi_turn_context", "multi_turn_chains", "vidchat_testset")
BRANCH_TITLES = {
    "single": "single",
    "dialogue_pairs": "dialogue pairs",
    "listening_pairs": "listening pairs",
    "multi_turn_context": "multi-turn (context)",
    "multi_turn_chains": "multi-turn (chains)",
    "vidchat_testset": "VidChatBench test split",
}
# Resolution classes by the frame's shorter side (so portrait video lands with its landscape
# twin): the lower bound in pixels of each class, as video sites name them.
RESOLUTION_CLASSES = ((0, "<360p"), (360, "360p"), (480, "480p"), (720, "720p"), (1080, "1080p"), (1440, "1440p"), (2160, "2160p+"))
QUALITY_BINS = 20  # visual quality is in [0, 1]: 0.05-wide bins
SYNC_BINS = 20  # sync confidence has no fixed top: 20 bins up to the lake's largest value


@dataclass(frozen=True)
class Histogram:
    """Counts per bin (``label`` in bin order) and series (a tier, or ``speakers``)."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    counts: pl.DataFrame  # bin (int), label (str), series (str), count (int); every bin x series present


@dataclass(frozen=True)
class Report:
    tiers: pl.DataFrame  # tier, clips, hours, speaker_ids
    branches: pl.DataFrame  # branch, rows, clips, hours, sft_clips, sft_hours, speaker_ids
    yield_: dict  # videos, raw_hours, clip_hours, kept_hours, sft_hours
    clip_reasons: pl.DataFrame  # reason, clips, hours
    rejects: pl.DataFrame  # stage, reason, rejects, videos
    stage_status: pl.DataFrame  # stage, ok, ok_with_reason, error, pending
    histograms: tuple[Histogram, ...]

    @property
    def kept_clips(self) -> int:
        return int(self.tiers.filter(pl.col("tier").is_in(KEPT_TIERS))["clips"].sum())

    @property
    def kept_hours(self) -> float:
        return float(self.tiers.filter(pl.col("tier").is_in(KEPT_TIERS))["hours"].sum())

    def tier(self, tier: str) -> dict:
        return self.tiers.filter(pl.col("tier") == tier).row(0, named=True)

    @property
    def sft_share_clips(self) -> float | None:
        """SFT clips / kept clips (None for a lake without kept clips)."""
        return self.tier("sft")["clips"] / self.kept_clips if self.kept_clips else None

    @property
    def sft_share_hours(self) -> float | None:
        return self.tier("sft")["hours"] / self.kept_hours if self.kept_hours else None

    @property
    def hour_yield(self) -> float | None:
        """Hours of kept clips / hours of raw input video (None before any video)."""
        return self.yield_["kept_hours"] / self.yield_["raw_hours"] if self.yield_["raw_hours"] else None

    @property
    def failed_stage_videos(self) -> int:
        return int(self.stage_status["error"].sum())


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return pl.from_arrow(con.execute(sql).to_arrow_table())


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    cur = con.execute(sql)
    return dict(zip([d[0] for d in cur.description], cur.fetchone()))


def _limit(con: duckdb.DuckDBPyConnection, name: str) -> float:
    row = con.execute("SELECT CAST(value AS DOUBLE) FROM thresholds WHERE name = ?", [name]).fetchone()
    if row is None:
        raise KeyError(f"the thresholds file has no row {name!r}")
    return row[0]


def _complete(counts: pl.DataFrame, labels: list[str], series: tuple[str, ...]) -> pl.DataFrame:
    """Every bin x series, zero where SQL found nothing (so bars line up and empty bins show)."""
    grid = pl.DataFrame({"bin": list(range(len(labels))), "label": labels}).join(pl.DataFrame({"series": list(series)}), how="cross")
    return (
        grid.join(counts.select("bin", "series", "count"), on=["bin", "series"], how="left")
        .with_columns(pl.col("count").fill_null(0).cast(pl.Int64), pl.col("bin").cast(pl.Int64))
        .sort("bin", "series")
    )


def _equal_width(con: duckdb.DuckDBPyConnection, value: str, where: str, lo: float, hi: float, bins: int) -> pl.DataFrame:
    """Kept clips per tier in ``bins`` equal bins of ``value`` over [lo, hi]; values outside
    fall in the end bins (counted, never dropped); nulls are left out."""
    width = (hi - lo) / bins
    return _frame(
        con,
        f"""
        SELECT CAST(least(greatest(floor(({value} - {lo!r}) / {width!r}), 0), {bins - 1}) AS BIGINT) AS bin,
               tier AS series, count(*) AS count
        FROM report_kept_clips WHERE {value} IS NOT NULL AND {where}
        GROUP BY ALL
        """,
    )


def _edges_labels(lo: float, hi: float, bins: int, fmt: str) -> list[str]:
    width = (hi - lo) / bins
    return [f"{lo + i * width:{fmt}}-{lo + (i + 1) * width:{fmt}}" for i in range(bins)]


def duration_histogram(con: duckdb.DuckDBPyConnection) -> Histogram:
    """Clip length in 1 s bins over the clips stage's bounds (clip_min_s .. clip_max_s)."""
    lo, hi = _limit(con, "clip_min_s"), _limit(con, "clip_max_s")
    bins = max(1, math.ceil(hi - lo))
    counts = _equal_width(con, "duration", "true", lo, lo + bins, bins)
    return Histogram("duration", "Clip duration", "clip length (s)", "clips", _complete(counts, _edges_labels(lo, lo + bins, bins, "g"), KEPT_TIERS))


def resolution_histogram(con: duckdb.DuckDBPyConnection) -> Histogram:
    """Kept clips per resolution class of their source video (by the frame's shorter side)."""
    case = " ".join(f"WHEN least(width, height) >= {px} THEN {i}" for i, (px, _) in reversed(list(enumerate(RESOLUTION_CLASSES))))
    counts = _frame(
        con,
        f"SELECT CAST(CASE {case} END AS BIGINT) AS bin, tier AS series, count(*) AS count "
        "FROM report_kept_clips WHERE width IS NOT NULL AND height IS NOT NULL GROUP BY ALL",
    )
    labels = [label for _, label in RESOLUTION_CLASSES]
    return Histogram("resolution", "Source resolution", "source video resolution (shorter side)", "clips", _complete(counts, labels, KEPT_TIERS))


def quality_histogram(con: duckdb.DuckDBPyConnection) -> Histogram:
    counts = _equal_width(con, "visual_quality", "true", 0.0, 1.0, QUALITY_BINS)
    return Histogram("visual_quality", "Visual quality", "visual quality (0-1, higher is better)", "clips",
                     _complete(counts, _edges_labels(0.0, 1.0, QUALITY_BINS, ".2f"), KEPT_TIERS))


def sync_histogram(con: duckdb.DuckDBPyConnection) -> Histogram:
    """Lip-sync confidence of the kept talking clips (a listening clip's own lips do not speak)."""
    low, top = con.execute("SELECT min(sync_confidence), max(sync_confidence) FROM report_kept_clips WHERE is_talking").fetchone()
    lo = min(0.0, low if low is not None else 0.0)
    hi = max(math.ceil(top), lo + 1) if top is not None else 1.0
    counts = _equal_width(con, "sync_confidence", "is_talking", lo, hi, SYNC_BINS)
    return Histogram("sync_confidence", "Sync confidence", "lip-sync confidence (talking clips)", "clips",
                     _complete(counts, _edges_labels(lo, hi, SYNC_BINS, ".2g"), KEPT_TIERS))


def clips_per_speaker_histogram(con: duckdb.DuckDBPyConnection) -> Histogram:
    """Speakers by their number of kept clips, in powers-of-two bins (1, 2-3, 4-7, ...): the
    counts span orders of magnitude."""
    counts = _frame(
        con,
        """
        SELECT CAST(floor(log2(n)) AS BIGINT) AS bin, 'speakers' AS series, count(*) AS count
        FROM (SELECT speaker_id, count(*) AS n FROM report_kept_clips WHERE speaker_id IS NOT NULL GROUP BY speaker_id)
        GROUP BY ALL
        """,
    )
    bins = int(counts["bin"].max()) + 1 if counts.height else 1
    labels = ["1" if b == 0 else f"{2**b}-{2 ** (b + 1) - 1}" for b in range(bins)]
    return Histogram("clips_per_speaker", "Clips per speaker", "kept clips per speaker id", "speakers", _complete(counts, labels, ("speakers",)))


def build_report(con: duckdb.DuckDBPyConnection) -> Report:
    """The report of the lake behind ``con`` (a connection with the lake's views)."""
    run_sql_file(con, REPORT_SQL)
    order = {b: i for i, b in enumerate(BRANCHES)}
    return Report(
        tiers=_frame(con, "SELECT * FROM report_tiers").sort(pl.col("tier").replace_strict({"rejected": 0, "pretrain": 1, "sft": 2})),
        branches=_frame(con, "SELECT * FROM report_branches").sort(pl.col("branch").replace_strict(order)),
        yield_=_one(con, "SELECT * FROM report_yield"),
        clip_reasons=_frame(con, "SELECT * FROM report_clip_reasons ORDER BY clips DESC, reason"),
        rejects=_frame(con, "SELECT * FROM report_rejects ORDER BY rejects DESC, stage, reason"),
        stage_status=_frame(con, "SELECT * FROM report_stage_status ORDER BY stage"),
        histograms=(
            duration_histogram(con),
            resolution_histogram(con),
            quality_histogram(con),
            sync_histogram(con),
            clips_per_speaker_histogram(con),
        ),
    )


# ---------------------------------------------------------------- presentation
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _hours(h: float) -> str:
    """Hours readable at any lake size: 8,743.2 for the paper's, 0.0322 for a demo lake."""
    return f"{h:,.1f}" if h >= 10 else f"{h:.3g}"


def _md_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; float cells are hours."""

    def cell(v) -> str:
        return _hours(v) if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def summary_markdown(report: Report) -> str:
    """The report's numbers as markdown: yield, tiers, branches, and what was dropped why."""
    y = report.yield_
    sft = report.tier("sft")
    parts = [
        "## Yield",
        _md_table(
            ["", "hours", "share of raw input"],
            [
                [f"raw input ({y['videos']:,} videos)", y["raw_hours"], _pct(1.0 if y["raw_hours"] else None)],
                ["all clips cut", y["clip_hours"], _pct(y["clip_hours"] / y["raw_hours"] if y["raw_hours"] else None)],
                ["kept clips (pretrain + sft)", y["kept_hours"], _pct(report.hour_yield)],
                ["SFT clips", y["sft_hours"], _pct(y["sft_hours"] / y["raw_hours"] if y["raw_hours"] else None)],
            ],
        ),
        f"SFT share of kept clips: **{_pct(report.sft_share_clips)}** of clips ({sft['clips']:,} of {report.kept_clips:,}), "
        f"**{_pct(report.sft_share_hours)}** of hours ({_hours(sft['hours'])} h of {_hours(report.kept_hours)} h).",
        "## Tiers",
        _md_table(["tier", "clips", "hours", "speaker ids"], [[r["tier"], r["clips"], r["hours"], r["speaker_ids"]] for r in report.tiers.iter_rows(named=True)]),
        "## Branches",
        "rows: single clips, pairs, or chains; clips and hours: the distinct clips the rows use; SFT share: of those clips.",
        _md_table(
            ["branch", "rows", "clips", "hours", "speaker ids", "SFT clips", "SFT hours"],
            [
                [BRANCH_TITLES[r["branch"]], r["rows"], r["clips"], r["hours"], r["speaker_ids"],
                 _pct(r["sft_clips"] / r["clips"] if r["clips"] else None), _pct(r["sft_hours"] / r["hours"] if r["hours"] else None)]
                for r in report.branches.iter_rows(named=True)
            ],
        ),
        "## Clips rejected by the filters",
        "A clip failing several rules counts once for each.",
        _md_table(["rule", "clips", "hours"], [[r["reason"], r["clips"], r["hours"]] for r in report.clip_reasons.iter_rows(named=True)])
        if report.clip_reasons.height else "(none)",
        "## Rejected inputs and videos",
        _md_table(["stage", "reason", "rejects", "videos"], [[r["stage"], r["reason"], r["rejects"], r["videos"]] for r in report.rejects.iter_rows(named=True)])
        if report.rejects.height else "(none)",
        "## Per-video stages",
        "ok with reason: done, but the video gave the stage nothing to work on; error: failed (see stage_status.message).",
        _md_table(["stage", "ok", "ok with reason", "error", "pending"],
                  [[r["stage"], r["ok"], r["ok_with_reason"], r["error"], r["pending"]] for r in report.stage_status.iter_rows(named=True)])
        if report.stage_status.height else "(no per-video stage has run)",
    ]
    return "\n\n".join(parts)


def histogram_image(hist: Histogram) -> str:
    """``hist`` as an inline PNG (markdown): bars per bin, stacked by series (tier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _plot(plt, hist)
    try:
        return png_markdown(fig, alt=hist.title)
    finally:
        plt.close(fig)


def _plot(plt, hist: Histogram):
    labels = hist.counts.filter(pl.col("series") == hist.counts["series"][0])["label"].to_list()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    bottom = [0] * len(labels)
    for series, part in hist.counts.group_by("series", maintain_order=True):
        heights = part.sort("bin")["count"].to_list()
        ax.bar(range(len(labels)), heights, bottom=bottom, label=series[0])
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center", fontsize=7)
    ax.set_xlabel(hist.xlabel)
    ax.set_ylabel(hist.ylabel)
    ax.set_title(f"{hist.title} ({sum(bottom):,} {hist.ylabel})")
    if hist.counts["series"].n_unique() > 1:
        ax.legend(fontsize=7)
    return fig
