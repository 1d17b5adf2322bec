"""berth's Delta lake destination next to the paths dlt users have, on the same machine in the
same run, on the same dlt-normalized packages:

- append: ``--rows`` narrow rows (``berth bench``'s narrow shape) — ``berth load`` into
  ``delta:<dir>`` against ``deltalake.write_deltalake`` (Python delta-rs, the call dlt's
  filesystem destination makes) of the same Parquet job files;
- merge: a delta of ``--delta-rows`` rows (half of them updates) upserted into ``--rows`` rows —
  ``berth load`` against dlt 1.31's own load step of the same package (``filesystem`` with
  ``table_format="delta"``) and against delta-rs's own ``MERGE`` of the same job file (the engine
  dlt's upsert calls, without dlt around it), and berth's delete-insert of the same rows (dlt's Delta destination
  has no delete-insert).

    python benches/python/delta.py --berth ~/.cache/berth-target/release/berth --rows 5000000

Each timed load is a process of its own, started from a small one that reports its peak RSS
(``wait4``), as ``/usr/bin/time`` does. Needs dlt 1.31, deltalake and pyarrow in the Python that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pyarrow as pa
import pyarrow.compute as pc

# dlt's anonymous telemetry posts from a thread joined at exit; benchmarks never phone home.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")


def narrow(first: int, rows: int, version: int) -> pa.Table:
    ids = pa.array(range(first, first + rows), pa.int64())
    start = 1_700_000_000_000_000
    return pa.table(
        {
            "id": ids,
            "ts": pc.cast(pc.add(pc.multiply(ids, 1000), start), pa.timestamp("us", tz="UTC")),
            "amount": pc.divide(pc.cast(pc.multiply(ids, 7919 + version), pa.float64()), 100.0),
            "qty": pc.cast(pc.bit_wise_and(ids, 1023), pa.int64()),
            "category": pc.take(pa.array([f"category_{i}" for i in range(16)]), pc.bit_wise_and(ids, 15)),
            "name": pc.binary_join_element_wise(f"name_v{version}_", pc.cast(ids, pa.string()), ""),
            "flag": pc.equal(pc.bit_wise_and(ids, 1), 0),
        }
    )


# Runs argv[1:] and prints its peak RSS (bytes). A child's `ru_maxrss` includes what the process
# that started it held before the exec (the kernel keeps the larger of the two), so the timed
# command is started from this small process, not from the driver holding the Arrow tables.
_PEAK_RSS = """
import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss * 1024, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status) if status else 0)
"""


def timed(argv: List[str], env: Dict[str, str] | None = None) -> Tuple[float, int]:
    """Runs `argv` to the end; its wall time (s) and peak RSS (bytes)."""
    argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *argv],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - started
    stderr = process.stderr.decode()
    if process.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {stderr[-2000:]}")
    return elapsed, int(stderr.strip().splitlines()[-1])


MERGE = """
import pyarrow.parquet as pq
from deltalake import DeltaTable
source = pq.read_table({job!r})
(DeltaTable({table!r}).merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
    .when_matched_update_all().when_not_matched_insert_all().execute())
"""


def normalize(workdir: Path, name: str, table: pa.Table, disposition: object, delta: bool = True) -> Path:
    """dlt extracts and normalizes `table` for a Delta table (or, for what dlt's Delta destination
    does not take, for DuckDB: the same Parquet jobs); returns the pipelines dir."""
    destination = (
        f"dlt.destinations.filesystem({str(workdir / ('dlt_lake_' + name))!r})"
        if delta
        else f"dlt.destinations.duckdb({str(workdir / (name + '.duckdb'))!r})"
    )
    table_format = ", table_format='delta'" if delta else ""
    script = f"""
import dlt, pyarrow.parquet as pq
table = pq.read_table({str(workdir / (name + '.parquet'))!r})
p = dlt.pipeline({name!r}, destination={destination}, dataset_name='bench', pipelines_dir={str(workdir / ('pipelines_' + name))!r})
p.extract(table, table_name='narrow', write_disposition={disposition!r}, primary_key='id'{table_format}, loader_file_format='parquet')
p.normalize()
"""
    import pyarrow.parquet as pq

    pq.write_table(table, workdir / f"{name}.parquet")
    subprocess.run([sys.executable, "-c", script], check=True)
    return workdir / f"pipelines_{name}"


def package_of(pipelines: Path, name: str) -> Path:
    normalized = pipelines / name / "load" / "normalized"
    [package] = list(normalized.iterdir())
    return package


def dlt_load(pipelines: Path, name: str, lake: Path) -> Tuple[float, int]:
    script = f"""
import dlt
p = dlt.pipeline({name!r}, destination=dlt.destinations.filesystem({str(lake)!r}), dataset_name='bench',
                 pipelines_dir={str(pipelines)!r})
info = p.load()
assert not info.has_failed_jobs
"""
    return timed([sys.executable, "-c", script], {"RUNTIME__LOG_LEVEL": "WARNING"})


def berth_load(berth: str, package: Path, lake: Path, workdir: Path) -> Tuple[float, int]:
    copy = workdir / f"copy_{package.name}_{time.time_ns()}"
    shutil.copytree(package, copy / package.name)
    try:
        return timed([berth, "load", str(copy / package.name), "--destination", f"delta:{lake}", "--dataset", "bench", "--json"])
    finally:
        shutil.rmtree(copy)


def rows_in(lake: Path) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(lake / "bench" / "narrow")).to_pyarrow_dataset().count_rows()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--berth", required=True, help="the berth command (a release build)")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--delta-rows", type=int, default=500_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: Dict[str, object] = {"rows": args.rows, "delta_rows": args.delta_rows}
    with tempfile.TemporaryDirectory(prefix="berth-delta-bench-") as tmp:
        workdir = Path(tmp)
        # Append: the same Parquet job file(s), berth vs write_deltalake.
        base = narrow(0, args.rows, 0)
        pipelines = normalize(workdir, "append", base, "append")
        package = package_of(pipelines, "append")
        jobs = sorted(str(p) for p in (package / "new_jobs").glob("narrow.*.parquet"))
        berth_append = berth_load(args.berth, package, workdir / "berth_append", workdir)
        script = f"""
import pyarrow.dataset as ds
from deltalake import write_deltalake
write_deltalake({str(workdir / 'py_append')!r}, ds.dataset({jobs!r}, format='parquet').to_table(), mode='append')
"""
        python_append = timed([sys.executable, "-c", script])
        assert rows_in(workdir / "berth_append") == args.rows
        report["append"] = {"berth": berth_append, "write_deltalake": python_append}

        # Merge: the base as an upsert table, then a delta of half updates, half new keys.
        pipelines = normalize(workdir, "merge", base, {"disposition": "merge", "strategy": "upsert"})
        dlt_lake, berth_lake = workdir / "dlt_lake_merge", workdir / "berth_merge"
        berth_load(args.berth, package_of(pipelines, "merge"), berth_lake, workdir)
        dlt_load(pipelines, "merge", dlt_lake)
        half = args.delta_rows // 2
        delta = narrow(args.rows - half, args.delta_rows, 1)
        import pyarrow.parquet as pq

        pq.write_table(delta, workdir / "merge.parquet")
        subprocess.run([sys.executable, "-c", f"""
import dlt, pyarrow.parquet as pq
p = dlt.pipeline('merge', destination=dlt.destinations.filesystem({str(dlt_lake)!r}), dataset_name='bench',
                 pipelines_dir={str(pipelines)!r})
p.extract(pq.read_table({str(workdir / 'merge.parquet')!r}), table_name='narrow',
          write_disposition={{'disposition': 'merge', 'strategy': 'upsert'}}, primary_key='id', table_format='delta',
          loader_file_format='parquet')
p.normalize()
"""], check=True)
        delta_package = package_of(pipelines, "merge")
        # delta-rs's own MERGE (the engine under dlt's upsert, without dlt around it) on a copy
        # of berth's lake before the delta, from the same job file.
        merge_lake = workdir / "delta_rs_merge"
        shutil.copytree(berth_lake, merge_lake)
        [job] = sorted((delta_package / "new_jobs").glob("narrow.*.parquet"))
        delta_rs_merge = timed([sys.executable, "-c", MERGE.format(table=str(merge_lake / "bench" / "narrow"), job=str(job))])
        berth_upsert = berth_load(args.berth, delta_package, berth_lake, workdir)
        dlt_upsert = dlt_load(pipelines, "merge", dlt_lake)
        assert rows_in(berth_lake) == rows_in(dlt_lake) == args.rows + half
        assert rows_in(merge_lake) == args.rows + half
        report["upsert"] = {"berth": berth_upsert, "dlt": dlt_upsert, "delta_rs_merge": delta_rs_merge}

        # berth's delete-insert of the same rows (dlt's Delta destination has none).
        delete_insert = {"disposition": "merge", "strategy": "delete-insert"}
        pipelines = normalize(workdir, "di", base, delete_insert, delta=False)
        di_lake = workdir / "berth_di"
        berth_load(args.berth, package_of(pipelines, "di"), di_lake, workdir)
        pipelines_delta = normalize(workdir, "di_delta", delta, delete_insert, delta=False)
        report["delete_insert"] = {"berth": berth_load(args.berth, package_of(pipelines_delta, "di_delta"), di_lake, workdir)}
        assert rows_in(di_lake) == args.rows + half
    if args.json:
        print(json.dumps(report, indent=2))
        return
    mib = 1 << 20
    print(f"{args.rows:,} narrow rows; a {args.delta_rows:,}-row delta (half updates):")
    (b, brss), (p, prss) = report["append"]["berth"], report["append"]["write_deltalake"]
    print(f"  append   berth {b:6.2f} s {brss / mib:6.0f} MiB | write_deltalake {p:6.2f} s {prss / mib:6.0f} MiB | {b / p:.2f}x")
    (b, brss), (d, drss) = report["upsert"]["berth"], report["upsert"]["dlt"]
    print(f"  upsert   berth {b:6.2f} s {brss / mib:6.0f} MiB | dlt 1.31 delta  {d:6.2f} s {drss / mib:6.0f} MiB | {b / d:.2f}x")
    m, mrss = report["upsert"]["delta_rs_merge"]
    print(f"           delta-rs MERGE alone {m:6.2f} s {mrss / mib:6.0f} MiB | berth {b / m:.2f}x")
    b, brss = report["delete_insert"]["berth"]
    print(f"  delete-insert berth {b:6.2f} s {brss / mib:6.0f} MiB (dlt's Delta destination has no delete-insert)")


if __name__ == "__main__":
    main()
