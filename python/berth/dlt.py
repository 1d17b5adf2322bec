"""berth as a dlt destination: dlt extracts and normalizes, berth loads each whole package.

Switching is one argument::

    import dlt, berth.dlt

    pipeline = dlt.pipeline("rides", destination=berth.dlt.postgres(), dataset_name="rides_data")
    pipeline.run(data)                       # or destination="berth.dlt.postgres"

``berth.dlt.postgres`` and ``berth.dlt.duckdb`` are dlt's own ``postgres`` and ``duckdb``
destinations (same configuration sections, ``[destination.postgres.credentials]`` and so on; same
defaults: the DuckDB file ``<pipeline_name>.duckdb``, the configured ``replace_strategy``; same
``pipeline.dataset()``, state sync and ``dlt pipeline … info``) with one difference: the load.

``berth.dlt.snowflake``, ``bigquery``, ``redshift`` and ``databricks`` are dlt's warehouses the
same way (dlt's client, with its connector, for everything but the load). What dlt resolved for
them (factory arguments, ``[destination.<name>]``, any provider dlt has) goes to berth in memory,
before berth's own reading of dlt's sources (:func:`dlt_settings`). berth stages the Parquet files
itself, in the bucket of ``[destination.filesystem] bucket_url`` — the section dlt's own staging
reads — so the pipeline takes no ``staging=``: with one, dlt would upload every file before berth
is asked, and berth's client refuses it before anything loads.

How berth takes a whole package inside dlt's load step (dlt 1.31 ``dlt/load/load.py``)
--------------------------------------------------------------------------------------
dlt's ``Load`` step opens the package's state context, initializes the destination
(``initialize_storage``, ``update_stored_schema``: berth's client leaves both to berth, which
migrates in the same transaction as its journal), then asks the client for a job per file with
``create_load_job``, moves each file ``new_jobs → started_jobs → completed_jobs`` by the job's
state, and finally calls ``complete_load`` once. berth's client answers the *first*
``create_load_job`` of a package by loading the **whole package** with berth — its own plan,
parallel parts, staging, merges and ``_dlt_loads`` commit — reading the job files where dlt
keeps them and moving none (dlt owns the folders). Every job dlt then runs only reports berth's
outcome of it (completed, or failed with berth's error), so dlt's job loop only moves files;
``complete_load`` has nothing left to write.

Why this is safe under crashes: until berth's load returns, dlt has moved no file of the
package, and berth's journal in the destination records every committed step in the same
transaction as its data. A crash during berth's load leaves the files in ``new_jobs`` (or
``started_jobs``); the next ``pipeline.load()`` asks again, and berth resumes from its journal
without applying anything twice. A crash after berth's commit but before dlt moved the files
makes the next run find the package committed in the destination (``_dlt_loads``): berth does
nothing and the jobs are finalized as completed. dlt marks the package loaded only after
``complete_load`` returned, so a package is never reported loaded that is not.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import threading
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from berth._errors import BerthError, UnsupportedDltVersion

SUPPORTED_DLT = "1.31"
"""The dlt release line berth's destination is built for and tested against."""

try:
    import dlt as _dlt
except ImportError as _e:  # pragma: no cover - reported to the user
    raise UnsupportedDltVersion(
        f"berth.dlt needs dlt {SUPPORTED_DLT}.x; install it with `pip install 'dlt=={SUPPORTED_DLT}.*'`"
    ) from _e

if not _dlt.__version__.startswith(SUPPORTED_DLT + "."):
    raise UnsupportedDltVersion(
        f"berth.dlt supports dlt {SUPPORTED_DLT}.x, but dlt {_dlt.__version__} is installed; install "
        f"`pip install 'dlt=={SUPPORTED_DLT}.*'` (berth's command line, `berth load`, works with the "
        "packages of any dlt version it reads)"
    )

from dlt.common.configuration.container import Container  # noqa: E402
from dlt.common.destination.exceptions import (  # noqa: E402
    DestinationTerminalException,
    DestinationTransientException,
)
from dlt.common.storages.load_package import (  # noqa: E402
    LoadPackageStateInjectableContext,
    ParsedLoadJobFileName,
)
from dlt.destinations import destination as _dlt_destination  # noqa: E402
from dlt.destinations import bigquery as _dlt_bigquery  # noqa: E402
from dlt.destinations import databricks as _dlt_databricks  # noqa: E402
from dlt.destinations import duckdb as _dlt_duckdb  # noqa: E402
from dlt.destinations import postgres as _dlt_postgres  # noqa: E402
from dlt.destinations import redshift as _dlt_redshift  # noqa: E402
from dlt.destinations import snowflake as _dlt_snowflake  # noqa: E402
from dlt.destinations.impl.destination.destination import DestinationClient  # noqa: E402
from dlt.common.destination.client import RunnableLoadJob  # noqa: E402

from berth import _berth  # noqa: E402
from berth._summary import LoadSummary  # noqa: E402

__all__ = [
    "postgres",
    "duckdb",
    "snowflake",
    "bigquery",
    "redshift",
    "databricks",
    "sink",
    "sink_destination",
    "dlt_settings",
    "SUPPORTED_DLT",
]

# Job formats berth reads; dlt normalizes into one of them (its preferred format stays dlt's).
_FORMATS = ["insert_values", "parquet", "jsonl", "csv"]


def _package_context() -> Optional[LoadPackageStateInjectableContext]:
    """dlt's load-package context when the caller is dlt's load step, else None."""
    try:
        return Container()[LoadPackageStateInjectableContext]
    except Exception:
        return None


class _Loads:
    """What berth loaded per (destination, dataset, load id) in this process: each job's outcome
    by job id, whether the package stays pending, and which jobs dlt has asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: Dict[Tuple[str, str, str], Dict[str, Any]] = {}

    def get(self, key: Tuple[str, str, str]) -> Optional[Dict[str, Any]]:
        with self._lock:
            return self._done.get(key)

    def outcome(self, key: Tuple[str, str, str], job_id: str, load: Callable[[], str]) -> Dict[str, Any]:
        """berth's outcome of the package, from ``load`` (a summary as JSON) the first time a
        job of it is asked for, and again when dlt retries a job of a package left pending."""
        jobs = self.get(key)
        if jobs is None or (jobs["__pending__"] and job_id in jobs["__answered__"]):
            jobs = self.record(key, load)
        jobs["__answered__"].add(job_id)
        return jobs

    def record(self, key: Tuple[str, str, str], load: Callable[[], str]) -> Dict[str, Any]:
        """Runs ``load`` and keeps its outcome; berth's errors become the exceptions dlt's load
        step retries or fails the job on."""
        try:
            raw = load()
        except BerthError as e:
            raise _for_dlt(e) from e
        jobs = _outcomes(LoadSummary.from_json(raw), key[2])
        with self._lock:
            self._done[key] = jobs
        return jobs


_LOADS = _Loads()


def _csv_writer_settings() -> Dict[str, str]:
    """The options dlt's CSV writer wrote the package's CSV jobs with, as dlt resolves them for
    the pipeline (its ``[normalize.data_writer]`` section, in-code configuration included),
    named as dlt's environment variables for berth to read them first."""
    from dlt.common.configuration import resolve_configuration
    from dlt.common.destination.configuration import CsvFormatConfiguration

    config = resolve_configuration(CsvFormatConfiguration(), sections=("normalize", "data_writer"))
    return {
        "NORMALIZE__DATA_WRITER__DELIMITER": config.delimiter,
        "NORMALIZE__DATA_WRITER__INCLUDE_HEADER": str(config.include_header).lower(),
        "NORMALIZE__DATA_WRITER__ENCODING": config.encoding,
    }


class _BerthJobClient:
    """Mixed into dlt's SQL job client: the load step's calls go to berth, everything else
    (state sync, ``pipeline.dataset()``, ``dlt pipeline … info``) stays dlt's."""

    def _berth_url(self) -> str:  # pragma: no cover - defined per destination
        raise NotImplementedError

    def _berth_settings(self) -> Dict[str, str]:
        """What dlt resolved that berth's configuration should take first (a warehouse's)."""
        return {}

    def _berth_key(self, load_id: str) -> Tuple[str, str, str]:
        return (self.config.fingerprint(), self.sql_client.dataset_name, load_id)  # type: ignore[attr-defined]

    # dlt's initialization: berth migrates (and writes _dlt_version) itself, in the load.
    def initialize_storage(self, truncate_tables: Optional[Iterable[str]] = None) -> None:
        if _package_context() is None:
            super().initialize_storage(truncate_tables)  # type: ignore[misc]

    def update_stored_schema(
        self,
        only_tables: Optional[Iterable[str]] = None,
        expected_update: Any = None,
        force: bool = False,
    ) -> Any:
        if _package_context() is None:
            return super().update_stored_schema(only_tables, expected_update, force)  # type: ignore[misc]
        return expected_update

    def drop_tables(self, *tables: str, delete_schema: bool = True) -> None:
        # dlt's refresh drops tables here; berth does it in the load, once, from the package state.
        if _package_context() is None:
            super().drop_tables(*tables, delete_schema=delete_schema)  # type: ignore[misc]

    def should_truncate_table_before_load(self, table_name: str) -> bool:
        return False

    def should_load_data_to_staging_dataset(self, table_name: str) -> bool:
        return False

    def create_table_chain_completed_followup_jobs(self, table_chain: Any, completed_table_chain_jobs: Any = None) -> Any:
        return []

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> Any:
        package_dir = os.path.dirname(os.path.dirname(file_path))
        job_id = ParsedLoadJobFileName.parse(os.path.basename(file_path)).job_id()
        jobs = self._berth_load(package_dir, load_id, job_id)
        return _finalized(file_path, jobs.get(job_id))

    def complete_load(self, load_id: str) -> None:
        # berth's commit wrote the _dlt_loads row. A package dlt gave no job of (a refresh that
        # only drops tables) is loaded here; one whose jobs failed terminally while dlt was told
        # not to raise (`raise_on_failed_jobs=False`) is committed without them.
        key = self._berth_key(load_id)
        jobs = _LOADS.get(key)
        if jobs is not None and not jobs.get("__pending__"):
            return
        context = _package_context()
        if context is None:
            return
        package_dir = context.storage.storage.make_full_path(context.storage.get_package_path(load_id))
        _LOADS.record(key, lambda: self._run_berth(package_dir, allow_failed_jobs=True))

    def _berth_load(self, package_dir: str, load_id: str, job_id: str) -> Dict[str, Any]:
        return _LOADS.outcome(
            self._berth_key(load_id), job_id, lambda: self._run_berth(package_dir, allow_failed_jobs=False)
        )

    def _run_berth(self, package_dir: str, *, allow_failed_jobs: bool) -> str:
        """berth loads the package; returns its summary as JSON."""
        with self._connection_released():
            return str(
                _berth.load(
                    [package_dir],
                    self._berth_url(),
                    dataset=self.sql_client.dataset_name,  # type: ignore[attr-defined]
                    replace_strategy=self.config.replace_strategy,  # type: ignore[attr-defined]
                    allow_failed_jobs=allow_failed_jobs,
                    progress=False,
                    caller_owns_folders=True,
                    dlt_settings={**_csv_writer_settings(), **self._berth_settings()},
                )
            )

    # An embedded DuckDB file must have one writer: dlt's own connection closes while berth loads.
    _single_writer = False

    def _connection_released(self) -> Any:
        """dlt's own connection to the destination closed while berth loads (for a destination
        with a single writer), and opened again after."""
        return _NoConnection(self)


class _NoConnection:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.was_open = False

    def __enter__(self) -> None:
        sql_client = self.client.sql_client
        self.was_open = self.client._single_writer and getattr(sql_client, "_conn", None) is not None
        if self.was_open:
            sql_client.close_connection()

    def __exit__(self, *exc: Any) -> None:
        if self.was_open:
            self.client.sql_client.open_connection()


# The clients are made on first use: dlt's PostgreSQL client needs psycopg2, its DuckDB client
# the duckdb package, and a user of one needs only that one installed.
@functools.lru_cache(maxsize=None)
def _postgres_client() -> type:
    from dlt.destinations.impl.postgres.postgres import PostgresClient

    class BerthPostgresClient(_BerthJobClient, PostgresClient):  # type: ignore[misc]
        """dlt's PostgreSQL job client whose load step is berth's."""

        def _berth_url(self) -> str:
            # The password travels in memory to berth (never on a command line, never logged).
            return str(self.config.credentials.to_native_representation())

    return BerthPostgresClient


@functools.lru_cache(maxsize=None)
def _duckdb_client() -> type:
    from dlt.destinations.impl.duckdb.duck import DuckDbClient

    class BerthDuckDbClient(_BerthJobClient, DuckDbClient):  # type: ignore[misc]
        """dlt's DuckDB job client whose load step is berth's."""

        _single_writer = True

        def _berth_url(self) -> str:
            database = self.config.credentials.database
            if database == ":memory:":
                raise DestinationTerminalException(
                    "berth.dlt.duckdb loads into a DuckDB file; an in-memory database lives in dlt's process only"
                )
            return "duckdb:///" + os.path.abspath(database).lstrip("/")

    return BerthDuckDbClient


# The warehouses: dlt's client for everything but the load (its module, class, and the options of
# its configuration berth reads besides the credentials).
_WAREHOUSES: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "snowflake": ("dlt.destinations.impl.snowflake.snowflake", "SnowflakeClient", ("stage_name",)),
    "bigquery": ("dlt.destinations.impl.bigquery.bigquery", "BigQueryClient", ("location", "project_id")),
    "redshift": ("dlt.destinations.impl.redshift.redshift", "RedshiftClient", ("staging_iam_role",)),
    "databricks": ("dlt.destinations.impl.databricks.databricks", "DatabricksClient", ()),
}


def dlt_settings(name: str, config: Any) -> Dict[str, str]:
    """The configuration dlt resolved for the warehouse ``name`` (its credentials, and the options
    berth reads) named as dlt's environment variables, ``DESTINATION__SNOWFLAKE__CREDENTIALS__HOST``
    and so on: handed to berth in memory, where it comes before every other source."""
    prefix = f"DESTINATION__{name.upper()}__"
    settings: Dict[str, str] = {}
    credentials = getattr(config, "credentials", None)
    if credentials is not None:
        for key in credentials.get_resolvable_fields():
            if key.startswith("_"):
                continue
            value = getattr(credentials, key, None)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                settings[f"{prefix}CREDENTIALS__{key.upper()}"] = str(value)
            elif isinstance(value, bool):
                settings[f"{prefix}CREDENTIALS__{key.upper()}"] = str(value).lower()
    for key in _WAREHOUSES[name][2]:
        value = getattr(config, key, None)
        if value is not None:
            settings[prefix + key.upper()] = str(value)
    return settings


@functools.lru_cache(maxsize=None)
def _warehouse_client(name: str) -> type:
    """dlt's job client of the warehouse ``name`` whose load step is berth's. Made on first use:
    dlt's client imports the warehouse's connector (``pip install 'dlt[snowflake]'`` and so on),
    which a user of another destination does not need."""
    module, class_name, _ = _WAREHOUSES[name]
    dlt_client = getattr(importlib.import_module(module), class_name)

    class BerthWarehouseClient(_BerthJobClient, dlt_client):  # type: ignore[misc,valid-type]
        def _berth_url(self) -> str:
            # A bare name: berth resolves it from the settings dlt resolved, then dlt's sources.
            return name

        def _berth_settings(self) -> Dict[str, str]:
            return dlt_settings(name, self.config)  # type: ignore[attr-defined]

        def initialize_storage(self, truncate_tables: Optional[Iterable[str]] = None) -> None:
            if _package_context() is not None and getattr(self.config, "staging_config", None) is not None:
                # dlt would upload every file itself before berth is asked: berth stages them.
                raise DestinationTerminalException(
                    f"berth.dlt.{name} stages the files itself: create the pipeline without "
                    "`staging=`; berth loads from the bucket of `[destination.filesystem] bucket_url` "
                    "(the same section dlt's staging reads)"
                )
            super().initialize_storage(truncate_tables)

    BerthWarehouseClient.__name__ = BerthWarehouseClient.__qualname__ = "Berth" + class_name
    BerthWarehouseClient.__doc__ = f"dlt's {class_name} whose load step is berth's."
    return BerthWarehouseClient


def _warehouse_caps(caps: Any) -> Any:
    # The warehouses load Parquet from the staging bucket, as berth stages it.
    caps.preferred_loader_file_format = "parquet"
    caps.supported_loader_file_formats = ["parquet"]
    caps.loader_file_format_selector = None
    return caps


def _caps_for_berth(caps: Any) -> Any:
    caps.supported_loader_file_formats = list(_FORMATS)
    caps.loader_file_format_selector = None
    return caps


class postgres(_dlt_postgres):  # type: ignore[misc,valid-type]
    """dlt's ``postgres`` destination, loaded by berth (binary COPY over several connections,
    merges as planned SQL, exactly once). Takes the arguments of ``dlt.destinations.postgres``
    and reads the same configuration (``[destination.postgres.credentials]``,
    ``DESTINATION__POSTGRES__CREDENTIALS``…)."""

    def _raw_capabilities(self) -> Any:
        return _caps_for_berth(super()._raw_capabilities())

    @property
    def client_class(self) -> Any:
        return _postgres_client()


class duckdb(_dlt_duckdb):  # type: ignore[misc,valid-type]
    """dlt's ``duckdb`` destination, loaded by berth (embedded, exactly once). Takes the
    arguments of ``dlt.destinations.duckdb``; the default file is dlt's,
    ``<pipeline_name>.duckdb``."""

    def _raw_capabilities(self) -> Any:
        return _caps_for_berth(super()._raw_capabilities())

    @property
    def client_class(self) -> Any:
        return _duckdb_client()


def _warehouse(name: str, dlt_factory: type, doc: str) -> Any:
    """dlt's factory of the warehouse ``name``, loaded by berth: Parquet, and berth's client."""

    def _raw_capabilities(self: Any) -> Any:
        return _warehouse_caps(dlt_factory._raw_capabilities(self))  # type: ignore[attr-defined]

    namespace = {
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
        "_raw_capabilities": _raw_capabilities,
        "client_class": property(lambda self: _warehouse_client(name)),
    }
    return type(name, (dlt_factory,), namespace)


snowflake = _warehouse(
    "snowflake",
    _dlt_snowflake,
    """dlt's ``snowflake`` destination, loaded by berth: Parquet staged in the bucket of
    ``[destination.filesystem] bucket_url`` and loaded with ``COPY INTO``, merges as planned
    SQL, exactly once. Takes the arguments of ``dlt.destinations.snowflake`` and reads the same
    configuration (``[destination.snowflake.credentials]``: key pair or token; berth talks to
    Snowflake's SQL API, which takes no passwords). The pipeline takes no ``staging=``.""",
)
bigquery = _warehouse(
    "bigquery",
    _dlt_bigquery,
    """dlt's ``bigquery`` destination, loaded by berth: Parquet staged in the ``gs://`` bucket of
    ``[destination.filesystem] bucket_url`` and loaded by BigQuery load jobs (idempotent per file),
    merges as planned SQL. Takes the arguments of ``dlt.destinations.bigquery`` and reads
    ``[destination.bigquery]`` (``location``, a service account's ``credentials``). The pipeline
    takes no ``staging=``.""",
)
redshift = _warehouse(
    "redshift",
    _dlt_redshift,
    """dlt's ``redshift`` destination, loaded by berth: Parquet staged in the ``s3://`` bucket of
    ``[destination.filesystem] bucket_url`` and loaded with ``COPY … FORMAT PARQUET`` (with
    ``[destination.redshift] staging_iam_role``, or the bucket's keys), in one transaction with
    berth's journal. Takes the arguments of ``dlt.destinations.redshift``. The pipeline takes no
    ``staging=``.""",
)
databricks = _warehouse(
    "databricks",
    _dlt_databricks,
    """dlt's ``databricks`` destination, loaded by berth: Parquet staged in the bucket of
    ``[destination.filesystem] bucket_url`` and loaded with ``COPY INTO`` (an external location
    or temporary credentials), merges as planned SQL. Takes the arguments of
    ``dlt.destinations.databricks`` and reads ``[destination.databricks.credentials]`` (an access
    token or a service principal). The pipeline takes no ``staging=``.""",
)


class BerthSinkClient(DestinationClient):  # type: ignore[misc]
    """dlt's client of a sink function (``@dlt.destination``) whose load step is berth's: the
    whole package goes through berth's sink loader, batch by batch, resumable per batch."""

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> Any:
        from berth._sink import Sink

        package_dir = os.path.dirname(os.path.dirname(file_path))
        job_id = ParsedLoadJobFileName.parse(os.path.basename(file_path)).job_id()
        key = ("sink:" + self.config.destination_name, "", load_id)
        berth_sink: Sink = self.config.destination_callable.__berth_sink__  # type: ignore[attr-defined]
        jobs = _LOADS.outcome(
            key,
            job_id,
            lambda: berth_sink._load([package_dir], function=self.destination_callable, progress=False, caller_owns_folders=True),
        )
        return _finalized(file_path, jobs.get(job_id))


def _for_dlt(error: BerthError) -> Exception:
    """berth's error as the exception dlt's load step retries (transient) or fails the job on."""
    if error.transient:
        return DestinationTransientException(str(error))
    return DestinationTerminalException(str(error))


def _outcomes(summary: LoadSummary, load_id: str) -> Dict[str, Any]:
    """Each job's outcome by job id, and whether the package stays pending."""
    jobs: Dict[str, Any] = {}
    pending = False
    for package in summary.packages:
        pending = pending or package.status in ("pending", "interrupted")
        for job in package.jobs:
            jobs[job.job_id] = {"state": job.state, "seconds": job.seconds, "error": job.error, "error_kind": job.error_kind}
    if pending and not any(j["state"] == "failed" for j in jobs.values()):
        raise DestinationTransientException(f"berth did not finish package {load_id}; it resumes on the next load")
    jobs["__pending__"] = pending
    jobs["__answered__"] = set()
    return jobs


class _OutcomeJob(RunnableLoadJob):  # type: ignore[misc]
    """A job berth already loaded (or failed): running it only reports berth's outcome. It runs
    in dlt's worker pool rather than being returned finalized because a finished runnable job
    wakes dlt's load loop at once, where a finalized one waits for the loop's one-second poll."""

    def __init__(self, file_path: str, result: Optional[Dict[str, Any]]) -> None:
        super().__init__(file_path)
        self._result = result or {"state": "completed"}

    def run(self) -> None:
        if self._result["state"] == "completed":
            return
        message = self._result.get("error") or "failed"
        if self._result.get("error_kind") == "transient":
            raise DestinationTransientException(message)
        raise DestinationTerminalException(message)


def _finalized(file_path: str, result: Optional[Dict[str, Any]]) -> Any:
    """The dlt job of a file from berth's outcome of it."""
    return _OutcomeJob(file_path, result)


class sink(_dlt_destination):  # type: ignore[misc,valid-type]
    """dlt's custom destination (``@dlt.destination``) run by berth: made by
    :func:`sink_destination` from a :func:`berth.sink` function."""

    @property
    def client_class(self) -> Any:
        return BerthSinkClient


def sink_destination(berth_sink: Any) -> sink:
    """The dlt destination of a :func:`berth.sink` function: dlt resolves the function's keyword
    parameters from ``[destination.<name>]`` and normalizes to Parquet; berth sends the batches."""
    function = berth_sink.function

    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    # dlt builds its configuration spec from the signature of the function it is given.
    call.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    call.__name__ = berth_sink.name
    call.__qualname__ = berth_sink.name
    call.__module__ = getattr(function, "__module__", __name__)
    call.__berth_sink__ = berth_sink  # type: ignore[attr-defined]
    return sink(
        call,
        destination_name=berth_sink.name,
        batch_size=berth_sink.batch_size,
        loader_file_format="parquet",
        naming_convention="direct",
        max_table_nesting=berth_sink.max_table_nesting,
        skip_dlt_columns_and_tables=berth_sink.skip_dlt_columns_and_tables,
    )
