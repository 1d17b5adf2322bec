"""dlt's own load step on packages berth benchmarks (`berth bench --vs dlt`).

    python dlt_load.py <work dir> <dataset> <package>...

The destination comes from the environment, never the command line: BERTH_DLT_DESTINATION is
`postgres://…` (dlt's `postgres`, which loads Parquet through ADBC when adbc-driver-postgresql is
installed: its fastest path) or `duckdb:<file>`. The packages are copied into a fresh pipeline's
`load/normalized/` and loaded with `pipeline.load()`, the step `pipeline.run` ends with; only that
call is timed. Packages `berth bench` generated carry a schema with the data tables only: dlt's
tables, normalizers and the schema update are added the way dlt's normalize would. Prints one
JSON object: seconds, rows per table, peak RSS (VmHWM) and dlt's version.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

# dlt's anonymous telemetry posts from a thread joined at exit: without a network the process
# would outlive its load by the posts' retries, and a benchmark must not phone home.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
from dlt.common.storages import LoadStorage


def destination(url: str):
    if url.startswith("duckdb:"):
        return dlt.destinations.duckdb(url[len("duckdb:") :])
    if url.startswith(("postgres://", "postgresql://")):
        return dlt.destinations.postgres(credentials=url)
    raise SystemExit(f"--vs dlt measures postgres and duckdb destinations, not {url.split(':')[0]}")


def schema_of(package: Path) -> dlt.Schema:
    stored = json.loads((package / "schema.json").read_text())
    try:
        return dlt.Schema.from_dict(stored)
    except Exception:  # a schema with the data tables only (berth bench's)
        schema = dlt.Schema(stored["name"])
        for table in stored["tables"].values():
            if not table["name"].startswith("_dlt_"):
                schema.update_table(table)
        return schema


def place(package: Path, into: Path, schema: dlt.Schema) -> None:
    """The package as dlt's normalize leaves it."""
    target = into / package.name
    shutil.copytree(package, target)
    (target / "schema.json").write_text(json.dumps(schema.to_dict()))
    if not (target / "schema_updates.json").exists():
        tables = {n: t for n, t in schema.to_dict()["tables"].items() if not n.startswith("_dlt_")}
        (target / "schema_updates.json").write_text(json.dumps(tables))
    for folder in ("new_jobs", "started_jobs", "completed_jobs", "failed_jobs", ".exceptions"):
        (target / folder).mkdir(exist_ok=True)


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    work, dataset, packages = Path(sys.argv[1]), sys.argv[2], [Path(p) for p in sys.argv[3:]]
    url = os.environ["BERTH_DLT_DESTINATION"]
    pipeline = dlt.pipeline(
        "berth_bench", destination=destination(url), dataset_name=dataset, pipelines_dir=str(work)
    )
    schemas = [schema_of(p) for p in packages]
    pipeline._inject_schema(schemas[0])
    storage = LoadStorage(True, [], pipeline._load_storage_config())
    normalized = Path(storage.normalized_packages.storage.storage_path)
    for package, schema in zip(packages, schemas):
        place(package, normalized, schema)
    started = time.perf_counter()
    info = pipeline.load()
    seconds = time.perf_counter() - started
    if info is None or info.has_failed_jobs:
        raise SystemExit(f"dlt's load failed: {info}")
    rows = {}
    with pipeline.sql_client() as client:
        for name in schemas[-1].data_table_names():
            table = client.make_qualified_table_name(name)
            rows[name] = client.execute_sql(f"SELECT count(*) FROM {table}")[0][0]
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_bytes": peak_rss(), "dlt": dlt.__version__}))


if __name__ == "__main__":
    main()
