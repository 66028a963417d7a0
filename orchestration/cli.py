"""``speakerlake`` console script: run | sql | status | takedown | maintain.

    speakerlake run [SOURCE] [--lake URI] [--retry-failed]   plan SOURCE's new files, run every batch with work left
    speakerlake sql "SELECT ..." [--format table|csv|json|parquet] [--out FILE]
    speakerlake sql "SELECT ..." --as-of VERSION|TIME   the same over the tables as of a Delta version or time
    speakerlake status                       row counts per table and the last batch
    speakerlake takedown --video ID | --speaker ID [--reason TEXT] [--vacuum]
                                             remove it and everything derived from it; keep it out afterwards
    speakerlake maintain [--retention-hours H]  compact, checkpoint and vacuum every table
    speakerlake vidchat-eval --pred DIR [--name NAME] [--out results.parquet] [--lake URI]
                                             score <pair_id>.mp4 predictions against the VidChatBench test split
    speakerlake baseline train [--tier sft | --where SQL] [--ckpt DIR] [--steps N] [--lake URI]
    speakerlake baseline generate --out DIR [--ckpt DIR] [--lake URI]
                                             the reference responder: train on dialogue pairs, write test-split mp4s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
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


def parse_as_of(value: str | None) -> int | datetime | None:
    """``--as-of``: a Delta version number, or an ISO time (UTC when it has no zone)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--as-of {value!r}: expected a version number or an ISO time (2026-11-29T10:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run_sql(query: str, lake: str | None = None, as_of: int | datetime | None = None) -> pl.DataFrame:
    from orchestration.lake import duckdb_connection

    con = duckdb_connection(lake, as_of=as_of)
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
        df = run_sql(args.query, args.lake, args.as_of)
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

    print(f"lake: {lk.lake_uri(args.lake)}")
    print(format_table(status_frame(args.lake)))
    bf = lk.read("batch_files", args.lake)
    if bf.height:
        last = bf.sort("discovered_at").tail(1)
        b = last["batch_id"][0]
        print(f"last batch: {b} ({bf.filter(pl.col('batch_id') == b).height} files, discovered {last['discovered_at'][0]})")
        st = lk.read("stage_status", args.lake)
        if st.height:
            print(format_table(st.group_by("stage", "status").agg(videos=pl.len()).sort("stage", "status")))
    else:
        print("last batch: none")
    return 0


# ---------------------------------------------------------------- vidchat-eval
def _cmd_vidchat_eval(args) -> int:
    from assets.vidchat.assets import folder_set, run_vidchat_eval
    from orchestration.lake import lake_uri
    from orchestration.resources import LakeResource, models_from_env
    from orchestration.settings import MissingSettingError

    lake = LakeResource(location=lake_uri(args.lake))
    try:
        scores, summ = run_vidchat_eval(lake, models_from_env(resolved=True), folder_set(args.pred, args.name), builtins=not args.no_builtins, log=_progress)
    except (MissingSettingError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(summ.drop("not_scored_pairs", "skipped_metrics", "evaluated_at")))
    for name, pairs, skipped in summ.select("prediction_set", "not_scored_pairs", "skipped_metrics").iter_rows():
        for p in pairs:
            print(f"{name}: not scored {p}")
        if skipped:
            print(f"{name}: skipped " + "; ".join(skipped))
    if args.out:
        scores.write_parquet(args.out)
        print(f"wrote {scores.height} rows to {args.out}")
    return 0


# ---------------------------------------------------------------- baseline
def _cmd_baseline(args) -> int:
    from assets.train import baseline as bl
    from assets.train.responder import TrainConfig, load, pick_device, train
    from assets.vision import load_vision_models
    from orchestration.lake import lake_uri
    from orchestration.resources import models_from_env
    from orchestration.settings import MissingSettingError

    uri = lake_uri(args.lake)
    try:
        device = pick_device(args.device)
        faces = load_vision_models(models_from_env(resolved=True).face_model_dir)
    except (MissingSettingError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _progress(f"device {device}")
    if args.action == "train":
        cfg = TrainConfig(steps=args.steps, save_every=args.save_every, fps=args.fps, hidden=args.hidden, seed=args.seed)
        pairs = bl.lake_pairs(bl.train_pairs_sql(args.tier, args.where), uri, fps=args.fps, size=(args.size, args.size))
        feats = bl.collect_features(faces, pairs, args.fps, log=_progress)
        if not feats:
            print(f"error: no training pairs in {uri} for tier {args.tier!r} / where {args.where!r} (the demo lake may have no sft pairs: try --tier pretrain)", file=sys.stderr)
            return 2
        _progress(f"{len(feats)} training pairs, {sum(len(f.resp_audio) for f in feats)} responder frames")
        res = train(feats, Path(args.ckpt), cfg, device=device, resume=not args.no_resume, log=_progress)
        print(json.dumps(res))
        return 0
    if not args.out:
        print("error: baseline generate needs --out DIR", file=sys.stderr)
        return 2
    trained = load(Path(args.ckpt), device)
    pairs = bl.lake_pairs(bl.TEST_PAIRS_SQL, uri, fps=trained.config.fps, size=(args.size, args.size))
    done = bl.generate(trained, faces, pairs, Path(args.out), device, log=_progress)
    _progress(f"{sum(g.path is not None for g in done)} of {len(done)} test pairs written to {args.out}; score them with: speakerlake vidchat-eval --pred {args.out}")
    return 0


# ---------------------------------------------------------------- run
def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _instance():
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:  # runs are launched in their own process, which needs a persistent instance; a temporary one will do
        instance = dg.DagsterInstance.local_temp()
        ensure_pools(instance)
        return instance
    # Two `speakerlake run` started together on a new DAGSTER_HOME would both create its SQLite
    # schema ("table snapshots already exists"): the first one in creates it, the other waits.
    import fcntl

    Path(home).mkdir(parents=True, exist_ok=True)
    with open(Path(home) / ".speakerlake-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # touches (creates) the run storage
        ensure_pools(instance)
    return instance


def ensure_pools(instance) -> None:
    """The speaker-id asset runs one at a time across all runs of the instance (pool of 1)."""
    from assets.binding.assets import SPEAKER_IDS_STAGE

    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits and storage.get_concurrency_info(SPEAKER_IDS_STAGE).slot_count != 1:
        storage.set_concurrency_slots(SPEAKER_IDS_STAGE, 1)


def _report(events) -> list[str]:
    """Progress lines for materializations; the messages of failed steps."""
    failures = []
    for ev in events:
        dagster_event = ev.dagster_event
        if dagster_event is None:
            continue
        if dagster_event.event_type_value == "ASSET_MATERIALIZATION":
            mat = dagster_event.event_specific_data.materialization
            shown = {k: v.value for k, v in mat.metadata.items() if k in ("dagster/partition_row_count", "dagster/row_count", "videos", "failed_videos") or k.startswith("reason_")}
            _progress(f"  {mat.asset_key.to_user_string():<20} {shown}")
        elif dagster_event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev_data = dagster_event.event_specific_data
            if not ev_data.passed:
                _progress(f"  check failed: {ev_data.asset_key.to_user_string()}.{ev_data.check_name} {ev_data.metadata.get('first_offenders') or ev_data.metadata.get('first_keys') or ''}")
        elif dagster_event.event_type_value == "STEP_FAILURE":
            err = dagster_event.event_specific_data.error
            failures.append(f"{dagster_event.step_key}: {err.cause.message.strip() if err.cause else err.message.strip()}")
    return failures


@contextmanager
def local_dask_cluster(workers: int) -> Iterator[str]:
    """A Dask cluster of ``workers`` worker processes (one thread each) on this machine, for
    one `speakerlake run`; yields its scheduler address.

    The workers live as long as the invocation, so every batch after the first finds the
    models it needs already loaded in them (the stages cache loaded models per process),
    where the multiprocess executor forks new step processes per run and loads them again.
    """
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, preload=["orchestration.dask_executor"]) as cluster:
        yield cluster.scheduler_address


def run_source(
    source: str | None,
    lake: str | None = None,
    batch_size: int | None = None,
    *,
    parallel: bool = True,
    retry_failed: bool = False,
    workers: int | None = None,
) -> list[str]:
    """Plan new batches from ``source`` and run every batch that still has work.

    Runs are launched through the Dagster instance from the workspace's code location, so
    they show up in the UI under ``process_batch``. The lake and the executor are passed as
    run config (``resources.lake``, ``execution``); model settings come from the environment
    (or ``.env``) through the ``models`` resource. A batch has work when it was never
    ingested or a video is pending in some stage (a crash, a setup failure); with
    ``retry_failed`` also when a stage failed on some of its videos, and then only those
    videos are run again. Then one run of job ``retier`` recomputes the dataset-wide tables
    (tiers, branches, report), also when an earlier invocation died before doing so.

    ``workers``: run the steps on a local Dask cluster of that many worker processes, kept for
    the whole invocation, so models are loaded once per worker rather than once per batch run.
    """
    from assets.ingest.planning import plan_batches, planned_batches
    from assets.tiers.assets import dataset_stale
    from orchestration.batch import batch_work
    from orchestration.execution import execution_config
    from orchestration.launch import workspace_launcher
    from orchestration.partitions import ingest_batches
    from orchestration.sensors import PROCESS_JOB
    from orchestration.settings import get_settings, resolve_lake

    settings = get_settings()
    lake_uri = resolve_lake(lake) if lake else settings.lake
    parallel = parallel and (os.cpu_count() or 1) > 1
    instance = _instance()
    new = plan_batches(source, batch_size or settings.batch_max_files, lake_uri) if source else []
    planned = planned_batches(lake_uri)
    todo = batch_work(planned, lake_uri, retry_failed=retry_failed)  # batch -> stage -> videos (None: everything)
    _progress(f"lake {lake_uri}: {len(new)} new batch(es){' from ' + source if source else ''}; {len(todo)} to run")
    known = set(instance.get_dynamic_partitions(ingest_batches.name))
    missing = [b for b in todo if b not in known]
    if missing:
        instance.add_dynamic_partitions(ingest_batches.name, missing)
    if not todo and not dataset_stale(lake_uri):
        return []
    with ExitStack() as stack:
        if workers:
            # set before the workers start (they rebuild the job per step) and before the code server
            stack.enter_context(_environ(SPEAKERLAKE_EXECUTOR="dask"))
            address = stack.enter_context(local_dask_cluster(workers))
            stack.enter_context(_environ(SPEAKERLAKE_DASK_SCHEDULER=address))
            _progress(f"local Dask cluster of {workers} worker processes at {address}")
        # with SPEAKERLAKE_EXECUTOR=dask both are the cluster (a Dask job has no in-process choice)
        execution, in_one_process = execution_config(parallel=parallel), execution_config(parallel=False)
        base = {
            **execution,
            "resources": {"lake": {"config": {"location": lake_uri}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        }
        launcher = stack.enter_context(workspace_launcher(instance, PROCESS_JOB))
        try:
            _run_batches(launcher, todo, base, in_one_process, lake_uri, first=new, retry_failed=retry_failed)
        except KeyboardInterrupt:
            _stop_on_interrupt(launcher)
    return sorted(todo)


def _stop_on_interrupt(launcher) -> None:
    """Ctrl-C: stop the run being waited for rather than leave it working unseen (a terminal's
    Ctrl-C also reaches the run's own process, a `kill -INT` of this one alone does not), say
    what stays pending, exit 130. A second Ctrl-C exits without waiting."""
    run_id = launcher.waiting
    status = "none was running"
    if run_id is not None:
        try:
            launcher.instance.run_launcher.terminate(run_id)
        except Exception:  # the code server took the Ctrl-C too and is gone; the run's process got it as well
            pass
        try:
            status = f"run {run_id}: {launcher.wait_until_finished(run_id, timeout_s=60).status.value}"
        except KeyboardInterrupt:
            status = f"run {run_id}: not waited for"
    _progress(f"interrupted ({status}); what the run did not finish stays pending: `speakerlake run` resumes it")
    raise SystemExit(130)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_and_wait(launcher, config: dict, tags: dict, label: str, on_failure: str) -> None:
    t0 = time.perf_counter()
    run_id = launcher.launch(config, tags)
    _progress(f"{label}: run {run_id}")
    _wait_and_report(launcher, run_id, label, on_failure, t0)


def _wait_and_report(launcher, run_id: str, label: str, on_failure: str, t0: float) -> None:
    outcome = launcher.wait(run_id)
    failures = _report(outcome.events)
    if not outcome.success:
        for f in failures:
            _progress(f"  FAILED {f}")
        _progress(f"{label}: FAILED after {time.perf_counter() - t0:.1f}s; {on_failure} (run {run_id} in the UI)")
        raise SystemExit(1)
    _progress(f"{label}: done in {time.perf_counter() - t0:.1f}s")


def _run_batches(launcher, todo: dict, base: dict, in_one_process: dict, lake_uri: str, *, first: list[str], retry_failed: bool) -> None:
    """Run each batch of ``todo``: this invocation's new batches (``first``), then the older
    ones in time order, which another `speakerlake run` may be processing meanwhile."""
    from assets.tiers.assets import RETIER_JOB
    from orchestration.batch import batch_work
    from orchestration.launch import earlier_live_run, live_run_of_batch
    from orchestration.sensors import retry_run_config

    order = [b for b in first if b in todo] + sorted(b for b in todo if b not in first)
    batches_done = time.time()
    for i, b in enumerate(order):
        work = todo[b]
        if b not in first:
            live = live_run_of_batch(launcher.instance, b)
            if live is not None:
                _progress(f"batch {b}: another `speakerlake run` is processing it (run {live[0]}, {_worker(live[1])}); not run twice")
                continue
            if i > 0:  # what is left may have changed while the batches before it ran
                left = batch_work([b], lake_uri, retry_failed=retry_failed)
                if b not in left:
                    _progress(f"batch {b}: done meanwhile by another run")
                    continue
                work = left[b]
        config = {**base, **(retry_run_config(work) if work is not None else {})}
        what = "every video" if work is None else "work left: " + ", ".join(f"{s} {len(v)}" for s, v in work.items() if v)
        _run_and_wait(launcher, config, {"dagster/partition": b, "speakerlake/batch": b}, f"batch {b} ({what})", "its videos stay pending")
        batches_done = time.time()
    # the dataset-wide tables (tiers, branches, report) once after all batches, not per batch;
    # their steps run one after another, so in one process. When another `speakerlake run`
    # created its run of them after these batches had ended (and before this one's), that run
    # reads what they wrote: this invocation waits for it instead of computing the same tables
    # beside it, and deletes its own run unlaunched.
    label = f"dataset tables (job {RETIER_JOB})"
    on_failure = "the batches are done; the dataset tables stay stale until `speakerlake run` succeeds"
    t0 = time.perf_counter()
    run_id = launcher.create({**base, **in_one_process}, {"speakerlake/after_batches": str(len(todo))}, job_name=RETIER_JOB)
    live = earlier_live_run(launcher.instance, run_id, created_after=batches_done)
    if live is not None:
        launcher.instance.delete_run(run_id)
        _progress(f"{label}: run {live[0]} ({_worker(live[1])}) of another `speakerlake run`, launched after this one's batches, computes them; waiting for it")
        run_id = live[0]
    else:
        launcher.start(run_id)
        _progress(f"{label}: run {run_id}")
    _wait_and_report(launcher, run_id, label, on_failure, t0)


def _worker(pid: int | None) -> str:
    return "its process not started yet" if pid is None else f"pid {pid}"


def _cmd_run(args) -> int:
    run_source(args.source, args.lake, args.batch_size, parallel=not args.in_process, retry_failed=args.retry_failed, workers=args.workers)
    print()
    _cmd_status(argparse.Namespace(lake=args.lake))
    return 0


def _cmd_takedown(args) -> int:
    from assets.operations.execute import UnknownTarget, take_down, vacuum_lake
    from orchestration.resources import LakeResource
    from orchestration.settings import get_settings, resolve_lake

    lake = LakeResource(location=resolve_lake(args.lake) if args.lake else get_settings().lake)
    targets = [("video", v) for v in args.video] + [("speaker", s) for s in args.speaker]
    if not targets and not args.vacuum:
        print("error: give --video ID, --speaker ID and/or --vacuum", file=sys.stderr)
        return 2
    for kind, target in targets:
        try:
            report = take_down(lake, kind, target, reason=args.reason, releases=args.release or None)
        except UnknownTarget as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        removed = {t: n for t, n in report.rows_removed.items() if n}
        print(f"{report.takedown_id}: {sum(removed.values())} rows removed {removed}; {len(report.files_removed)} files removed")
    if args.vacuum:
        deleted = vacuum_lake(lake)
        print(f"vacuum (retention 0): {sum(deleted.values())} data files deleted; earlier versions are no longer readable")
    return 0


def _cmd_maintain(args) -> int:
    from assets.operations.maintenance import maintain_lake
    from orchestration.settings import get_settings, resolve_lake

    uri = resolve_lake(args.lake) if args.lake else get_settings().lake
    for table, counts in maintain_lake(uri, retention_hours=args.retention_hours).items():
        if counts["files_before"]:
            print(f"{table:<22} files {counts['files_before']} -> {counts['files_after']}, {counts['files_vacuumed']} vacuumed")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="speakerlake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="ingest a folder / s3 prefix / manifest (optional) and run every batch with work left")
    r.add_argument("source", nargs="?", default=None)
    r.add_argument("--lake", default=None, help="lake URI (default SPEAKERLAKE_LAKE or ./lake)")
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--in-process", action="store_true", help="run all stages of a batch in one process, one after another")
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run the steps on a local Dask cluster of this many worker processes kept for the whole invocation: models load once per worker, not once per batch",
    )
    r.add_argument("--retry-failed", action="store_true", help="also rerun exactly the videos a stage failed on (after fixing the cause)")
    r.set_defaults(fn=_cmd_run)
    q = sub.add_parser("sql", help="read-only DuckDB SQL over the lake's tables")
    q.add_argument("query")
    q.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    q.add_argument("--out", default=None)
    q.add_argument("--lake", default=None)
    q.add_argument("--as-of", type=parse_as_of, default=None, metavar="VERSION|TIME", help="time travel: every table as of that Delta version (clamped to each table's latest) or ISO time")
    q.set_defaults(fn=_cmd_sql)
    t = sub.add_parser("takedown", help="remove a video or a speaker and everything derived from it; keep it out of later ingests")
    t.add_argument("--video", action="append", default=[], metavar="VIDEO_ID")
    t.add_argument("--speaker", action="append", default=[], metavar="SPEAKER_ID")
    t.add_argument("--reason", default="", help="recorded in the takedowns table")
    t.add_argument("--release", action="append", default=[], metavar="TARGET", help="release target(s) to purge (default: <lake>/release)")
    t.add_argument("--vacuum", action="store_true", help="then vacuum every table with retention 0: no data file keeps the removed rows")
    t.add_argument("--lake", default=None)
    t.set_defaults(fn=_cmd_takedown)
    m = sub.add_parser("maintain", help="compact, checkpoint and vacuum every table")
    m.add_argument("--retention-hours", type=float, default=None, help="vacuum retention (default: lake_vacuum_retention_hours in sql/thresholds.csv)")
    m.add_argument("--lake", default=None)
    m.set_defaults(fn=_cmd_maintain)
    s = sub.add_parser("status", help="row counts and the last batch")
    s.add_argument("--lake", default=None)
    s.set_defaults(fn=_cmd_status)
    v = sub.add_parser("vidchat-eval", help="score a folder of <pair_id>.mp4 predictions against the VidChatBench test split")
    v.add_argument("--pred", required=True, help="folder with one generated mp4 (video + audio) per test pair, named <pair_id>.mp4")
    v.add_argument("--name", default=None, help="prediction set name in vidchat_scores / vidchat_summary (default: the folder's name)")
    v.add_argument("--out", default=None, help="also write the per-pair rows to this parquet file")
    v.add_argument("--no-builtins", action="store_true", help="do not (re)score the ground_truth and static_frame reference sets")
    v.add_argument("--lake", default=None)
    v.set_defaults(fn=_cmd_vidchat_eval)
    bl = sub.add_parser("baseline", help="the reference responder: train on the lake's dialogue pairs, generate the test split")
    bl.add_argument("action", choices=["train", "generate"])
    bl.add_argument("--lake", default=None)
    bl.add_argument("--ckpt", default="checkpoints/baseline", help="checkpoint folder (last.pt; train resumes it)")
    bl.add_argument("--tier", default="sft", help="train on dialogue_pairs of this tier")
    bl.add_argument("--where", default=None, help="train on dialogue_pairs matching this SQL condition instead of --tier")
    bl.add_argument("--steps", type=int, default=300, help="train until this many optimizer steps in all")
    bl.add_argument("--save-every", type=int, default=50)
    bl.add_argument("--hidden", type=int, default=256)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument("--fps", type=float, default=25.0)
    bl.add_argument("--size", type=int, default=128, help="square crop size the loader resizes clips to (generate: the output video size)")
    bl.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bl.add_argument("--no-resume", action="store_true", help="start over even when the checkpoint folder has a checkpoint")
    bl.add_argument("--out", default=None, help="generate: folder for the <pair_id>.mp4 files")
    bl.set_defaults(fn=_cmd_baseline)
    args = p.parse_args(argv)
    _apply_project_env()
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # before any run was launched (or outside `run`): nothing to stop
        print("interrupted", file=sys.stderr)
        return 130


def _apply_project_env() -> None:
    """The ``.env`` of the project (``make demo`` writes the model settings there), applied as
    Dagster applies it. Every Dagster process started from the code location (code server, run
    worker, ``dagster dev``) loads the ``.env`` of its working directory over its environment
    (dagster._cli.utils._inject_local_env_file), so that is what the runs use; this process
    does the same so what it checks and reports matches, and it says when a value of the
    environment is replaced, which would otherwise happen silently in the runs. A ``.env`` in
    another working directory only fills settings the environment lacks. Values are never
    printed: a ``.env`` may hold credentials."""
    from dagster._core.secrets.env_file import get_env_var_dict  # the reader Dagster's processes use
    from dotenv import load_dotenv

    from orchestration.launch import WORKSPACE_YAML

    project = WORKSPACE_YAML.parent.resolve()
    for key, value in get_env_var_dict(str(project)).items():
        if os.environ.get(key, value) != value:
            print(f"note: {key} is set in the environment and in {project / '.env'}; runs use the file's value, as Dagster does", file=sys.stderr)
        os.environ[key] = value
    if Path(".env").is_file() and Path(".env").resolve() != project / ".env":
        load_dotenv(".env", override=False)


if __name__ == "__main__":
    sys.exit(main())
