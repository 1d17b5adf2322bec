"""berth as a dlt destination: real dlt 1.31 pipelines through berth.dlt and through dlt's own
destination on the same data, compared row by row; plain dlt continuing on berth's dataset; a
fresh working directory restoring state from the destination; dlt's configuration."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List

from decimal import Decimal

import dlt
import duckdb
import psycopg2
import pytest

import berth.dlt
from dlt.pipeline.exceptions import PipelineStepFailed

# Columns dlt fills differently on every run (random ids, load ids, load times).
VOLATILE = {"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id"}
# scd2 validity: compared as open (NULL) or closed, not by time.
VALIDITY = {"_dlt_valid_from", "_dlt_valid_to"}


def dump(destination: str, location: str, dataset: str, load_ranks: bool = False) -> Dict[str, Counter]:
    """Every data table of `dataset` as a multiset of rows (volatile columns left out), plus the
    row counts of dlt's bookkeeping. With `load_ranks`, `_dlt_load_id` stays, as the rank of the
    load among the dataset's loads (1 for the first): which load wrote a row, comparable across
    datasets."""
    if destination == "duckdb":
        con: Any = duckdb.connect(location, read_only=True)
        cur = con
    else:
        con = psycopg2.connect(location.replace("postgresql://", "postgres://"))
        cur = con.cursor()
    try:
        cur.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s ORDER BY table_name, ordinal_position"
            .replace("%s", f"'{dataset}'")
        )
        columns: Dict[str, List[str]] = {}
        for table, column in cur.fetchall():
            columns.setdefault(table, []).append(column)
        out: Dict[str, Counter] = {}
        if not columns:
            return out  # no dataset (yet)
        volatile = VOLATILE - {"_dlt_load_id"} if load_ranks else VOLATILE
        ranks: Dict[str, str] = {}
        if load_ranks:
            cur.execute(f'SELECT load_id FROM "{dataset}"."_dlt_loads" ORDER BY load_id')
            ranks = {load_id: str(rank) for rank, (load_id,) in enumerate(cur.fetchall(), start=1)}
        for table, cols in columns.items():
            if table in ("_dlt_version", "_dlt_loads", "_dlt_pipeline_state"):
                cur.execute(f'SELECT count(*) FROM "{dataset}"."{table}"')
                out[table] = Counter({"rows": cur.fetchone()[0]})
                continue
            if table.startswith(("_dlt", "_berth")):
                continue
            kept = [c for c in cols if c not in volatile]
            select = ", ".join(f'"{c}" IS NULL' if c in VALIDITY else f'CAST("{c}" AS VARCHAR)' for c in kept)
            cur.execute(f'SELECT {select} FROM "{dataset}"."{table}"')
            rows = [list(row) for row in cur.fetchall()]
            if "_dlt_load_id" in kept:
                at = kept.index("_dlt_load_id")
                for row in rows:
                    row[at] = ranks.get(row[at], row[at])
            out[table] = Counter(tuple(row) for row in rows)
        return out
    finally:
        con.close()


Runs = List[Callable[[dlt.Pipeline], Any]]


def nested() -> Runs:
    rows = [{"id": i, "name": f"r{i}", "tags": ["a", "b"][: i % 3], "geo": {"lat": i / 10, "lon": -i}} for i in range(50)]
    return [lambda p: p.run(rows, table_name="records"), lambda p: p.run(rows[:5], table_name="records")]


def merge_hard_delete() -> Runs:
    first = [{"id": i, "v": i, "items": [{"n": i}], "deleted": False} for i in range(20)]
    second = [{"id": i, "v": i * 10, "items": [{"n": -i}], "deleted": i % 4 == 0} for i in range(10, 30)]
    hints: Dict[str, Any] = dict(
        table_name="accounts", write_disposition="merge", primary_key="id", columns={"deleted": {"hard_delete": True}}
    )
    return [lambda p: p.run(first, **hints), lambda p: p.run(second, **hints)]


def scd2() -> Runs:
    hints: Dict[str, Any] = dict(table_name="customers", write_disposition={"disposition": "merge", "strategy": "scd2"})
    first = [{"id": i, "tier": "basic"} for i in range(10)]
    second = [{"id": i, "tier": "gold" if i < 3 else "basic"} for i in range(8)]
    return [lambda p: p.run(first, **hints), lambda p: p.run(second, **hints)]


def incremental() -> Runs:
    def events(upto: int):
        @dlt.resource(name="events", primary_key="id", write_disposition="append")
        def resource(updated_at=dlt.sources.incremental("updated_at", initial_value=0)):
            yield [{"id": i, "updated_at": i} for i in range(upto)]

        return resource

    return [lambda p: p.run(events(30)), lambda p: p.run(events(45)), lambda p: p.run(events(45))]


def schema_evolution() -> Runs:
    first = [{"id": i, "a": i} for i in range(10)]
    second = [{"id": i, "a": i, "b": f"new {i}", "c": {"deep": i}} for i in range(10, 15)]
    return [lambda p: p.run(first, table_name="evolving"), lambda p: p.run(second, table_name="evolving")]


SCENARIOS = {
    "nested": nested,
    "merge_hard_delete": merge_hard_delete,
    "scd2": scd2,
    "incremental": incremental,
    "schema_evolution": schema_evolution,
}


def run_scenario(name: str, factory: Any, pipelines_dir: Path, dataset: str) -> dlt.Pipeline:
    pipeline = dlt.pipeline(f"p_{name}", destination=factory, dataset_name=dataset, pipelines_dir=str(pipelines_dir))
    for run in SCENARIOS[name]():
        info = run(pipeline)
        assert not info.has_failed_jobs
    return pipeline


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_duckdb_equals_dlt_own_destination(workdir: Path, scenario: str) -> None:
    run_scenario(scenario, berth.dlt.duckdb(str(workdir / "berth.duckdb")), workdir / "p1", "data")
    run_scenario(scenario, dlt.destinations.duckdb(str(workdir / "dlt.duckdb")), workdir / "p2", "data")
    assert dump("duckdb", str(workdir / "berth.duckdb"), "data") == dump("duckdb", str(workdir / "dlt.duckdb"), "data")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_postgres_equals_dlt_own_destination(workdir: Path, pg, scenario: str) -> None:
    ours, reference = pg.new_database(), pg.new_database()
    run_scenario(scenario, berth.dlt.postgres(ours), workdir / "p1", "data")
    run_scenario(scenario, dlt.destinations.postgres(reference), workdir / "p2", "data")
    assert dump("postgres", ours, "data") == dump("postgres", reference, "data")


def test_load_info_trace_and_package_records_are_dlt_s(workdir: Path) -> None:
    # dlt's defaults: the DuckDB file is <pipeline_name>.duckdb in the working directory.
    pipeline = run_scenario("nested", berth.dlt.duckdb(), workdir / "p", "data")
    assert (workdir / "p_nested.duckdb").is_file()
    info = pipeline.last_trace.last_load_info
    [package] = info.load_packages
    assert package.state == "loaded"
    assert {j.job_file_info.table_name for j in package.jobs["completed_jobs"]} >= {"records", "records__tags"}
    assert not package.jobs["failed_jobs"] and not package.jobs["new_jobs"]
    assert info.destination_name == "duckdb"
    loaded = Path(pipeline.working_dir) / "load" / "loaded" / package.load_id
    assert (loaded / "applied_schema_updates.json").exists()
    assert pipeline.dataset().records.fetchall()  # dlt reads berth's dataset
    # dlt's own command line reads the pipeline berth loaded.
    dlt_cli = Path(sys.executable).parent / "dlt"
    out = subprocess.run(
        [str(dlt_cli), "pipeline", "--pipelines-dir", str(workdir / "p"), "p_nested", "info"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "destination_type: berth.dlt.duckdb" in out.stdout and package.load_id in out.stdout


def test_plain_dlt_continues_on_berth_s_dataset_and_a_fresh_directory_restores_state(workdir: Path, pg) -> None:
    url = pg.new_database()

    @dlt.resource(name="events", primary_key="id", write_disposition="append")
    def events(upto: int, updated_at=dlt.sources.incremental("updated_at", initial_value=0)):
        yield [{"id": i, "updated_at": i} for i in range(upto)]

    first = dlt.pipeline("continued", destination=berth.dlt.postgres(url), dataset_name="data", pipelines_dir=str(workdir / "a"))
    first.run(events(10))
    # dlt's own destination, same pipeline folder: the state berth stored carries the cursor.
    plain = dlt.pipeline("continued", destination=dlt.destinations.postgres(url), dataset_name="data", pipelines_dir=str(workdir / "a"))
    plain.run(events(20))
    # A fresh working directory: berth's destination restores the state dlt stored.
    fresh = dlt.pipeline("continued", destination=berth.dlt.postgres(url), dataset_name="data", pipelines_dir=str(workdir / "b"))
    fresh.run(events(25))
    rows = dump("postgres", url, "data")
    assert sorted(r[0] for r in rows["events"].elements()) == sorted(str(i) for i in range(25))
    assert rows["_dlt_loads"]["rows"] == 3


def test_credentials_from_dlt_configuration_and_by_reference(workdir: Path, pg) -> None:
    url = pg.new_database()
    (workdir / ".dlt").mkdir()
    (workdir / ".dlt" / "secrets.toml").write_text(f'[destination.postgres]\ncredentials = "{url}"\n')
    # A process of its own: dlt reads a project's .dlt/ once per process, from where it runs.
    script = (
        "import dlt\n"
        "p = dlt.pipeline('by_ref', destination='berth.dlt.postgres', dataset_name='data')\n"
        "p.run([{'id': 1}], table_name='one')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert dump("postgres", url, "data")["one"] == Counter({("1",): 1})


# The warehouses as dlt users configure them (factory arguments dlt resolves), what berth must
# resolve from that, and the secret that must never show.
WAREHOUSES = {
    "snowflake": (
        dict(credentials={"host": "acme-xy12345", "database": "ANALYTICS", "username": "loader",
                          "warehouse": "LOADING", "role": "LOADER", "authenticator": "oauth",
                          "token": "tok-s3cret"}),
        "s3://stage-bucket/berth",
        ["acme-xy12345", "LOADING", "LOADER"],
        "tok-s3cret",
    ),
    "bigquery": (
        dict(credentials={"project_id": "acme-analytics", "client_email": "loader@acme.iam.gserviceaccount.com",
                          "private_key": "-----BEGIN PRIVATE KEY-----\nk3y-s3cret\n-----END PRIVATE KEY-----\n"},
             location="EU"),
        "gs://stage-bucket/berth",
        ["acme-analytics", "EU"],
        "k3y-s3cret",
    ),
    "redshift": (
        dict(credentials="redshift://loader:pw-s3cret@cluster.example:5439/dev",
             staging_iam_role="arn:aws:iam::123456789012:role/berth"),
        "s3://stage-bucket/berth",
        ["cluster.example", "arn:aws:iam::123456789012:role/berth"],
        "pw-s3cret",
    ),
    "databricks": (
        dict(credentials={"server_hostname": "adb-1.azuredatabricks.net", "http_path": "/sql/1.0/warehouses/abc",
                          "catalog": "main", "access_token": "dapi-s3cret"}),
        "s3://stage-bucket/berth",
        ["adb-1.azuredatabricks.net", "/sql/1.0/warehouses/abc", "main"],
        "dapi-s3cret",
    ),
}


@pytest.mark.parametrize("name", sorted(WAREHOUSES))
def test_warehouse_factories_hand_berth_what_dlt_resolved(workdir: Path, monkeypatch, name: str) -> None:
    from dlt.common.destination import Destination

    arguments, bucket, expected, secret = WAREHOUSES[name]
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", bucket)
    # By reference, as dlt users name destinations; Parquet is what the warehouses load.
    assert isinstance(Destination.from_reference(f"berth.dlt.{name}"), getattr(berth.dlt, name))
    factory = getattr(berth.dlt, name)(**arguments)
    assert factory.capabilities().preferred_loader_file_format == "parquet"
    assert factory.capabilities().supported_loader_file_formats == ["parquet"]
    spec = factory.spec()
    spec.dataset_name = "shop"
    settings = berth.dlt.dlt_settings(name, factory.configuration(spec))
    # berth resolves the warehouse from what dlt resolved (first), and its bucket from dlt's sources.
    shown = berth.describe_destination(name, dlt_settings=settings)
    for value in expected:
        assert value in shown, shown
    assert bucket in shown and "resolved by dlt" in shown
    assert secret not in shown and secret not in repr(settings.keys())


def test_a_warehouse_pipeline_with_dlt_staging_is_refused_before_anything_loads(workdir: Path, pg) -> None:
    from dlt.common.destination.exceptions import DestinationTerminalException

    url = pg.new_database()
    # PostgreSQL stands in for Redshift's wire protocol: dlt's client syncs state through it.
    from urllib.parse import urlparse

    parts = urlparse(url)
    credentials = {"host": parts.hostname, "port": parts.port, "username": parts.username,
                   "password": parts.password, "database": parts.path.lstrip("/")}
    destination = berth.dlt.redshift(credentials=credentials)
    pipeline = dlt.pipeline("staged", destination=destination, staging=dlt.destinations.filesystem(str(workdir / "bucket")), dataset_name="staged")
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run([{"id": 1}], table_name="t")
    causes = []
    error: Any = failed.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, DestinationTerminalException) and "staging" in str(e) for e in causes), causes
    assert "t" not in dump("postgres", url, "staged")
    assert not (workdir / "bucket").exists() or not any((workdir / "bucket").rglob("*.parquet"))


def test_another_dlt_version_is_a_clear_error() -> None:
    script = "import dlt; dlt.__version__ = '1.29.0'\nimport berth.dlt"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode != 0
    assert "UnsupportedDltVersion" in out.stderr and "1.31" in out.stderr


@pytest.mark.parametrize("raise_on_failed_jobs", [True, False])
def test_a_job_berth_refuses_fails_as_dlt_s_own_job_would(workdir: Path, pg, monkeypatch, raise_on_failed_jobs: bool) -> None:
    url = pg.new_database()
    monkeypatch.setenv("LOAD__RAISE_ON_FAILED_JOBS", str(raise_on_failed_jobs).lower())
    pipeline = dlt.pipeline("refused", destination=berth.dlt.postgres(url), dataset_name="data", pipelines_dir=str(workdir / "p"))
    good = dlt.resource([{"id": 1}], name="good")
    # numeric(5, 2) cannot hold 123456.78: the job fails at the destination, with dlt's own
    # destination as with berth.
    bad = dlt.resource(
        [{"id": 2, "amount": Decimal("123456.78")}],
        name="bad",
        columns={"amount": {"data_type": "decimal", "precision": 5, "scale": 2}},
    )
    if raise_on_failed_jobs:
        with pytest.raises(PipelineStepFailed):
            pipeline.run([good, bad])
        rows = dump("postgres", url, "data")
        assert rows.get("_dlt_loads", Counter()).get("rows", 0) == 0, "nothing committed"
        assert "bad" not in rows or not rows["bad"]
    else:
        info = pipeline.run([good, bad])
        assert info.has_failed_jobs
        [failed] = info.load_packages[0].jobs["failed_jobs"]
        assert failed.job_file_info.table_name == "bad"
        rows = dump("postgres", url, "data")
        assert rows["good"] == Counter({("1",): 1})
        assert rows["_dlt_loads"]["rows"] == 1, "committed without the failed job"
