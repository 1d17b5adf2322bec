"""A no-op Python sink over the same package: ``@berth.sink`` (berth reads the Parquet and hands
Arrow batches over the C Data Interface) next to ``@dlt.destination`` (dlt's own loop), each in a
fresh process, with rows/s and the process's peak RSS.

    python benches/python/sink.py --rows 5000000 --batch-size 10000

Needs berth (``pip install ./python``), dlt 1.31 and pyarrow in the Python that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# dlt's anonymous telemetry posts from a thread joined at exit; benchmarks never phone home.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    kind, package, batch_size, file_format = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rows = 0
    started = time.perf_counter()
    if kind == "berth":
        import berth
        @berth.sink(batch_size=batch_size)
        def noop(batch, table):
            global rows
            rows += batch.num_rows
        berth.load(package, destination=noop, progress=False)
    else:
        import dlt
        @dlt.destination(batch_size=batch_size, loader_file_format=file_format)
        def noop(items, table):
            global rows
            rows += len(items)
        # dlt's own loop over the package berth loaded: a pipeline whose normalized folder is it.
        pipeline = dlt.pipeline("sink_bench", destination=noop, pipelines_dir=os.environ["PIPELINES_DIR"])
        pipeline.load()
    elapsed = time.perf_counter() - started
    # VmHWM: this program's own peak (ru_maxrss would carry the parent's over the exec).
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"rows": rows, "seconds": elapsed, "peak_rss_bytes": peak}))
    """
)


def make_package(rows: int, workdir: Path, file_format: str) -> Path:
    """dlt extracts and normalizes an Arrow table of narrow rows to Parquet; returns the pipelines dir."""
    sys.path.insert(0, str(Path(__file__).parent))
    from dlt_load_step import narrow

    import dlt

    @dlt.destination(batch_size=1, loader_file_format=file_format)
    def noop(items, table):  # noqa: ARG001
        pass

    pipelines = workdir / "pipelines"
    pipeline = dlt.pipeline("sink_bench", destination=noop, pipelines_dir=str(pipelines))
    data = narrow(rows)
    if file_format != "parquet":
        data = data.to_pylist()  # rows as dicts, as dlt normalizes them to (typed) JSONL
    pipeline.extract(data, table_name="narrow", loader_file_format=file_format)
    pipeline.normalize()
    return pipelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--format", default="parquet", choices=["parquet", "typed-jsonl"],
                        help="the package's job format: parquet, or dlt's default for sinks, typed-jsonl")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="berth-sink-bench-") as tmp:
        workdir = Path(tmp)
        pipelines = make_package(args.rows, workdir, args.format)
        normalized = pipelines / "sink_bench" / "load" / "normalized"
        for kind in ("berth", "dlt"):
            # Each gets its own copy: loading moves the package's jobs.
            copy = workdir / f"copy_{kind}"
            shutil.copytree(pipelines, copy)
            package = copy / "sink_bench" / "load" / "normalized"
            env = {**os.environ, "PIPELINES_DIR": str(copy), "RUNTIME__LOG_LEVEL": "WARNING"}
            out = subprocess.run([sys.executable, "-c", CHILD, kind, str(package), str(args.batch_size), args.format],
                                 capture_output=True, text=True, env=env, check=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        assert normalized.exists()
    for kind, r in results.items():
        r["rows_per_second"] = r["rows"] / r["seconds"]
    print(json.dumps(results, indent=2))
    ratio = results["berth"]["rows_per_second"] / results["dlt"]["rows_per_second"]
    print(f"berth.sink {results['berth']['rows_per_second']:,.0f} rows/s, peak {results['berth']['peak_rss_bytes'] / 2**20:.0f} MiB; "
          f"@dlt.destination {results['dlt']['rows_per_second']:,.0f} rows/s, peak {results['dlt']['peak_rss_bytes'] / 2**20:.0f} MiB; "
          f"berth/dlt = {ratio:.1f}x")


if __name__ == "__main__":
    main()
