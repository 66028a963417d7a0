"""Lake I/O: Delta reads/writes, raw media, and DuckDB, on local disk or S3 by one setting.

The same code path serves ``./lake`` and ``s3://bucket/prefix``: delta-rs, Polars and
DuckDB all get their storage options from :func:`storage_options` /
:func:`duckdb_connection`, built from the standard AWS_* variables. Credentials are read
from the environment at call time and never returned in metadata or logged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from orchestration.settings import get_settings, resolve_lake
from orchestration.tables import TABLES, TableSpec
from orchestration.thresholds import THRESHOLDS_CSV

log = logging.getLogger(__name__)

COMMIT_RETRIES = 8


# ---------------------------------------------------------------- locations + credentials
def lake_uri(lake: str | None = None) -> str:
    return resolve_lake(lake) if lake else get_settings().lake


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs / Polars storage options for ``uri`` (None for local paths)."""
    if not is_s3(uri):
        return None
    opts: dict[str, str] = {}
    for env, key in (
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
        ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
    ):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    opts["AWS_REGION"] = aws_region()
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def s3_client():
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=aws_region(),
    )


def split_s3(uri: str) -> tuple[str, str]:
    p = urlparse(uri)
    return p.netloc, p.path.lstrip("/")


def table_uri(name: str, lake: str | None = None) -> str:
    return f"{lake_uri(lake)}/tables/{name}"


def raw_uri(video_id: str, ext: str, lake: str | None = None) -> str:
    return f"{lake_uri(lake)}/raw/{video_id[:2]}/{video_id}{ext}"


# ---------------------------------------------------------------- reads
def table_exists(name: str, lake: str | None = None) -> bool:
    uri = table_uri(name, lake)
    return DeltaTable.is_deltatable(uri, storage_options=storage_options(uri))


def scan(name: str, lake: str | None = None) -> pl.LazyFrame:
    """Lazy scan of a table; an empty frame with the declared schema if it does not exist yet."""
    if not table_exists(name, lake):
        return TABLES[name].empty().lazy()
    uri = table_uri(name, lake)
    # Polars, not DeltaTable.to_pyarrow_table(): the latter can abort the process at exit on S3.
    return pl.scan_delta(uri, storage_options=storage_options(uri))


def read(name: str, lake: str | None = None, *, video_ids: Iterable[str] | None = None) -> pl.DataFrame:
    lf = scan(name, lake)
    if video_ids is not None:
        lf = lf.filter(pl.col("video_id").is_in(list(video_ids)))
    return lf.collect()


def count(name: str, lake: str | None = None) -> int:
    return scan(name, lake).select(pl.len()).collect().item()


# ---------------------------------------------------------------- writes
def last_commit_ms(name: str, lake: str | None = None) -> int | None:
    """Epoch milliseconds of a table's latest Delta commit (None: no table yet). Reads one
    log entry, never the data."""
    if not table_exists(name, lake):
        return None
    uri = table_uri(name, lake)
    return int(DeltaTable(uri, storage_options=storage_options(uri)).history(1)[0]["timestamp"])


def sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _ensure_table(spec: TableSpec, uri: str) -> None:
    so = storage_options(uri)
    if DeltaTable.is_deltatable(uri, storage_options=so):
        return
    try:
        DeltaTable.create(
            uri,
            schema=spec.empty().to_arrow().schema,
            mode="ignore",
            partition_by=list(spec.partition_by) or None,
            storage_options=so,
            name=spec.name,
            description=spec.description,
        )
    except CommitFailedError:  # another writer created it first
        pass


def _with_retry(fn, what: str):
    for attempt in range(COMMIT_RETRIES):
        try:
            return fn()
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                raise
            # delta-rs retries conflicts without backoff; back off with jitter so writers spread out.
            delay = min(4.0, 0.1 * 2**attempt) * (0.5 + random.random())
            log.warning("commit conflict on %s (attempt %d), retrying in %.2fs", what, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def write(name: str, df: pl.DataFrame, *, video_ids: Iterable[str] | None = None, lake: str | None = None) -> int:
    """Idempotently write ``df`` to table ``name`` using the table's declared write mode.

    ``overwrite`` tables are replaced whole by ``df``. ``replace_videos`` tables need ``video_ids``: every row of those videos is replaced,
    including videos that now produce no rows. Returns the number of rows written.
    """
    spec = TABLES[name]
    uri = table_uri(name, lake)
    so = storage_options(uri)
    data = spec.conform(df)
    _ensure_table(spec, uri)

    if spec.write == "merge":
        data = data.unique(subset=list(spec.key), keep="last", maintain_order=True)
        if data.is_empty():
            return 0
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)

        def do_merge():
            (
                DeltaTable(uri, storage_options=so)
                .merge(source=data.to_arrow(), predicate=predicate, source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )

        _with_retry(do_merge, name)
        return data.height

    if spec.write == "overwrite":
        # one commit replaces every row: readers see the old decision or the new one, never a mix
        _with_retry(lambda: write_deltalake(uri, data.to_arrow(), mode="overwrite", storage_options=so), name)
        return data.height

    if video_ids is None:
        raise ValueError(f"table {name} is written per video: pass video_ids")
    ids = sorted(set(video_ids))
    if not ids:
        return 0
    stray = set(data["video_id"].unique().to_list()) - set(ids)
    if stray:
        raise ValueError(f"table {name}: rows for videos outside the batch: {sorted(stray)[:5]}")
    predicate = f"video_id IN ({sql_list(ids)})"

    def do_replace():
        if data.is_empty():
            DeltaTable(uri, storage_options=so).delete(predicate)
        else:
            write_deltalake(uri, data.to_arrow(), mode="overwrite", predicate=predicate, storage_options=so)

    _with_retry(do_replace, name)
    return data.height


def delete_where(name: str, predicate: str, lake: str | None = None) -> int:
    """Delete the rows of table ``name`` matching ``predicate``; returns how many were deleted."""
    uri = table_uri(name, lake)
    so = storage_options(uri)
    if not DeltaTable.is_deltatable(uri, storage_options=so):
        return 0
    metrics = _with_retry(lambda: DeltaTable(uri, storage_options=so).delete(predicate), name)
    return int(metrics.get("num_deleted_rows") or 0)


# ---------------------------------------------------------------- maintenance
def data_files(name: str, lake: str | None = None) -> int:
    """Data files of the table's current version (0: no table)."""
    if not table_exists(name, lake):
        return 0
    uri = table_uri(name, lake)
    return len(DeltaTable(uri, storage_options=storage_options(uri)).file_uris())


def vacuum(name: str, lake: str | None = None, *, retention_hours: float) -> int:
    """Delete the table's data files that no version younger than ``retention_hours`` needs
    (0: every file the current version does not read; time travel cannot go back past it).
    Returns the number of files deleted."""
    if not table_exists(name, lake):
        return 0
    uri = table_uri(name, lake)
    dt = DeltaTable(uri, storage_options=storage_options(uri))
    # below delta-rs's default minimum (a week) only when asked for: the caller owns that choice
    return len(dt.vacuum(retention_hours=int(retention_hours), enforce_retention_duration=False, dry_run=False))


def maintain(name: str, lake: str | None = None, *, retention_hours: float) -> dict[str, int]:
    """Compact the table's small files, write a checkpoint of its log and vacuum it; returns
    the data file counts before and after and how many files the vacuum deleted."""
    if not table_exists(name, lake):
        return {"files_before": 0, "files_after": 0, "files_vacuumed": 0}
    uri = table_uri(name, lake)
    so = storage_options(uri)
    before = data_files(name, lake)
    _with_retry(lambda: DeltaTable(uri, storage_options=so).optimize.compact(), name)
    DeltaTable(uri, storage_options=so).create_checkpoint()
    vacuumed = vacuum(name, lake, retention_hours=retention_hours)
    return {"files_before": before, "files_after": data_files(name, lake), "files_vacuumed": vacuumed}


# ---------------------------------------------------------------- raw media
def put_file(local_path: Path, dest_uri: str) -> None:
    if is_s3(dest_uri):
        bucket, key = split_s3(dest_uri)
        s3_client().upload_file(str(local_path), bucket, key)
    else:
        dest = Path(dest_uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, dest)  # atomic: a crash never leaves a half-copied raw file


def uri_exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception:
            return False
    return Path(uri).exists()


def delete_uri(uri: str) -> bool:
    """Delete one file of the lake (local or S3); returns whether it existed."""
    if not uri_exists(uri):
        return False
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink()
    return True


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path for ``uri``: the file itself when local, a temporary download for S3/http."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with tempfile.TemporaryDirectory(prefix="speakerlake-") as d:
            path = Path(d) / Path(key).name
            s3_client().download_file(bucket, key, str(path))
            yield path
    elif uri.startswith(("http://", "https://")):
        import urllib.request

        with tempfile.TemporaryDirectory(prefix="speakerlake-") as d:
            path = Path(d) / (Path(urlparse(uri).path).name or "download")
            with urllib.request.urlopen(uri, timeout=60) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f)
            yield path
    else:
        yield Path(uri.removeprefix("file://"))


# ---------------------------------------------------------------- DuckDB
def load_packaged_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD a DuckDB extension from its duckdb-extension-* wheel (never from the network)."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"duckdb extension {name!r} missing: pip install duckdb-extension-{name}=={duckdb.__version__}")
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    con.execute(f"LOAD '{path}'")


def _duckdb_s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    params = {"TYPE": "S3", "REGION": aws_region()}
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        params["KEY_ID"] = os.environ["AWS_ACCESS_KEY_ID"]
        params["SECRET"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if os.environ.get("AWS_SESSION_TOKEN"):
        params["SESSION_TOKEN"] = os.environ["AWS_SESSION_TOKEN"]
    if endpoint:
        p = urlparse(endpoint)
        params["ENDPOINT"] = p.netloc or p.path
        params["URL_STYLE"] = "path"
        params["USE_SSL"] = "true" if p.scheme == "https" else "false"
    body = ", ".join(
        f"{k} {v}" if k in ("TYPE", "USE_SSL") else f"{k} '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in params.items()
    )
    con.execute(f"CREATE OR REPLACE SECRET speakerlake_s3 ({body})")


SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_CREATED = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:VIEW|TABLE)\s+(\w+)", re.IGNORECASE)


def duckdb_connection(
    lake: str | None = None, *, views: bool = True, thresholds_csv: str | Path = THRESHOLDS_CSV, as_of: int | datetime | None = None
) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with the delta/httpfs extensions and a view per existing table (sql/views.sql);
    the ``thresholds`` view reads ``thresholds_csv``; ``as_of``: the tables as of that Delta
    version or time (see :func:`create_views`)."""
    uri = lake_uri(lake)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    load_packaged_extension(con, "httpfs")
    load_packaged_extension(con, "delta")
    if is_s3(uri):
        _duckdb_s3_secret(con)
    if views:
        create_views(con, uri, thresholds_csv=thresholds_csv, as_of=as_of)
    return con


def run_sql_file(con: duckdb.DuckDBPyConnection, path: Path, **substitutions: str) -> list[str]:
    """Execute the ``;``-separated statements of a file in sql/ (``--`` comment lines dropped,
    ``{name}`` placeholders filled from ``substitutions``); returns each statement's name (the
    name of ``CREATE [OR REPLACE] [TEMP] VIEW|TABLE name``)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("--"))
    made = []
    for body in (s.strip() for s in text.split(";")):
        if body:
            for key, value in substitutions.items():
                body = body.replace("{" + key + "}", value.replace("'", "''"))
            con.execute(body)
            named = _CREATED.match(body)
            made.append(named.group(1) if named else body.split()[0])
    return made


class MissingThresholdError(ValueError):
    """A threshold row a SQL file reads is missing from the thresholds file: its rule would silently never fire."""


def run_sql_with_limits(con: duckdb.DuckDBPyConnection, path: Path, limits_view: str) -> dict:
    """Run a file of sql/ whose ``limits_view`` gathers its thresholds into one typed row, and
    return that row; refuses a thresholds file that lacks one of them (a null column)."""
    run_sql_file(con, path)
    cur = con.execute(f"SELECT * FROM {limits_view}")
    limits = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    missing = sorted(k for k, v in limits.items() if v is None)
    if missing:
        raise MissingThresholdError(f"sql/{path.name}: no threshold row for {missing} in the thresholds file")
    return limits


def version_as_of(name: str, lake: str, as_of: int | datetime) -> int | None:
    """The Delta version of table ``name`` to read for ``as_of``: a version number is clamped to
    the table's latest (each table numbers its own commits), a time gives the last version
    committed at or before it; None when the table did not exist then."""
    uri = table_uri(name, lake)
    dt = DeltaTable(uri, storage_options=storage_options(uri))
    if isinstance(as_of, int):
        return min(as_of, dt.version())
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    created_ms = min(h["timestamp"] for h in dt.history())
    if as_of.timestamp() * 1000 < created_ms:
        return None
    dt.load_as_version(as_of)
    return dt.version()


def create_views(
    con: duckdb.DuckDBPyConnection, lake: str, *, thresholds_csv: str | Path = THRESHOLDS_CSV, as_of: int | datetime | None = None
) -> list[str]:
    """One view per catalogue table (``delta_scan``; an empty view with the declared schema
    while the table does not exist yet), then the extra views of sql/views.sql (the
    ``thresholds`` view over ``thresholds_csv``). ``as_of`` (time travel): every table as of
    that Delta version or time (:func:`version_as_of`), as long as a vacuum has not removed
    its files."""
    made = []
    for name, spec in TABLES.items():
        exists = table_exists(name, lake)
        version = version_as_of(name, lake, as_of) if exists and as_of is not None else None
        if exists and (as_of is None or version is not None):
            at = "" if version is None else f", version => {version}"
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan('{table_uri(name, lake)}'{at})")
        else:
            con.register(f"__empty_{name}", spec.empty().to_arrow())
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM __empty_{name}")
        made.append(name)
    made += run_sql_file(con, SQL_DIR / "views.sql", lake=lake, sql=str(SQL_DIR), thresholds=str(thresholds_csv))
    return made
