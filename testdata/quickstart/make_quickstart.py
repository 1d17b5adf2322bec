"""Regenerates the quickstart package with dlt itself (pip install "dlt[duckdb,parquet]==1.31.0").

A small ride-sharing dataset: `rides` (append, with a nested list of stops) and `stations` (replace).
The normalized package is copied into this folder before dlt loads it; dlt's own load result is
written to expected/ (keys sorted, lines sorted), as in the fixtures of shared/fixtures/dlt.
"""
import json, os, shutil, sys, tempfile, datetime, decimal

import dlt
import duckdb

here = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp()
os.environ["DLT_DATA_DIR"] = work
os.chdir(work)  # dlt puts quickstart.duckdb in the working directory


@dlt.resource(write_disposition="append")
def rides():
    base = datetime.datetime(2026, 1, 5, 7, 30, tzinfo=datetime.timezone.utc)
    for i in range(1, 41):
        yield {
            "ride_id": i,
            "rider": f"rider_{i % 7}",
            "started_at": base + datetime.timedelta(minutes=17 * i),
            "distance_km": round(1.5 + (i * 37 % 100) / 10, 2),
            "fare": decimal.Decimal(f"{5 + i * 1.25:.2f}"),
            "paid": i % 5 != 0,
            "stops": [{"station": f"S{(i + k) % 6}", "seq": k} for k in range(i % 3 + 1)],
        }


@dlt.resource(write_disposition="replace")
def stations():
    for s in range(6):
        yield {"code": f"S{s}", "name": f"Station {s}", "opened": datetime.date(2020, 1, 1 + s)}


pipeline = dlt.pipeline("quickstart", destination="duckdb", dataset_name="rides_data", pipelines_dir=work)
pipeline.extract([rides(), stations()], loader_file_format="parquet")
pipeline.normalize()
normalized = os.path.join(work, "quickstart", "load", "normalized")
(load_id,) = os.listdir(normalized)
target = os.path.join(here, "packages", load_id)
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(os.path.join(normalized, load_id), target)
pipeline.load()

con = duckdb.connect(os.path.join(work, "quickstart.duckdb"))
os.makedirs(os.path.join(here, "expected"), exist_ok=True)
for table in ["rides", "rides__stops", "stations"]:
    cur = con.execute(f'SELECT * FROM rides_data."{table}"')
    cols = [d[0] for d in cur.description]
    lines = []
    for row in cur.fetchall():
        rec = {}
        for c, v in zip(cols, row):
            if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
                v = v.isoformat()
            elif isinstance(v, decimal.Decimal):
                v = str(v)
            rec[c] = v
        lines.append(json.dumps(rec, sort_keys=True))
    with open(os.path.join(here, "expected", f"{table}.jsonl"), "w") as f:
        f.write("\n".join(sorted(lines)) + "\n")
print(load_id)
