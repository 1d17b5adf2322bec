"""berth's Delta lake destination against dlt's own `filesystem` destination with
`table_format="delta"`: the same dlt pipelines, extracted and normalized by dlt, loaded by berth
(`delta:<folder>`) and by dlt; both lakes read back with the `deltalake` package (delta-rs for
Python, an independent reader of what berth committed) and compared row by row. Then dlt itself
works on berth's lake: `pipeline.dataset()`, state restored into a fresh working directory, and
dlt's own next load."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List

import dlt
import pytest
from deltalake import DeltaTable

import berth

VOLATILE = {"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id"}

Runs = List[Callable[[], Any]]


def lake_rows(root: Path, dataset: str) -> Dict[str, Counter]:
    """Every Delta table of `dataset` as a multiset of rows (volatile columns left out)."""
    out: Dict[str, Counter] = {}
    for table_dir in sorted((root / dataset).iterdir()):
        if not (table_dir / "_delta_log").is_dir():
            continue
        table = DeltaTable(str(table_dir)).to_pyarrow_table()
        columns = sorted(c for c in table.column_names if c not in VOLATILE)
        rows = table.select(columns).to_pylist()
        out[table_dir.name] = Counter(tuple((c, str(r[c])) for c in columns) for r in rows)
    return out


def records(n: int, offset: int = 0) -> List[Dict[str, Any]]:
    return [
        {"id": i, "name": f"r{i}", "tags": ["a", "b", "c"][: i % 4], "amount": i * 1.5}
        for i in range(offset, offset + n)
    ]


def scenario_steps(name: str) -> List[Dict[str, Any]]:
    """Each step: the data and the resource hints, always a Delta table."""
    delta = {"table_format": "delta"}
    if name == "append_nested":
        hints = dict(table_name="records", **delta)
        return [dict(data=records(40), **hints), dict(data=records(10, 40), **hints)]
    if name == "replace":
        hints = dict(table_name="records", write_disposition="replace", **delta)
        return [dict(data=records(30), **hints), dict(data=records(7, 100), **hints)]
    upsert = {"disposition": "merge", "strategy": "upsert"}
    if name == "merge_upsert_nested":
        hints = dict(table_name="accounts", write_disposition=upsert, primary_key="id", **delta)
        # Lists keep their length: dlt's Delta upsert merges nested rows by `_dlt_id` and keeps
        # the ones past a list that got shorter, where its SQL destinations (and berth) drop them.
        first = [{"id": i, "v": i, "items": [{"n": i}, {"n": i + 1}]} for i in range(20)]
        second = [{"id": i, "v": i * 10, "items": [{"n": -i}, {"n": i * 7}]} for i in range(10, 30)]
        return [dict(data=first, **hints), dict(data=second, **hints)]
    if name == "merge_upsert_hard_delete":
        # dlt refuses hard deletes with upsert on Delta tables that have nested tables.
        hints = dict(
            table_name="accounts",
            write_disposition=upsert,
            primary_key="id",
            columns={"deleted": {"hard_delete": True}},
            **delta,
        )
        first = [{"id": i, "v": i, "deleted": False} for i in range(20)]
        second = [{"id": i, "v": i * 10, "deleted": i % 4 == 0} for i in range(10, 30)]
        return [dict(data=first, **hints), dict(data=second, **hints)]
    if name == "schema_evolution":
        hints = dict(table_name="evolving", **delta)
        return [
            dict(data=[{"id": i, "a": i} for i in range(10)], **hints),
            dict(data=[{"id": i, "a": i, "b": f"new {i}"} for i in range(10, 15)], **hints),
        ]
    raise KeyError(name)


SCENARIOS = ["append_nested", "replace", "merge_upsert_nested", "merge_upsert_hard_delete", "schema_evolution"]


def pipeline(name: str, lake: Path, pipelines_dir: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        name,
        destination=dlt.destinations.filesystem(str(lake)),
        dataset_name="data",
        pipelines_dir=str(pipelines_dir),
    )


def load_with_berth(p: dlt.Pipeline, lake: Path) -> None:
    """dlt extracts and normalizes; berth loads the normalized packages into the lake."""
    normalized = Path(p.working_dir) / "load" / "normalized"
    packages = sorted(str(d) for d in normalized.iterdir()) if normalized.is_dir() else []
    assert packages, "dlt normalized nothing"
    summary = berth.load(packages, destination=f"delta:{lake}", dataset="data")
    assert summary.all_loaded, summary


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lake_equals_dlt_own_delta_destination(workdir: Path, scenario: str) -> None:
    ours, reference = workdir / "ours", workdir / "reference"
    mine = pipeline(f"d_{scenario}", ours, workdir / "p1")
    dlts = pipeline(f"d_{scenario}", reference, workdir / "p2")
    for step in scenario_steps(scenario):
        step = dict(step)
        data = step.pop("data")
        mine.extract(data, **step)
        mine.normalize()
        load_with_berth(mine, ours)
        info = dlts.run(data, **step)
        assert not info.has_failed_jobs
    assert lake_rows(ours, "data") == lake_rows(reference, "data")


def test_dlt_reads_berth_s_lake_restores_state_and_loads_next(workdir: Path) -> None:
    lake = workdir / "lake"

    @dlt.resource(name="events", primary_key="id", write_disposition="append", table_format="delta")
    def events(upto: int, updated_at=dlt.sources.incremental("updated_at", initial_value=0)):
        yield [{"id": i, "updated_at": i} for i in range(upto)]

    first = pipeline("lake_state", lake, workdir / "a")
    first.extract(events(10))
    first.normalize()
    load_with_berth(first, lake)
    # dlt opens what berth loaded as its own Delta table (`pipeline.dataset()` would read it through
    # DuckDB's delta extension, which DuckDB downloads on first use: not possible offline).
    from dlt.common.libs.deltalake import get_delta_tables

    events_table = get_delta_tables(first, "events")["events"]
    assert sorted(r["id"] for r in events_table.to_pyarrow_table().to_pylist()) == list(range(10))
    # A fresh working directory: dlt restores the pipeline state berth stored in the lake, so the
    # incremental cursor continues where berth's load left it.
    fresh = pipeline("lake_state", lake, workdir / "b")
    fresh.sync_destination()
    info = fresh.run(events(25))
    assert not info.has_failed_jobs
    ids = sorted(r["id"] for r in DeltaTable(str(lake / "data" / "events")).to_pyarrow_table().to_pylist())
    assert ids == list(range(25))
    # dlt's own load recorded the package next to berth's.
    loads = sorted(p.name for p in (lake / "data" / "_dlt_loads").iterdir())
    assert len(loads) == 2


def test_compact_merges_small_files_and_dlt_loads_on(workdir: Path) -> None:
    """Several small loads leave a file each; `berth.compact` merges them into one commit that
    delta-rs reads with the same rows, and dlt's own next load goes on from there."""
    lake = workdir / "lake"
    p = pipeline("compacted", lake, workdir / "p")
    for batch in range(4):
        p.extract(records(25, batch * 25), table_name="records", table_format="delta")
        p.normalize()
        load_with_berth(p, lake)
    table_dir = lake / "data" / "records"
    before = lake_rows(lake, "data")
    assert len(DeltaTable(str(table_dir)).file_uris()) >= 4

    done = {t["table"]: t for t in berth.compact(f"delta:{lake}", "data")}
    assert set(done) == {"records", "records__tags"}
    assert done["records"]["files_after"] == 1
    assert len(DeltaTable(str(table_dir)).file_uris()) == 1
    assert lake_rows(lake, "data") == before
    operation = DeltaTable(str(table_dir)).history(1)[0]["operation"]
    assert operation == "OPTIMIZE"

    info = p.run(records(5, 100), table_name="records", table_format="delta")
    assert not info.has_failed_jobs
    ids = sorted(r["id"] for r in DeltaTable(str(table_dir)).to_pyarrow_table().to_pylist())
    assert ids == list(range(100)) + list(range(100, 105))

    with pytest.raises(berth.ConfigError):
        berth.compact(f"delta:{lake}", "data", tables=["nope"])
