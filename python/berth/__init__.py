"""berth: dlt's load step, fast and exactly once.

berth loads dlt's normalized load packages into a destination with each destination's native
bulk path (DuckDB embedded, PostgreSQL binary COPY over several connections, warehouses from
buckets), runs dlt's append, replace and merge as planned SQL, and writes dlt's bookkeeping so
dlt keeps working on the same dataset.

Three ways in:

* :func:`load` loads packages, :func:`plan` shows the SQL a load would run, :func:`package`
  inspects a package::

      import berth
      summary = berth.load("~/.dlt/pipelines/rides/load/normalized", "duckdb:rides.duckdb")
      print(summary.rows, summary.tables())

* ``berth.dlt`` is a dlt destination: ``dlt.pipeline(..., destination=berth.dlt.postgres())``
  runs dlt's extract and normalize, then berth loads each whole package.

* the ``berth`` command line, installed with this package (``berth load --help``).

Destinations are URLs: ``duckdb:<file>`` (the default, ``duckdb:berth.duckdb``),
``postgres://user@host:5432/db`` (or a bare ``"postgres"``: credentials from dlt's
configuration, the environment, ``~/.pgpass``: no password in code), ``snowflake://…``,
``bigquery://…``, ``redshift://…``, ``databricks://…``, a Delta lake ``delta:<folder or bucket
URL>`` (:func:`compact` merges its small files), and sinks ``webhook+https://…``,
``ndjson:<file>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

from berth import _berth
from berth._errors import (
    BerthError,
    TransientError,
    ConfigError,
    DestinationError,
    JobsFailed,
    LoadError,
    PackageError,
    SchemaError,
    UnsupportedDltVersion,
)
from berth._sink import BatchInfo, Sink, SinkTable, sink
from berth._summary import JobResult, LoadSummary, PackageResult, PhaseTimes, TableResult

__all__ = [
    "load",
    "sink",
    "Sink",
    "SinkTable",
    "BatchInfo",
    "TransientError",
    "plan",
    "package",
    "compact",
    "describe_destination",
    "LoadSummary",
    "PackageResult",
    "JobResult",
    "TableResult",
    "PhaseTimes",
    "Package",
    "PackageJob",
    "BerthError",
    "ConfigError",
    "PackageError",
    "DestinationError",
    "SchemaError",
    "LoadError",
    "JobsFailed",
    "UnsupportedDltVersion",
    "DEFAULT_DESTINATION",
    "__version__",
]

__version__: str = _berth.version()

DEFAULT_DESTINATION = "duckdb:berth.duckdb"
"""Where :func:`load` loads when no destination is given: a DuckDB file in the current directory."""

PathLike = Union[str, "os.PathLike[str]"]


def _paths(packages: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    if isinstance(packages, (str, os.PathLike)):
        packages = [packages]
    return [os.path.expanduser(os.fspath(p)) for p in packages]


def load(
    packages: Union[PathLike, Sequence[PathLike]],
    destination: Union[str, Sink, None] = None,
    *,
    dataset: Optional[str] = None,
    replace_strategy: Optional[str] = None,
    parallel: Optional[int] = None,
    max_attempts: Optional[int] = None,
    allow_failed_jobs: bool = False,
    widen_types: Optional[bool] = None,
    staging: Optional[str] = None,
    pipeline_name: Optional[str] = None,
    config: Optional[PathLike] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
    memory_budget: Union[int, str, None] = None,
) -> LoadSummary:
    """Loads dlt load packages into ``destination``, in order, exactly once.

    Args:
        packages: a package folder, a folder of packages (a pipeline's ``load/normalized``), a
            bucket URL of either (``s3://…``, ``gs://…``, ``az://…``), or a list of these.
        destination: a destination URL (``duckdb:file.duckdb``, ``postgres://user@host/db``, a
            warehouse or a sink URL), or a bare name (``"postgres"``, ``"duckdb"``,
            ``"snowflake"``, ``"bigquery"``, ``"redshift"``, ``"databricks"``) whose credentials
            come from dlt's configuration (environment, ``.dlt/secrets.toml``, ``~/.dlt``; for
            PostgreSQL also ``PG*`` variables and ``~/.pgpass``; a warehouse's staging bucket
            from ``[destination.filesystem]``). Default: inside a dlt project the
            destination the package's pipeline recorded, else ``duckdb:berth.duckdb``. A
            :func:`sink` function sends the rows to it, batch by batch.
        dataset: dataset (schema) to load into; default: the package's.
        replace_strategy: ``truncate-and-insert``, ``insert-from-staging`` or
            ``staging-optimized``; default: the destination's atomic one where it has one.
        parallel: jobs (and parts of large files) loading at once; default one per core, 2 to 8.
        max_attempts: attempts per job on transient errors.
        allow_failed_jobs: commit packages without the jobs that fail terminally (dlt's
            ``raise_on_failed_jobs=False``); those jobs are in the summary with their errors.
        widen_types: widen columns along a safe lattice instead of failing
            (default: ``berth.toml``'s ``[load] widen_types``, else off, as dlt).
        staging: the bucket a warehouse loads from.
        pipeline_name: the dlt pipeline whose configuration sections come first.
        config: berth's config file (default ``./berth.toml`` when present).
        batch_size: rows per decoded batch.
        progress: show a progress bar on standard error (default: when it is a terminal).
        memory_budget: cap the process's peak memory at about this many bytes, or a size such
            as ``"512MiB"``: parts load as many at once as fit and an embedded DuckDB gets the
            rest; a budget too small for a job raises :class:`ConfigError` before anything loads
            (default: ``berth.toml``'s ``[load] memory_budget``, else no cap).

    Returns:
        The :class:`LoadSummary`.

    Raises:
        JobsFailed: jobs failed and their packages stay pending (``.failed_jobs``, ``.summary``);
            load again once the cause is fixed.
        ConfigError, PackageError, DestinationError, SchemaError: nothing more was loaded.
        KeyboardInterrupt: on Ctrl-C, once running jobs finished or rolled back; loading again
            resumes the package.
    """
    if isinstance(destination, Sink):
        raw = destination._load(
            _paths(packages),
            parallel=parallel or 1,
            max_attempts=max_attempts or 5,
            allow_failed_jobs=allow_failed_jobs,
            progress=progress,
            config=os.fspath(config) if config is not None else None,
        )
        summary = LoadSummary.from_json(raw)
        _raise_for_pending(summary)
        return summary
    raw = _berth.load(
        _paths(packages),
        destination,
        dataset=dataset,
        replace_strategy=replace_strategy,
        parallel=parallel,
        max_attempts=max_attempts,
        allow_failed_jobs=allow_failed_jobs,
        widen_types=widen_types,
        staging=staging,
        pipeline_name=pipeline_name,
        config=os.fspath(config) if config is not None else None,
        batch_size=batch_size,
        progress=progress,
        memory_budget=str(memory_budget) if memory_budget is not None else None,
    )
    summary = LoadSummary.from_json(raw)
    _raise_for_pending(summary)
    return summary


def _raise_for_pending(summary: LoadSummary) -> None:
    pending = [p for p in summary.packages if p.status == "pending"]
    if not pending:
        return
    failed = [j for p in pending for j in p.jobs if j.state == "failed"]
    lines = [f"{len(failed)} job(s) failed; package(s) {', '.join(p.load_id for p in pending)} stay pending:"]
    lines += [f"  {j.file}: {j.error}" for j in failed]
    transient = all(j.error_kind == "transient" for j in failed) and bool(failed)
    raise JobsFailed("\n".join(lines), summary=summary, failed_jobs=failed, transient=transient)


def plan(
    packages: Union[PathLike, Sequence[PathLike]],
    destination: str = "duckdb",
    *,
    dataset: Optional[str] = None,
    replace_strategy: Optional[str] = None,
    assume_empty: bool = False,
    staging: Optional[str] = None,
    config: Optional[PathLike] = None,
) -> str:
    """The SQL a load of ``packages`` would run, phase by phase, as ``berth plan`` prints it.

    Nothing is connected to: ``destination`` is a URL or a dialect name (``postgres``,
    ``duckdb``, ``snowflake``, ``bigquery``, ``redshift``, ``databricks``, ``mssql``, ``mysql``).
    ``assume_empty`` plans as for a first load into empty tables.
    """
    return _berth.plan(
        _paths(packages),
        destination,
        dataset=dataset,
        replace_strategy=replace_strategy,
        assume_empty=assume_empty,
        staging=staging,
        config=os.fspath(config) if config is not None else None,
    )


def compact(
    destination: str,
    dataset: str,
    *,
    tables: Optional[Sequence[str]] = None,
    target_file_mib: int = 128,
    config: Optional[PathLike] = None,
) -> List[Dict[str, Any]]:
    """Compacts the tables of a Delta lake, as ``berth compact`` does: their small data files
    are merged into files of about ``target_file_mib`` MiB, one commit per table, no row changed.

    ``destination`` is the lake (``delta:/data/lake``, ``delta:s3://bucket/lake``, …);
    ``tables`` the tables of ``dataset`` to compact (default: all of them). Returns a dict per
    table: ``table``, ``files_removed``, ``bytes_removed``, ``files_added``, ``bytes_added``,
    ``files_after`` and the table's ``version`` after it. Many small packages leave many small
    files (each job at least one); compact after them, at a time of your choosing::

        berth.compact("delta:/data/lake", "analytics", tables=["events"])
    """
    document = _berth.compact(
        destination,
        dataset,
        tables=list(tables or []),
        target_file_mib=target_file_mib,
        config=os.fspath(config) if config is not None else None,
    )
    return json.loads(document)


@dataclass(frozen=True)
class PackageJob:
    """A job file of a package: its table, format, folder ``state`` (``new``, ``started``,
    ``completed``, ``failed``), size and rows, and the error of a job that failed."""

    file: str
    path: str
    table: str
    format: str
    state: str
    retry_count: int
    bytes: int
    rows: Optional[int]
    unreadable: Optional[str] = None
    error: Optional[str] = None
    error_kind: Optional[str] = None


@dataclass(frozen=True)
class Package:
    """A load package as :func:`package` reads it (``berth package show``)."""

    load_id: str
    location: str
    schema: str
    schema_version: int
    schema_version_hash: str
    dataset: str
    created_at: Optional[str]
    state: str
    pending_transitions: int
    jobs: List[PackageJob]

    def tables(self) -> Dict[str, int]:
        """Rows per table over the package's data jobs (jobs that cannot be read count 0)."""
        rows: Dict[str, int] = {}
        for job in self.jobs:
            rows[job.table] = rows.get(job.table, 0) + (job.rows or 0)
        return rows

    def to_dict(self) -> Dict[str, Any]:
        """The package as plain data (what ``berth package show --json`` prints)."""
        from dataclasses import asdict

        return asdict(self)


def package(location: PathLike, *, config: Optional[PathLike] = None) -> Package:
    """Reads the package at ``location`` (a folder or bucket URL): schema, state, and every job
    with its folder state, size, rows and error."""
    raw = json.loads(
        _berth.package(
            os.path.expanduser(os.fspath(location)),
            config=os.fspath(config) if config is not None else None,
        )
    )
    raw["jobs"] = [PackageJob(**j) for j in raw["jobs"]]
    return Package(**raw)


def describe_destination(
    name: str = "postgres",
    *,
    pipeline_name: Optional[str] = None,
    dlt_settings: Optional[Dict[str, str]] = None,
) -> str:
    """What dlt's configuration resolves the destination ``name`` (``postgres``, ``duckdb``, a
    warehouse) to, secrets masked, each value with where it came from (as ``berth config show``).
    ``dlt_settings`` (named as dlt's environment variables) come first: what a ``berth.dlt``
    destination hands over from dlt's own resolution (:func:`berth.dlt.dlt_settings`)."""
    return _berth.describe_destination(name, pipeline_name=pipeline_name, dlt_settings=dlt_settings)
