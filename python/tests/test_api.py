"""berth's Python API: berth.load, berth.plan, berth.package, the errors, Ctrl-C and resume."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import berth
from conftest import PgCluster, copy_quickstart, job_files

QUICKSTART_ROWS = {"_dlt_pipeline_state": 1, "rides": 40, "rides__stops": 80, "stations": 6}


def table_counts(path: Path, dataset: str, tables) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f'SELECT count(*) FROM "{dataset}"."{t}"').fetchone()[0] for t in tables}


def test_load_returns_a_typed_summary_and_a_second_load_is_a_no_op(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    summary = berth.load(packages, "duckdb:quick.duckdb")
    assert isinstance(summary, berth.LoadSummary)
    assert summary.all_loaded
    assert summary.tables() == QUICKSTART_ROWS
    assert summary.rows == sum(QUICKSTART_ROWS.values())
    assert summary.bytes > 0
    assert summary.peak_rss_bytes and summary.peak_rss_bytes > 0
    [package] = summary.packages
    assert package.status == "loaded" and package.dataset == "rides_data"
    assert all(j.state == "completed" for j in summary.jobs)
    assert summary.to_dict()["packages"][0]["load_id"] == package.load_id
    assert table_counts(workdir / "quick.duckdb", "rides_data", QUICKSTART_ROWS) == QUICKSTART_ROWS
    # dlt's folders moved as dlt moves them: the package is in loaded/ or marked completed.
    assert berth.load(packages, "duckdb:quick.duckdb").packages[0].status == "already_loaded"
    assert table_counts(workdir / "quick.duckdb", "rides_data", QUICKSTART_ROWS) == QUICKSTART_ROWS


def test_plan_and_package_read_without_loading(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    [load_id] = [p.name for p in packages.iterdir()]
    sql = berth.plan(packages, "postgres")
    assert 'CREATE TABLE "rides_data"."rides"' in sql
    package = berth.package(packages / load_id)
    assert package.load_id == load_id
    assert package.tables() == QUICKSTART_ROWS
    assert {j.state for j in package.jobs} == {"new"}
    assert job_files(packages / load_id, "new_jobs")  # nothing moved


def test_bad_input_raises_by_kind_and_loads_nothing(workdir: Path) -> None:
    with pytest.raises(berth.ConfigError):
        berth.load(copy_quickstart(workdir), "nosuchdb://x")
    with pytest.raises(berth.PackageError):
        berth.load(workdir / "missing", "duckdb:bad.duckdb")
    with pytest.raises(ValueError):
        berth.load(workdir / "packages", "duckdb:bad.duckdb", replace_strategy="sideways")


def test_a_failed_job_raises_jobs_failed_with_the_job_and_commits_nothing(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    [package] = list(packages.iterdir())
    [stations] = (package / "new_jobs").glob("stations.*.parquet")
    stations.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(berth.JobsFailed) as failed:
        berth.load(packages, "duckdb:failed.duckdb")
    assert [j.table for j in failed.value.failed_jobs] == ["stations"]
    assert failed.value.summary.packages[0].status == "pending"
    with duckdb.connect("failed.duckdb", read_only=True) as con:
        loads = con.execute("SELECT count(*) FROM rides_data._dlt_loads").fetchone()[0]
    assert loads == 0
    # dlt's raise_on_failed_jobs=False: commit without the failed job.
    summary = berth.load(packages, "duckdb:failed.duckdb", allow_failed_jobs=True)
    assert summary.packages[0].status == "loaded_with_failed_jobs"
    assert [j.table for j in summary.failed_jobs()] == ["stations"]


def test_credentials_never_appear_in_errors(workdir: Path) -> None:
    url = "postgresql://loader:Sup3rSecret@127.0.0.1:9/analytics?connect_timeout=2"
    with pytest.raises(berth.BerthError) as error:
        berth.load(copy_quickstart(workdir), url, max_attempts=1)
    assert "Sup3rSecret" not in str(error.value)
    assert "Sup3rSecret" not in repr(error.value)


def test_postgres_from_dlt_configuration_without_a_password_in_code(workdir: Path, pg_url: str, monkeypatch) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", pg_url)
    described = berth.describe_destination("postgres")
    assert "unused-secret" not in described and "DESTINATION__POSTGRES__CREDENTIALS" in described
    summary = berth.load(copy_quickstart(workdir), "postgres")
    assert summary.tables() == QUICKSTART_ROWS


def test_postgres_through_its_socket_with_credentials_as_dlt_writes_them(workdir: Path, pg: PgCluster, monkeypatch) -> None:
    # dlt keeps a socket's folder in the `host` parameter; it wins over the host before the path
    # (one that resolves nowhere), and no TLS is tried through the socket (libpq's rules).
    database = pg.new_database().rsplit("/", 1)[1]
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", f"postgresql://berth:unused-secret@nowhere.invalid:{pg.port}/{database}?host={pg.dir}"
    )
    summary = berth.load(copy_quickstart(workdir), "postgres", max_attempts=1)
    assert summary.tables() == QUICKSTART_ROWS


def test_the_console_script_is_the_command_line(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    berth_script = Path(sys.executable).parent / "berth"
    out = subprocess.run([str(berth_script), "load", str(packages), "--destination", "duckdb:cli.duckdb", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = berth.LoadSummary.from_json(out.stdout)
    assert summary.tables() == QUICKSTART_ROWS


def _many_jobs_package(workdir: Path, jobs: int) -> Path:
    """A dlt package of `jobs` files (dlt's normalize, one file per 100 rows)."""
    script = textwrap.dedent(
        f"""
        import dlt, os
        os.environ["NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS"] = "100"
        os.environ["NORMALIZE__DATA_WRITER__BUFFER_MAX_ITEMS"] = "100"
        p = dlt.pipeline("many", destination="duckdb", dataset_name="many_data")
        p.extract([{{"id": i, "v": "x" * 20}} for i in range({jobs * 100})], table_name="numbers")
        p.normalize()
        print(p.working_dir)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "load" / "normalized"


def test_ctrl_c_stops_the_load_and_the_next_load_resumes_with_exact_rows(workdir: Path) -> None:
    normalized = _many_jobs_package(workdir, 60)
    [package] = list(normalized.iterdir())
    # Ctrl-C as soon as the first job completed (dlt's folders show it).
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time, berth
        def interrupt():
            while not os.listdir({str(package / "completed_jobs")!r}):
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            berth.load({str(normalized)!r}, "duckdb:ctrl_c.duckdb", parallel=1)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interrupted"
    done = [f for f in job_files(package, "completed_jobs") if f.startswith("numbers.")]
    assert 0 < len(done) < 60, "the load stopped part way"
    summary = berth.load(normalized, "duckdb:ctrl_c.duckdb")
    assert summary.all_loaded
    with duckdb.connect(str(workdir / "ctrl_c.duckdb"), read_only=True) as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM many_data.numbers").fetchone()
    assert rows == distinct == 6000


def test_nothing_to_load_is_success(workdir: Path) -> None:
    empty = workdir / "load" / "normalized"
    empty.mkdir(parents=True)
    summary = berth.load(empty, "duckdb:empty.duckdb")
    assert summary.packages == [] and summary.all_loaded and summary.rows == 0


def test_a_memory_budget_too_small_is_a_config_error_before_loading(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    with pytest.raises(berth.ConfigError):
        berth.load(packages, "duckdb:budget.duckdb", memory_budget="1MiB")
    with pytest.raises(ValueError):
        berth.load(packages, "duckdb:budget.duckdb", memory_budget="lots")
    summary = berth.load(packages, "duckdb:budget.duckdb", memory_budget=2 << 30)
    assert summary.tables() == QUICKSTART_ROWS
