"""The load step of ``pipeline.run`` with berth's dlt destination next to dlt's fastest own path,
and ``berth.load`` from Python next to the ``berth`` command, on the same machine in the same run.

    python benches/python/dlt_load_step.py --postgres postgresql://user@127.0.0.1:5432/bench

Needs (in the Python that runs it): berth (``pip install ./python``), dlt 1.31, pyarrow,
psycopg2 and adbc-driver-postgresql (dlt loads Parquet into PostgreSQL through ADBC, its fastest
path there). An Arrow table of ``--rows`` narrow rows (the shape of ``berth bench``'s narrow:
id, ts, amount, qty, category, name, flag) is extracted and normalized to Parquet by dlt once per
run and destination; only ``pipeline.load()`` is timed. Each run loads into a fresh dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import dlt
import pyarrow as pa

import berth
import berth.dlt

# dlt's anonymous telemetry posts from a thread joined at exit; benchmarks never phone home.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


def narrow(rows: int) -> pa.Table:
    import pyarrow.compute as pc

    ids = pa.array(range(rows), pa.int64())
    start = 1_700_000_000_000_000
    return pa.table(
        {
            "id": ids,
            "ts": pc.cast(pc.add(pc.multiply(ids, 1000), start), pa.timestamp("us", tz="UTC")),
            "amount": pc.divide(pc.cast(pc.multiply(ids, 7919), pa.float64()), 100.0),
            "qty": pc.cast(pc.bit_wise_and(ids, 1023), pa.int64()),
            "category": pc.take(pa.array([f"category_{i}" for i in range(16)]), pc.bit_wise_and(ids, 15)),
            "name": pc.binary_join_element_wise("name_", pc.cast(ids, pa.string()), ""),
            "flag": pc.equal(pc.bit_wise_and(ids, 1), 0),
        }
    )


def settle(url: str) -> None:
    """A CHECKPOINT before each timed load (when the user may run one), so no load pays for the
    WAL of the one before it."""
    import psycopg2

    try:
        with psycopg2.connect(url) as con, con.cursor() as cur:
            cur.execute("CHECKPOINT")
    except psycopg2.Error:
        pass


def load_step(factory: Any, table: pa.Table, name: str, workdir: Path, url: str) -> float:
    pipeline = dlt.pipeline(name, destination=factory, dataset_name=name, pipelines_dir=str(workdir / name))
    pipeline.extract(table, table_name="narrow", loader_file_format="parquet")
    pipeline.normalize()
    settle(url)
    started = time.perf_counter()
    info = pipeline.load()
    elapsed = time.perf_counter() - started
    assert not info.has_failed_jobs, info
    return elapsed


def count(url: str, dataset: str) -> int:
    import psycopg2

    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{dataset}"."narrow"')
        return int(cur.fetchone()[0])


def drop(url: str, *datasets: str) -> None:
    """Drops the scratch datasets of a run (5M rows each: the disk fills up otherwise)."""
    import psycopg2

    with psycopg2.connect(url) as con, con.cursor() as cur:
        for dataset in datasets:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')


def python_vs_cli(table: pa.Table, url: str, workdir: Path, run: int) -> Dict[str, float]:
    """The same package loaded by berth.load and by the berth command, each into a fresh dataset;
    which goes first alternates from run to run, so neither always meets a warmer server."""
    source = f"pkg_{run}_{int(time.time())}"
    pipeline = dlt.pipeline(source, destination=berth.dlt.postgres(url), dataset_name=source, pipelines_dir=str(workdir / source))
    pipeline.extract(table, table_name="narrow", loader_file_format="parquet")
    pipeline.normalize()
    normalized = Path(pipeline.working_dir) / "load" / "normalized"
    times: Dict[str, float] = {}
    for how in ("python", "cli") if run % 2 == 0 else ("cli", "python"):
        copy = workdir / f"{source}_{how}"
        shutil.copytree(normalized, copy)
        dataset = f"{source}_{how}"
        settle(url)
        started = time.perf_counter()
        if how == "python":
            summary = berth.load(copy, url, dataset=dataset, progress=False)
            assert summary.all_loaded
        else:
            cli = shutil.which("berth") or str(Path(sys.executable).parent / "berth")
            subprocess.run([cli, "load", str(copy), "--destination", url, "--dataset", dataset, "--json"],
                           check=True, capture_output=True, env={**os.environ})
        times[how] = time.perf_counter() - started
        assert count(url, dataset) == table.num_rows
        drop(url, dataset)
        shutil.rmtree(copy)
    shutil.rmtree(workdir / source)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL URL (the database must exist)")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    table = narrow(args.rows)
    results: Dict[str, List[float]] = {"berth": [], "dlt_adbc": [], "berth.load": [], "berth_cli": []}
    with tempfile.TemporaryDirectory(prefix="berth-dlt-bench-") as tmp:
        workdir = Path(tmp)
        for run in range(args.runs):
            mine = f"bench_berth_{run}_{int(time.time())}"
            theirs = f"bench_dlt_{run}_{int(time.time())}"
            results["berth"].append(load_step(berth.dlt.postgres(args.postgres), table, mine, workdir, args.postgres))
            results["dlt_adbc"].append(load_step(dlt.destinations.postgres(args.postgres), table, theirs, workdir, args.postgres))
            assert count(args.postgres, mine) == count(args.postgres, theirs) == args.rows
            drop(args.postgres, mine, theirs)
            shutil.rmtree(workdir / mine)
            shutil.rmtree(workdir / theirs)
            times = python_vs_cli(table, args.postgres, workdir, run)
            results["berth.load"].append(times["python"])
            results["berth_cli"].append(times["cli"])
    median = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "rows": args.rows,
        "runs": args.runs,
        "seconds": results,
        "median": median,
        "berth_vs_dlt": median["berth"] / median["dlt_adbc"],
        # The median of each run's own ratio: the two loads of a run meet the same machine.
        "python_vs_cli": statistics.median(p / c for p, c in zip(results["berth.load"], results["berth_cli"])),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rows:,} narrow rows into PostgreSQL, {args.runs} runs, medians:")
    print(f"  pipeline.load() with berth.dlt.postgres   {median['berth']:8.2f} s")
    print(f"  pipeline.load() with dlt (Parquet, ADBC)  {median['dlt_adbc']:8.2f} s   berth/dlt = {report['berth_vs_dlt']:.2f}x")
    print(f"  berth.load (Python)                       {median['berth.load']:8.2f} s")
    print(f"  berth load (command)                      {median['berth_cli']:8.2f} s   Python/command = {report['python_vs_cli']:.3f} (median of runs)")


if __name__ == "__main__":
    main()
