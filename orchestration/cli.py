"""``speakerlake`` console script: run | sql | status.

    speakerlake run SOURCE [--lake URI]      ingest SOURCE and materialize every stage per new batch
    speakerlake sql "SELECT ..." [--format table|csv|json|parquet] [--out FILE]
    speakerlake status                       row counts per table and the last batch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


class ReadOnlyError(ValueError):
    pass


# ---------------------------------------------------------------- sql
def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT / EXPLAIN (DuckDB parses it; no regex guessing)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as e:
        raise ReadOnlyError(f"cannot parse query: {e}") from e
    if not statements:
        raise ReadOnlyError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise ReadOnlyError(
                f"speakerlake sql is read-only: {kind} statements are refused "
                f"(write to the lake through the pipeline, re-tier by editing sql/thresholds.csv)"
            )


def run_sql(query: str, lake: str | None = None) -> pl.DataFrame:
    from orchestration.lake import duckdb_connection

    con = duckdb_connection(lake)
    check_read_only(con, query)
    return con.sql(query).pl()


def format_table(df: pl.DataFrame, max_width: int = 48) -> str:
    def cell(v) -> str:
        s = "NULL" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cols = df.columns
    rows = [[cell(v) for v in r] for r in df.iter_rows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    numeric = [df.schema[c].is_numeric() for c in cols]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    out.append(f"({df.height} row{'s' if df.height != 1 else ''})")
    return "\n".join(out)


def _cmd_sql(args) -> int:
    try:
        df = run_sql(args.query, args.lake)
    except ReadOnlyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except duckdb.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    fmt = args.format
    if fmt == "table":
        text = format_table(df)
    elif fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        text = json.dumps(df.to_dicts(), default=str, indent=1)
    elif fmt == "parquet":
        if not args.out:
            print("error: --format parquet needs --out FILE", file=sys.stderr)
            return 2
        df.write_parquet(args.out)
        print(f"wrote {df.height} rows to {args.out}")
        return 0
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {df.height} rows to {args.out}")
    else:
        print(text)
    return 0


# ---------------------------------------------------------------- status
def status_frame(lake: str | None = None) -> pl.DataFrame:
    from orchestration import lake as lk
    from orchestration.tables import TABLES

    rows = [{"table": t, "rows": lk.count(t, lake) if lk.table_exists(t, lake) else 0} for t in TABLES]
    return pl.DataFrame(rows)


def _cmd_status(args) -> int:
    from orchestration import lake as lk

    print(f"lake: {lk.lake_uri()}")  # SPEAKERLAKE_LAKE, resolved (main() sets it from --lake)
    print(format_table(status_frame(args.lake)))
    bf = lk.read("batch_files", args.lake)
    if bf.height:
        last = bf.sort("discovered_at").tail(1)
        b = last["batch_id"][0]
        print(f"last batch: {b} ({bf.filter(pl.col('batch_id') == b).height} files, discovered {last['discovered_at'][0]})")
    else:
        print("last batch: none")
    return 0


# ---------------------------------------------------------------- run
def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_source(source: str, lake: str | None = None, batch_size: int | None = None, *, parallel: bool = True) -> list[str]:
    """Plan new batches from ``source`` and materialize every asset for each.

    ``parallel`` (default on machines with 2+ cores) runs each batch with Dagster's
    multiprocess executor, so independent stages (audio and vision) run at the same time;
    otherwise the batch runs in this process, one stage after another.
    """
    if lake:
        os.environ["SPEAKERLAKE_LAKE"] = lake
    parallel = parallel and (os.cpu_count() or 1) > 1
    os.environ["SPEAKERLAKE_EXECUTOR"] = "multiprocess" if parallel else "in_process"
    import dagster as dg

    from assets.ingest.planning import plan_batches, planned_batches
    from orchestration.batch import completed_batches
    from orchestration.definitions import STAGES, defs
    from orchestration.partitions import ingest_batches
    from orchestration.settings import get_settings

    settings = get_settings()
    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:  # the multiprocess executor needs a persistent instance; a temporary one will do
        instance = dg.DagsterInstance.local_temp() if parallel else dg.DagsterInstance.ephemeral()
    new = plan_batches(source, batch_size or settings.batch_max_files)
    known = set(instance.get_dynamic_partitions(ingest_batches.name))
    job = defs.resolve_job_def("process_batch")
    # A batch is done when every stage recorded it in batch_status (in the lake, so this holds
    # without a persistent Dagster instance); anything else (new, or a run that crashed or
    # failed) runs again. Writes are idempotent, so rerunning is safe.
    done = completed_batches(STAGES)
    pending = [b for b in planned_batches() if b not in done]
    _progress(f"lake {settings.lake}: {len(new)} new batch(es) from {source}; {len(pending)} to run")
    if pending:
        instance.add_dynamic_partitions(ingest_batches.name, [b for b in pending if b not in known])
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for b in pending:
        t0 = time.perf_counter()
        _progress(f"batch {b}: running {len(job.asset_layer.executable_asset_keys)} assets")
        if parallel:
            recon = dg.build_reconstructable_job(
                "orchestration.definitions", "process_batch_job", reconstructor_working_directory=str(Path(__file__).resolve().parent.parent)
            )
            config = {**quiet, "execution": {"config": {"max_concurrent": os.cpu_count()}}}
            with dg.execute_job(recon, instance, run_config=config, tags={"dagster/partition": b}) as result:
                events, ok = list(result.all_events), result.success
        else:
            result = job.execute_in_process(partition_key=b, instance=instance, run_config=quiet, raise_on_error=False)
            events, ok = result.all_events, result.success
        for ev in events:
            if ev.event_type_value == "ASSET_MATERIALIZATION":
                mat = ev.event_specific_data.materialization
                meta = {k: v.value for k, v in mat.metadata.items()}
                _progress(f"  {mat.asset_key.to_user_string():<20} {meta}")
        if not ok:
            _progress(f"batch {b}: FAILED after {time.perf_counter() - t0:.1f}s (see `dagster` UI for the run log)")
            raise SystemExit(1)
        _progress(f"batch {b}: done in {time.perf_counter() - t0:.1f}s")
    return pending


def _cmd_run(args) -> int:
    run_source(args.source, args.lake, args.batch_size, parallel=not args.in_process)
    print()
    _cmd_status(argparse.Namespace(lake=args.lake))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="speakerlake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="ingest a folder / s3 prefix / manifest and process new batches")
    r.add_argument("source")
    r.add_argument("--lake", default=None, help="lake URI (default SPEAKERLAKE_LAKE or ./lake)")
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--in-process", action="store_true", help="run stages one after another in this process (no worker processes)")
    r.set_defaults(fn=_cmd_run)
    q = sub.add_parser("sql", help="read-only DuckDB SQL over the lake's tables")
    q.add_argument("query")
    q.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    q.add_argument("--out", default=None)
    q.add_argument("--lake", default=None)
    q.set_defaults(fn=_cmd_sql)
    s = sub.add_parser("status", help="row counts and the last batch")
    s.add_argument("--lake", default=None)
    s.set_defaults(fn=_cmd_status)
    args = p.parse_args(argv)
    # Model settings written by `make demo` (.env); the real environment wins.
    if Path(".env").is_file():
        from dotenv import load_dotenv

        load_dotenv(".env", override=False)
    if getattr(args, "lake", None):
        os.environ["SPEAKERLAKE_LAKE"] = args.lake
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
