"""Dagster metadata derived from the table catalogue: the column schema the UI shows, row
counts under Dagster's own keys (so the asset catalogue lists them), and a small preview or
plot of what a person would rather look at than a number."""

from __future__ import annotations

import base64
import io

import dagster as dg
import polars as pl

from orchestration.tables import TABLES, TableSpec

PREVIEW_ROWS = 5


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c,
                type=str(t),
                description=spec.docs.get(c),
                constraints=dg.TableColumnConstraints(nullable=c not in spec.key, unique=spec.key == (c,)),
            )
            for c, t in spec.schema.items()
        ]
    )


def spec_metadata(table: str) -> dict:
    """Definition-time metadata of a table's asset: its columns and key."""
    spec = TABLES[table]
    return {"dagster/column_schema": column_schema(spec), "key": dg.MetadataValue.text(", ".join(spec.key))}


def asset_spec(table: str, **kw) -> dg.AssetSpec:
    """The AssetSpec of a catalogue table: description and column schema from the catalogue."""
    return dg.AssetSpec(table, description=kw.pop("description", TABLES[table].description), metadata=spec_metadata(table), **kw)


def markdown_table(df: pl.DataFrame, max_rows: int = PREVIEW_ROWS) -> str:
    """A markdown preview of the scalar columns of ``df`` (lists and embeddings left out)."""
    cols = [c for c, t in df.schema.items() if not isinstance(t, (pl.List, pl.Array, pl.Struct))]
    if not cols:
        return "(no scalar columns)"

    def cell(v) -> str:
        s = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        return (s[:40] + "…" if len(s) > 41 else s).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.select(cols).head(max_rows).iter_rows()]
    return "\n".join(lines)


def png_markdown(fig, alt: str = "plot") -> str:
    """A matplotlib figure as inline markdown: a base64 PNG data URI, which the Dagster UI's
    markdown view renders (its sanitizer allows data: image sources)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return f"![{alt}](data:image/png;base64," + base64.b64encode(buf.getvalue()).decode() + ")"


def plot(table: str, df: pl.DataFrame) -> str | None:
    """A small PNG (inline markdown) for the tables where a picture says more than rows."""
    if df.is_empty():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.4))
    try:
        if table == "shots":
            ax.hist((df["end"] - df["start"]).to_numpy(), bins=20)
            ax.set_xlabel("shot length (s)")
        elif table == "video_speakers":
            d = df.sort("speech_seconds", descending=True).head(20)
            ax.barh([f"{v[:6]}/{s}" for v, s in zip(d["video_id"], d["speaker_local"])], d["speech_seconds"].to_numpy())
            ax.set_xlabel("speaking seconds")
        elif table == "face_tracks":
            ax.hist((df["end"] - df["start"]).to_numpy(), bins=20)
            ax.set_xlabel("face track length (s)")
        elif table == "sync_scores":
            ax.scatter(df["offset"].to_numpy(), df["confidence"].to_numpy(), s=6)
            ax.set_xlabel("sync offset (frames)")
            ax.set_ylabel("confidence")
        elif table == "clip_quality":
            for col in ("visual_quality", "face_blur"):
                ax.hist(df[col].drop_nulls().to_numpy(), bins=20, range=(0, 1), alpha=0.6, label=col)
            ax.legend()
            ax.set_xlabel("score (0-1, higher is better)")
        elif table == "transcripts" and "avg_logprob" in df.columns:
            ax.hist(df["avg_logprob"].drop_nulls().to_numpy(), bins=20)
            ax.set_xlabel("Whisper avg_logprob")
        else:
            return None
        return png_markdown(fig)
    finally:
        plt.close(fig)


def materialization_metadata(table: str, written: pl.DataFrame | int, total_rows: int) -> dict:
    """Metadata of one materialization: rows written by this run, rows in the table, a
    preview and (where useful) a plot of the rows just written."""
    meta: dict = {"dagster/row_count": total_rows}
    if isinstance(written, pl.DataFrame):
        meta["dagster/partition_row_count"] = written.height
        if written.height:
            meta["preview"] = dg.MetadataValue.md(markdown_table(written))
            picture = plot(table, written)
            if picture:
                meta["plot"] = dg.MetadataValue.md(picture)
    else:
        meta["dagster/partition_row_count"] = int(written)
    return meta
