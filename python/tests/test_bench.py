"""`berth bench --vs dlt`: dlt 1.31's own load step of the same generated packages, in the same
runs, next to berth's — run through the package's console script, as a Python user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest


def bench(workdir: Path, destination: str, *args: str) -> Dict[str, Any]:
    berth_script = Path(sys.executable).parent / "berth"
    out = subprocess.run(
        [str(berth_script), "bench", "--rows", "3000", "--runs", "1", "--work-dir", "work", "--no-ceiling",
         "--vs", "dlt", "--dlt-python", sys.executable, "--json", *args],
        env={"BERTH_DESTINATION": destination, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, cwd=workdir,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cases(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {case["name"]: case for case in report["cases"]}


@pytest.mark.parametrize("where", ["duckdb", "postgres"])
def test_bench_vs_dlt_reports_dlt_s_load_of_the_same_packages(workdir: Path, where: str, request) -> None:
    destination = f"duckdb:{workdir / 'bench.duckdb'}" if where == "duckdb" else request.getfixturevalue("pg_url")
    report = bench(workdir, destination)
    by_name = cases(report)
    dlt_case = by_name["dlt 1.31.0 load step"]
    assert dlt_case["row_count_parity"] is True
    assert dlt_case["berth_ratio"] > 0 and dlt_case["cpu_seconds"] > 0 and dlt_case["peak_rss_bytes"] > 0
    assert by_name["berth append"]["rows_loaded"] == [3000]
    assert report["configuration"]["dlt_version"] == "1.31.0"
    assert report["configuration"]["dlt_python"] == sys.executable


def test_bench_vs_dlt_merges_end_with_the_same_rows(workdir: Path) -> None:
    report = bench(workdir, f"duckdb:{workdir / 'bench.duckdb'}", "--disposition", "merge:upsert", "--delta-rows", "400")
    names: List[str] = [case["name"] for case in report["cases"]]
    assert "dlt 1.31.0 (a) merge:upsert" in names and "dlt 1.31.0 (b) merge:upsert" in names
    assert cases(report)["dlt 1.31.0 (b) merge:upsert"]["row_count_parity"] is True


def test_bench_vs_dlt_needs_dlt_1_31(workdir: Path) -> None:
    berth_script = Path(sys.executable).parent / "berth"
    out = subprocess.run(
        [str(berth_script), "bench", "--destination", "duckdb:x.duckdb", "--vs", "dlt", "--dlt-python", "/usr/bin/false"],
        capture_output=True, text=True, cwd=workdir,
    )
    assert out.returncode == 1 and "dlt 1.31" in out.stderr


def test_bench_vs_dlt_leaves_no_dataset_behind(workdir: Path, pg_url: str) -> None:
    import psycopg2

    bench(workdir, pg_url, "--disposition", "merge:delete-insert", "--delta-rows", "400")
    with psycopg2.connect(pg_url) as con, con.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'berth_bench%'")
        assert cur.fetchall() == []
