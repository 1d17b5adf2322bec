"""Random merge histories through berth.dlt and through dlt's own destination, compared row by row
after every run: the reference is dlt 1.31 itself, not an oracle of ours.

Each seed draws a strategy (delete-insert, upsert, insert-only, scd2, cdc) with dlt 1.31's merge
options (merge key, source filter, destination scope, skip unchanged rows), a job format dlt
writes for the destination, and three runs of rows: keys that come back, are updated, deleted
(hard delete) or vanish (scd2 retires them, cdc deletes them), values and regions that turn NULL,
a column that appears in a later run, and nested lists of 0-3 items whose rows carry their owner's
key and run (so a nested row left behind by an old version of its root row shows). Duplicate keys
inside a run come with distinct ``dedup_sort`` values, so dlt's own choice among them is
deterministic. Rows compare with the rank of the load that wrote them (skip-unchanged keeps the
first), and with berth's one documented difference taken out (upsert's marked rows, below).

The other families: dispositions switching with refresh modes, values of every dlt type,
awkward names under each naming convention, random type hints, rows nested three levels deep
and Arrow tables of random Arrow types (catalogs compared too), CSV jobs written with random
options of dlt's CSV writer, and the Delta lake against dlt's DuckDB load of the same
packages."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import dlt
import pytest

import berth.dlt
from test_dlt import VALIDITY, VOLATILE, dump

# Seeds per run: DuckDB takes this many, PostgreSQL half (BERTH_RANDOM_SEEDS=200 for a long hunt).
SEEDS = int(os.environ.get("BERTH_RANDOM_SEEDS", "20"))
# Where the seeds start (a hunt explores new histories with BERTH_RANDOM_SEED_BASE=10000).
BASE = int(os.environ.get("BERTH_RANDOM_SEED_BASE", "0"))
Runs = List[Tuple[List[Dict[str, Any]], Dict[str, Any]]]
STRATEGIES = ["delete-insert", "upsert", "insert-only", "scd2", "cdc"]
FORMATS = {"duckdb": ["insert_values", "parquet", "jsonl"], "postgres": ["insert_values", "csv", "parquet"]}


def options(rng: random.Random, strategy: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The write disposition (strategy and dlt 1.31's merge options) and the table hints."""
    disposition: Dict[str, Any] = {"disposition": "merge", "strategy": strategy}
    columns: Dict[str, Any] = {"v": {"data_type": "bigint"}, "s": {"data_type": "text"}, "region": {"data_type": "text"}}
    hints: Dict[str, Any] = {"table_name": "accounts"}
    if strategy != "scd2":
        hints["primary_key"] = "id"
        columns["deleted"] = {"data_type": "bool", "hard_delete": True}
    if strategy == "delete-insert":
        columns["seq"] = {"data_type": "bigint", "dedup_sort": "desc"}
        if rng.random() < 0.35:
            columns["region"]["merge_key"] = True  # whole regions are replaced, NULL matching none
    if strategy != "insert-only" and rng.random() < 0.3:
        disposition["source_filter"] = "region = 'eu'"  # NULL regions are filtered out too
    if strategy in ("delete-insert", "cdc", "scd2") and rng.random() < 0.3:
        disposition["destination_scope"] = "{table}.region = 'eu'"
    if strategy in ("upsert", "cdc") and rng.random() < 0.4:
        disposition["skip_unchanged_rows"] = True  # unchanged rows keep their first load
    if strategy == "scd2":
        if rng.random() < 0.4:
            # Validity columns of the user's naming, compared by value: the boundary is fixed.
            disposition["validity_column_names"] = ["valid_since", "valid_until"]
            disposition["boundary_timestamp"] = "2024-05-06T07:08:09+00:00"
        if rng.random() < 0.3:
            disposition["active_record_timestamp"] = "9999-12-31T00:00:00+00:00"
        if rng.random() < 0.25:
            # The user's own row hash (of the row's values, as dlt asks), in place of dlt's.
            disposition["row_version_column_name"] = "row_hash"
        if rng.random() < 0.3:
            columns["id"] = {"data_type": "bigint", "merge_key": True}  # retire only keys loaded again
    hints["columns"] = columns
    hints["write_disposition"] = disposition
    return disposition, hints


def history(seed: int, destination: str) -> Tuple[str, str, Runs]:
    """A description of the seed's case, the job format and the runs (rows, `pipeline.run`
    hints)."""
    rng = random.Random(seed)
    strategy = STRATEGIES[seed % len(STRATEGIES)]
    file_format = rng.choice(FORMATS[destination])
    disposition, hints = options(rng, strategy)
    keyed = strategy != "scd2"
    lists = rng.random() < 0.75
    keys = list(range(1, 13))
    runs = []
    seq = 0
    for run in range(3):
        rows = []
        # Keys appear once per run (scd2 compares whole rows, as in a full extract), except for
        # delete-insert, whose duplicates `seq` orders.
        drawn = rng.sample(keys, rng.randint(3, 9))
        if strategy == "delete-insert":
            drawn += rng.sample(drawn, rng.randint(0, 2))
        for key in drawn:
            seq += 1
            row: Dict[str, Any] = {
                "id": key,
                "v": None if rng.random() < 0.2 else rng.randint(0, 3),
                "s": None if rng.random() < 0.2 else f"s{rng.randint(0, 2)}",
                "region": rng.choice(["eu", "eu", "us", None]),
            }
            if lists:
                row["items"] = [{"owner": key, "run": run, "n": n} for n in range(rng.randint(0, 3))]
            if keyed:
                row["deleted"] = rng.random() < 0.15
            if strategy == "delete-insert":
                row["seq"] = seq
            if run > 0 and rng.random() < 0.5:
                row["extra"] = f"e{run}"  # a column of later runs only
            if run > 0 and rng.random() < 0.08:
                row["v"] = f"t{rng.randint(0, 2)}"  # text in a bigint column: dlt's variant column
            if rng.random() < 0.3:
                row["Mixed Case Note"] = rng.choice(["ä", "", None, "x y"])  # a name dlt normalizes
            if "row_version_column_name" in disposition:
                row["row_hash"] = repr(sorted((k, repr(v)) for k, v in row.items()))
            rows.append(row)
        rng.shuffle(rows)
        runs.append((rows, dict(hints, loader_file_format=file_format)))
    described = f"{disposition}, merge key {'merge_key' in hints['columns']['region']}, lists {lists}"
    return described, file_format, runs


def seeds(start: int, count: int) -> range:
    """`count` seeds of a family from its `start`, moved by BERTH_RANDOM_SEED_BASE."""
    return range(BASE + start, BASE + start + count)


def cases(duckdb_seeds: range, postgres_seeds: range) -> List[Tuple[str, int]]:
    """(destination, seed) pairs of a family of histories."""
    return [("duckdb", seed) for seed in duckdb_seeds] + [("postgres", seed) for seed in postgres_seeds]


def side_by_side(
    name: str,
    destination: str,
    runs: Runs,
    workdir: Path,
    request: Any,
    check: Callable[[int, Dict, Dict], None],
) -> Tuple[str, str]:
    """Runs `runs` through berth.dlt and through dlt's own `destination`, each pipeline into a
    database of its own, and hands `check` both datasets after every run (rows with the rank of
    the load that wrote them). A run both sides refuse in the same step ends the history there.
    Returns the two databases' locations, berth's first."""
    if destination == "duckdb":
        locations = (str(workdir / "berth.duckdb"), str(workdir / "dlt.duckdb"))
        ours, reference = berth.dlt.duckdb(locations[0]), dlt.destinations.duckdb(locations[1])
    else:
        pg = request.getfixturevalue("pg")
        locations = (pg.new_database(), pg.new_database())
        for location in locations:
            request.addfinalizer(lambda location=location: pg.drop_database(location))
        ours, reference = berth.dlt.postgres(locations[0]), dlt.destinations.postgres(locations[1])
    pipelines = [
        dlt.pipeline(f"{name}{side}", destination=d, dataset_name="data", pipelines_dir=str(workdir / side))
        for side, d in (("a", ours), ("b", reference))
    ]
    for number, (rows, hints) in enumerate(runs):
        failed = [failure(pipeline, rows, hints) for pipeline in pipelines]
        assert failed[0] == failed[1], f"run {number + 1}: berth.dlt {failed[0]}, dlt {failed[1]}"
        got, want = (dump(destination, location, "data", load_ranks=True) for location in locations)
        check(number, got, want)
        if failed[0] is not None:
            # Both refused the run in the same step (a rule of dlt's own, such as a naming
            # collision) and left the dataset alike; later runs would meet different leftovers.
            break
    return locations[0], locations[1]


def equal_rows_and_catalogs(name: str, destination: str, described: str, runs: Runs, workdir: Path, request: Any) -> None:
    """`side_by_side`, with every table's rows equal to dlt's after every run (as `comparable`
    makes them) and, at the end, the catalogs (names, types, precisions, nullability)."""

    def check(number: int, got: Dict, want: Dict) -> None:
        got, want = ({t: comparable(rows) for t, rows in side.items()} for side in (got, want))
        assert got == want, f"{described}, after run {number + 1}: {differences(got, want)}"

    ours, theirs = (catalog(destination, location) for location in side_by_side(name, destination, runs, workdir, request, check))
    assert ours == theirs, f"{described}: the catalogs differ: {catalog_differences(ours, theirs)}"


def failure(pipeline: dlt.Pipeline, rows: Any, hints: Dict[str, Any]) -> Any:
    """None when `pipeline` runs `rows` (a list of rows, or a function making a fresh dlt
    resource of them) without a failed job, else the step that failed and the kind of error (the
    exception dlt wraps, by class)."""
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        info = pipeline.run(rows() if callable(rows) else rows, **hints)
    except PipelineStepFailed as e:
        # dlt's own rules (a naming collision on a case-insensitive destination) fail the load
        # step before any job; the two sides must fail alike, or neither. A job the destination
        # refuses (a value out of a column's range) is refused: dlt retries it, berth does not.
        refused = e.step == "load" and type(e.__cause__).__name__.startswith("LoadClientJob")
        return e.step, "a job refused" if refused else type(e.__cause__).__name__
    assert not info.has_failed_jobs
    return None


def differences(got: Dict[str, Counter], want: Dict[str, Counter]) -> Dict[str, Dict[str, Counter]]:
    """Per table that differs, the rows only berth's side has and those only dlt's has."""
    return {
        table: {"berth only": got.get(table, Counter()) - want.get(table, Counter()),
                "dlt only": want.get(table, Counter()) - got.get(table, Counter())}
        for table in set(got) | set(want)
        if got.get(table) != want.get(table)
    }


def without_upsert_markers(rows: Counter, marked: Callable[[Tuple], bool]) -> Counter:
    """berth's one deliberate difference here (README, "Where berth deliberately differs"): an
    upsert row marked deleted whose key is not loaded is not inserted; dlt's MERGE inserts it with
    its marker. Marked rows in the table are exactly those."""
    return Counter({row: n for row, n in rows.items() if not marked(row)})


@pytest.mark.parametrize("destination,seed", cases(seeds(0, SEEDS), seeds(100, SEEDS // 2)))
def test_random_merges_equal_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    described, file_format, runs = history(seed, destination)

    def check(number: int, got: Dict, want: Dict) -> None:
        if "'upsert'" in described:
            # "true" is no other column's value.
            want["accounts"] = without_upsert_markers(want["accounts"], lambda row: "true" in row)
        found = differences(got, want)
        assert not found, f"seed {seed} ({described}, {file_format}), after run {number + 1}: {found}"

    side_by_side(f"r{seed}", destination, runs, workdir, request, check)


def dispositions(seed: int, destination: str) -> Tuple[str, Runs]:
    """Four runs into one table, each with a write disposition of its own (append, replace,
    delete-insert merge) and now and then one of dlt's refresh modes: the table's history
    switches between them as a pipeline's does when its resource changes."""
    rng = random.Random(seed)
    file_format = rng.choice(FORMATS[destination])
    runs = []
    for run in range(4):
        # A merge first: nested tables get their `_dlt_root_id` from the start (dlt's own DuckDB
        # cannot add that NOT NULL column to a nested table an append created).
        disposition = rng.choice(["append", "replace", "merge"]) if run > 0 else "merge"
        # The columns are declared up front: a run without rows still creates them, and dlt's
        # own DuckDB cannot add a NOT NULL key column to an existing table later.
        columns = {"id": {"data_type": "bigint", "nullable": False}, "v": {"data_type": "bigint"}}
        hints: Dict[str, Any] = {"table_name": "events", "write_disposition": disposition, "columns": columns}
        if disposition == "merge":
            hints["primary_key"] = "id"
        # A table dropped and made again by an append or replace, or by a merge without nested
        # rows, has nested tables without `_dlt_root_id`, which a later merge cannot add there.
        creates = run == 0
        if run > 0 and rng.random() < 0.3:
            hints["refresh"] = rng.choice(["drop_sources", "drop_resources", "drop_data"] if disposition == "merge" else ["drop_data"])
            creates = hints["refresh"] != "drop_data"
        # Runs that create tables have nested rows; dlt's own loads fail on an empty JSONL job,
        # and its PostgreSQL load of Parquet (ADBC) on an empty Parquet job.
        empty_fails = file_format == "jsonl" or (destination, file_format) == ("postgres", "parquet")
        fewest = 2 if creates else int(empty_fails)
        rows = [
            {
                "id": key,
                "v": rng.randint(0, 3),
                "items": [{"owner": key, "run": run, "n": n} for n in range(rng.randint(int(creates), 2))],
            }
            for key in rng.sample(range(1, 10), rng.randint(fewest, 6))
        ]
        runs.append((rows, dict(hints, loader_file_format=file_format)))
    return file_format, runs


@pytest.mark.parametrize("destination,seed", cases(seeds(0, SEEDS // 2), seeds(100, SEEDS // 4)))
def test_random_dispositions_and_refreshes_equal_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    file_format, runs = dispositions(seed, destination)

    def check(number: int, got: Dict, want: Dict) -> None:
        described = [{k: v for k, v in h.items() if k not in ("table_name", "columns")} for _, h in runs[: number + 1]]
        assert got == want, f"seed {seed} ({file_format}) after {described}: {differences(got, want)}"

    side_by_side(f"d{seed}", destination, runs, workdir, request, check)


def duckdb_rows(location: str, dataset: str) -> Dict[str, Counter]:
    """Every data table of a DuckDB dataset as a multiset of rows of (column, value) pairs,
    volatile columns left out, `_dlt_load_id` kept (the lake has the same packages' load ids)."""
    import duckdb

    con = duckdb.connect(location, read_only=True)
    try:
        out: Dict[str, Counter] = {}
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [dataset]
        ).fetchall()
        for (table,) in tables:
            if table.startswith(("_dlt", "_berth")):
                continue
            cursor = con.execute(f'SELECT * FROM "{dataset}"."{table}"')
            names = [d[0] for d in cursor.description]
            out[table] = Counter(named(dict(zip(names, row))) for row in cursor.fetchall())
        return out
    finally:
        con.close()


def lake_rows(root: Path, dataset: str) -> Dict[str, Counter]:
    """The same of a Delta lake, read with delta-rs (an independent reader of berth's commits)."""
    from deltalake import DeltaTable

    out: Dict[str, Counter] = {}
    for folder in sorted((root / dataset).iterdir()):
        if folder.name.startswith(("_dlt", "_berth")) or not (folder / "_delta_log").is_dir():
            continue
        out[folder.name] = Counter(named(row) for row in DeltaTable(str(folder)).to_pyarrow_table().to_pylist())
    return out


def named(row: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    """A row as sorted (column, value) pairs: volatile ids left out, validity as open or
    closed, values as text the way both readers agree."""
    def text(value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return tuple(
        sorted(
            (c, (v is None) if c in VALIDITY else text(v))
            for c, v in row.items()
            if c not in VOLATILE - {"_dlt_load_id"}
        )
    )


@pytest.mark.parametrize("seed", seeds(200, SEEDS // 2))
def test_random_merges_into_a_delta_lake_equal_dlt_s_duckdb(workdir: Path, seed: int) -> None:
    """The same packages, normalized once by dlt: berth loads a copy into a Delta lake, dlt
    loads them into DuckDB; the lake must hold DuckDB's rows after every run."""
    import shutil

    described, file_format, runs = history(seed, "duckdb")
    reference, lake = str(workdir / "dlt.duckdb"), workdir / "lake"
    p = dlt.pipeline(f"l{seed}", destination=dlt.destinations.duckdb(reference), dataset_name="data",
                     pipelines_dir=str(workdir / "p"))
    for number, (rows, hints) in enumerate(runs):
        p.extract(rows, **hints)
        p.normalize()
        normalized = Path(p.working_dir) / "load" / "normalized"
        copies = []
        for package in sorted(normalized.iterdir()):
            copies.append(str(shutil.copytree(package, workdir / "copies" / package.name)))
        summary = berth.load(copies, destination=f"delta:{lake}", dataset="data")
        assert summary.all_loaded, summary
        info = p.load()
        assert not info.has_failed_jobs
        got, want = lake_rows(lake, "data"), duckdb_rows(reference, "data")
        if "'upsert'" in described:
            want["accounts"] = without_upsert_markers(want["accounts"], lambda row: ("deleted", "true") in row)
        found = differences(got, want)
        assert not found, f"seed {seed} ({described}, {file_format}), after run {number + 1}: {found}"


def awkward_text(rng: random.Random) -> str:
    """Text that job formats must escape: quotes, separators, backslashes, line breaks, tabs,
    non-ASCII, SQL-looking bits and CSV's empty-versus-NULL."""
    pieces = ["", "'", '"', ",", ";", "\\", "\\N", "\n", "\r\n", "\t", "ä", "𝔘", "NULL", "--", "$$", " ", "x"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))


def values(seed: int, destination: str, file_format: str = "") -> Tuple[str, Runs]:
    """Two appends of rows with random values of every dlt data type, NULLs among them, in
    `file_format` (default: one drawn among those dlt writes for `destination`)."""
    import datetime as dt
    from decimal import Decimal

    rng = random.Random(seed)
    file_format = file_format or rng.choice(FORMATS[destination])
    columns = {
        "i": {"data_type": "bigint"},
        "f": {"data_type": "double"},
        "d": {"data_type": "decimal"},
        "b": {"data_type": "bool"},
        "t": {"data_type": "text"},
        "ts": {"data_type": "timestamp"},
        "day": {"data_type": "date"},
        "tm": {"data_type": "time"},
        "j": {"data_type": "json"},
        "bin": {"data_type": "binary"},
    }

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    def row(key: int) -> Dict[str, Any]:
        return {
            "id": key,
            "i": maybe(rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randint(-10**12, 10**12)])),
            "f": maybe(rng.choice([0.0, -0.0, 1.5, -2.25e-300, 1.7976931348623157e308, rng.uniform(-1e6, 1e6)])),
            # dlt's default decimal is (38, 9); made from text, as `scaleb` rounds to 28 digits.
            "d": maybe(Decimal(f"{rng.randint(-10**29 + 1, 10**29 - 1)}E-{rng.randint(0, 9)}")),
            "b": maybe(rng.random() < 0.5),
            "t": maybe(awkward_text(rng)),
            "ts": maybe(dt.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                    rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999), tzinfo=dt.timezone.utc)),
            "day": maybe(dt.date(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28))),
            "tm": maybe(dt.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999))),
            "j": maybe(rng.choice([{"a": [1, None, "x"]}, [], {}, {"q": awkward_text(rng)}, [{"n": rng.uniform(-1e300, 1e300)}]])),
            "bin": maybe(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 8)))),
        }

    hints = {"table_name": "values", "columns": columns, "loader_file_format": file_format}
    runs = [([row(k) for k in range(n, n + 8)], hints) for n in (0, 100)]
    if file_format == "csv":
        # dlt neither writes nor loads binaries in CSV reliably (its own COPY refuses them).
        del columns["bin"]
        runs = [([{k: v for k, v in r.items() if k != "bin"} for r in rows], hints) for rows, hints in runs]
    return file_format, runs


def comparable(rows: Counter) -> Counter:
    """Rows without two artifacts of dlt's own loads, where berth keeps the data as written:
    dlt's DuckDB load of JSONL reads a json column as structs, so an object gains the other rows'
    keys as nulls and a member's integers become doubles where another row's are (JSON documents
    compare parsed, without null members, integral numbers as integers), and its `insert_values`
    into DuckDB turns a negative zero double into 0.0 (a zero compares without its sign)."""
    import json

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)  # a struct member's numbers take the type of all rows' (1 is 1.0)
        return value

    def cell(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                return json.dumps(strip(json.loads(value)), sort_keys=True)
            except ValueError:
                return value  # a binary that prints starting with a brace
        return {"-0.0": "0.0", "-0": "0"}.get(value, value)

    return Counter({tuple(cell(v) for v in row): n for row, n in rows.items()})


# dlt's naming conventions, and names that each of them treats differently: case, spaces,
# punctuation, non-ASCII, SQL keywords, leading digits, dlt's own `__` separator, and names longer
# than PostgreSQL's 63 bytes (shortened with a hash by dlt's naming).
CONVENTIONS = ["snake_case", "sql_cs_v1", "sql_ci_v1", "duck_case", "direct"]
NAMES = [
    "Amount", "amount", "AMOUNT", "first name", "First_Name", "ünïcödé", "Σ", "x-y", "x_y", "select",
    "order", "1st", "a.b", "a__b", "😀", "CamelCase", "camel_case", "white  space", "Zürich Straße",
    "tab\tname", "semi;colon", "quote'd", "per%cent", "$dollar", "long_" * 14, "L" * 70 + "ä",
]


def naming(seed: int, destination: str) -> Tuple[str, Runs]:
    """Three runs of a table and a nested table named awkwardly, under a random naming
    convention of dlt's (both pipelines read it from the same configuration), with a random
    disposition each: names as the convention makes them, shortened, collided or refused."""
    rng = random.Random(seed)
    convention = rng.choice(CONVENTIONS)
    file_format = rng.choice(FORMATS[destination])
    tables, nested_tables, known = ["Orders", "order items", "Ünïcode Täble", "T" * 70, "select", "a__b"], ["Line Items", "ITEMS", "i" * 60, "x-y"], NAMES
    if convention in ("direct", "duck_case"):
        # Under these two (names nearly as given), dlt's own merge names its temporary table
        # without quotes, and splits its SQL at ';'.
        tables, known = ["Orders", "T" * 70, "select", "a__b"], [n for n in NAMES if ";" not in n]
    if destination == "postgres" and convention == "direct":
        tables = [t for t in tables if len(t) < 40]
    table = rng.choice(tables)
    if destination == "postgres" and (not table.isascii() or convention == "direct"):
        # dlt shortens names to 63 characters; PostgreSQL takes 63 bytes, and berth refuses a
        # longer name where PostgreSQL would cut it (README, "Where berth deliberately differs"):
        # non-ASCII names, and `direct`'s path separator ▶, are longer in bytes.
        nested_tables = [n for n in nested_tables if len(n) < 40]
    nested = rng.choice(nested_tables)
    key = rng.choice(["Record ID", "ID", "id", "record_id"])
    if destination == "postgres":
        known = [n for n in known if n.isascii() or len(n) < 40]
    names = rng.sample(known, rng.randint(2, 6))
    runs = []
    for run in range(3):
        disposition = rng.choice(["append", "replace", "merge"]) if run > 0 else "merge"
        hints: Dict[str, Any] = {"table_name": table, "write_disposition": disposition, "loader_file_format": file_format}
        if disposition == "merge":
            hints["primary_key"] = key
        rows = []
        for k in rng.sample(range(1, 12), rng.randint(2, 6)):
            row: Dict[str, Any] = {key: k}
            for name in rng.sample(names, rng.randint(1, len(names))):
                row[name] = rng.choice([None, f"{name}:{run}", awkward_text(rng)])
            # Every run's roots have nested rows (dlt's own loads fail on empty JSONL jobs and on
            # empty Parquet through ADBC); each names its owner and run.
            row[nested] = [{"Owner Key": k, "Run": run, rng.choice(names): n} for n in range(rng.randint(1, 2))]
            rows.append(row)
        runs.append((rows, hints))
    return f"{convention}, {file_format}, table {table!r}, nested {nested!r}, key {key!r}, names {names}", runs


def catalog_differences(ours: Dict[str, List[Tuple]], theirs: Dict[str, List[Tuple]]) -> Dict[str, Any]:
    """Per table whose columns differ, berth's columns and dlt's."""
    return {t: {"berth": ours.get(t), "dlt": theirs.get(t)} for t in set(ours) | set(theirs) if ours.get(t) != theirs.get(t)}


def catalog(destination: str, location: str) -> Dict[str, List[Tuple]]:
    """The dataset's tables and their columns in order, with type, precision, scale, length and
    nullability, as the destination's catalog has them (berth's own `_berth_*` tables left out)."""
    if destination == "duckdb":
        import duckdb

        con: Any = duckdb.connect(location, read_only=True)
        cur = con
    else:
        import psycopg2

        con = psycopg2.connect(location)
        cur = con.cursor()
    try:
        cur.execute(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, "
            "character_maximum_length, datetime_precision, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'data' ORDER BY table_name, ordinal_position"
        )
        tables: Dict[str, List[Tuple]] = {}
        for table, *column in cur.fetchall():
            if not table.startswith("_berth"):
                tables.setdefault(table, []).append(tuple(column))
        return tables
    finally:
        con.close()


@pytest.mark.parametrize("destination,seed", cases(seeds(500, SEEDS // 2), seeds(600, SEEDS // 2)))
def test_random_names_under_every_naming_convention_equal_dlt_s(
    workdir: Path, request: Any, monkeypatch: pytest.MonkeyPatch, destination: str, seed: int
) -> None:
    described, runs = naming(seed, destination)
    monkeypatch.setenv("SCHEMA__NAMING", described.split(",")[0])
    equal_rows_and_catalogs(f"n{seed}", destination, f"seed {seed} ({described})", runs, workdir, request)


def typed(seed: int, destination: str) -> Tuple[str, Runs]:
    """Two runs of a table whose columns carry random type hints of dlt's (integer bits, decimal
    precision and scale, timestamp and time precision with and without a time zone, text and
    binary lengths, NOT NULL), with values that fit them: the types each side creates, and the
    values as each type keeps them (PostgreSQL rounds fractional seconds to the precision)."""
    import datetime as dt
    from decimal import Decimal

    rng = random.Random(seed)
    file_format = rng.choice(FORMATS[destination])
    bits = rng.choice([None, 8, 16, 32, 64])
    precision = rng.choice([None, 5, 10, 18, 38])
    scale = None if precision is None else rng.choice(sorted({0, 2, min(precision, 9)}))
    columns: Dict[str, Dict[str, Any]] = {
        "i": {"data_type": "bigint", "precision": bits},
        "d": {"data_type": "decimal", "precision": precision, "scale": scale},
        "ts": {"data_type": "timestamp", "precision": rng.choice([None, 0, 3, 6]), "timezone": rng.choice([None, True, False])},
        "tm": {"data_type": "time", "precision": rng.choice([None, 0, 3, 6])},
        "t": {"data_type": "text", "precision": rng.choice([None, 10])},
        "bin": {"data_type": "binary", "precision": rng.choice([None, 16])},
        "b": {"data_type": "bool", "nullable": rng.random() < 0.5},
    }
    columns = {name: {k: v for k, v in hint.items() if v is not None} for name, hint in columns.items()}
    if file_format == "csv":
        del columns["bin"]  # dlt neither writes nor loads binaries in CSV reliably
    if file_format == "parquet":
        columns["bin"].pop("precision", None)  # dlt's Parquet writer makes it a fixed-size binary

    def integer() -> int:
        top = 2 ** ((bits or 64) - 1)
        return rng.choice([0, -1, top - 1, -top, rng.randint(-top, top - 1)])

    def decimal() -> Decimal:
        p, s = (38, 9) if precision is None else (precision, scale or 0)
        digits = rng.randint(1, p)
        # From text (`scaleb` rounds to 28 digits), `digits` digits exactly: a value that prints
        # with an exponent (0.00000003 is 3E-8) is one dlt's own `insert_values` reads as a double.
        unscaled = rng.choice([-1, 1]) * rng.randint(10 ** (digits - 1), 10**digits - 1)
        return Decimal(f"{unscaled}E-{min(s, digits)}")

    def row(key: int) -> Dict[str, Any]:
        maybe = lambda value: None if rng.random() < 0.15 else value  # noqa: E731
        out = {
            "id": key,
            "i": maybe(integer()),
            "d": maybe(decimal()),
            "ts": maybe(dt.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                    rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999), tzinfo=dt.timezone.utc)),
            "tm": maybe(dt.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999))),
            "t": maybe(awkward_text(rng)[:10]),
            "bin": maybe(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 8)))),
            "b": rng.random() < 0.5 if columns["b"].get("nullable") is False else maybe(rng.random() < 0.5),
        }
        return {k: v for k, v in out.items() if k == "id" or k in columns}

    hints = {"table_name": "typed", "columns": columns, "loader_file_format": file_format}
    runs = [([row(k) for k in range(n, n + 8)], hints) for n in (0, 100)]
    return f"{file_format}, {columns}", runs


@pytest.mark.parametrize("destination,seed", cases(seeds(700, SEEDS // 2), seeds(800, SEEDS // 2)))
def test_random_type_hints_equal_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    described, runs = typed(seed, destination)
    equal_rows_and_catalogs(f"h{seed}", destination, f"seed {seed} ({described})", runs, workdir, request)


def deep(seed: int, destination: str) -> Tuple[str, Runs]:
    """Three merges of rows nested three levels deep (orders, their lines, the lines' tags), with
    an object whose member changes type (variant columns), under a random `max_table_nesting`
    (deeper levels become json columns): nested rows of updated roots replaced at every level."""
    rng = random.Random(seed)
    file_format = rng.choice(FORMATS[destination])
    nesting = rng.choice([None, 0, 1, 2, 3])
    strategy = rng.choice(["delete-insert", "upsert"])
    runs: Runs = []
    for run in range(3):
        rows = [
            {
                "id": key,
                "run": run,
                "orders": [
                    {
                        "n": n,
                        "meta": {"k": rng.choice([None, 1, "x", 2.5])},
                        "lines": [
                            {"sku": f"s{key}-{n}-{m}-{run}", "qty": rng.randint(0, 3), "tags": rng.sample("abc", rng.randint(1, 2))}
                            for m in range(rng.randint(1, 2))
                        ],
                    }
                    for n in range(rng.randint(1, 2))
                ],
            }
            for key in rng.sample(range(1, 10), rng.randint(2, 6))
        ]

        def resource(rows: List[Dict[str, Any]] = rows) -> Any:
            return dlt.resource(rows, name="customers", primary_key="id", max_table_nesting=nesting,
                                write_disposition={"disposition": "merge", "strategy": strategy})

        runs.append((resource, {"loader_file_format": file_format}))
    return f"{strategy}, {file_format}, max_table_nesting {nesting}", runs


@pytest.mark.parametrize("destination,seed", cases(seeds(900, SEEDS // 2), seeds(1000, SEEDS // 2)))
def test_random_deep_nesting_equals_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    described, runs = deep(seed, destination)
    equal_rows_and_catalogs(f"x{seed}", destination, f"seed {seed} ({described})", runs, workdir, request)


def arrow_rows(seed: int, destination: str) -> Tuple[str, Runs]:
    """Two appends of an Arrow table whose columns have random Arrow types (integers of every
    width and sign, floats, large and dictionary strings, timestamps of every unit with and
    without a zone, dates, times, decimals, binaries, structs, lists), as dlt extracts an Arrow
    table: straight to Parquet with those types, then loaded by each side."""
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa

    rng = random.Random(seed)
    choices: Dict[str, Tuple[Any, Callable[[], Any]]] = {
        "i8": (pa.int8(), lambda: rng.choice([-128, 127, 0, rng.randint(-128, 127)])),
        "i16": (pa.int16(), lambda: rng.choice([-(2**15), 2**15 - 1, rng.randint(-100, 100)])),
        "i32": (pa.int32(), lambda: rng.choice([-(2**31), 2**31 - 1, rng.randint(-100, 100)])),
        "u8": (pa.uint8(), lambda: rng.choice([0, 255, rng.randint(0, 255)])),
        "u16": (pa.uint16(), lambda: rng.choice([0, 2**16 - 1])),
        "u32": (pa.uint32(), lambda: rng.choice([0, 2**32 - 1, rng.randint(0, 1000)])),
        "f32": (pa.float32(), lambda: rng.choice([0.0, -1.5, 3.25, 1e30])),
        "f64": (pa.float64(), lambda: rng.choice([0.0, -0.5, 1e300, rng.uniform(-1e6, 1e6)])),
        "large": (pa.large_string(), lambda: awkward_text(rng)),
        "dict": (pa.dictionary(pa.int32(), pa.string()), lambda: rng.choice(["a", "b", "ä"])),
        "ts_s": (pa.timestamp("s"), lambda: dt.datetime(rng.randint(1, 9999), 1, rng.randint(1, 28), rng.randint(0, 23), 0, rng.randint(0, 59))),
        "ts_ms_utc": (pa.timestamp("ms", tz="UTC"), lambda: dt.datetime(rng.randint(1, 9999), 2, 3, 4, 5, 6, rng.randint(0, 999) * 1000, tzinfo=dt.timezone.utc)),
        "ts_us_berlin": (pa.timestamp("us", tz="Europe/Berlin"), lambda: dt.datetime(rng.randint(1900, 2100), 6, 7, 8, 9, 10, rng.randint(0, 999999), tzinfo=dt.timezone.utc)),
        "ts_ns": (pa.timestamp("ns"), lambda: dt.datetime(rng.randint(1700, 2200), 3, 4, 5, 6, 7, rng.randint(0, 999999))),
        "d32": (pa.date32(), lambda: dt.date(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28))),
        "d64": (pa.date64(), lambda: dt.date(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28))),
        "t32": (pa.time32("ms"), lambda: dt.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999) * 1000)),
        "t64": (pa.time64("us"), lambda: dt.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999))),
        "dec": (pa.decimal128(12, 3), lambda: Decimal(f"{rng.randint(-(10**12) + 1, 10**12 - 1)}E-3")),
        "bin": (pa.binary(), lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 6)))),
        "lbin": (pa.large_binary(), lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 6)))),
        "st": (pa.struct([("a", pa.int64()), ("b", pa.string())]), lambda: {"a": rng.randint(-5, 5), "b": rng.choice(["x", None])}),
        "lst": (pa.list_(pa.int64()), lambda: [rng.randint(0, 9) for _ in range(rng.randint(0, 3))]),
        "b": (pa.bool_(), lambda: rng.random() < 0.5),
    }
    names = rng.sample(sorted(choices), rng.randint(3, 8))
    if destination == "postgres":
        # dlt's own PostgreSQL load takes an Arrow table as CSV, which has no binaries, structs
        # or lists, reads an empty string as NULL, and makes float32 values the doubles of their
        # shortest text (1e30 where the float is 1.0000000150474662e30, as berth and DuckDB read it).
        names = [n for n in names if n not in ("bin", "lbin", "f32", "st", "lst")] or ["f64"]
        choices["large"] = (pa.large_string(), lambda: awkward_text(rng) or "x")
    schema = pa.schema([("id", pa.int64())] + [(n, choices[n][0]) for n in names])

    def table(first: int) -> Any:
        ids = list(range(first, first + 8))
        columns = [pa.array(ids, pa.int64())]
        for n in names:
            kind, make = choices[n]
            values = [None if rng.random() < 0.15 else make() for _ in ids]
            if pa.types.is_dictionary(kind):
                columns.append(pa.array(values, pa.string()).dictionary_encode())
            else:
                columns.append(pa.array(values, kind))
        return pa.Table.from_arrays(columns, schema=schema)

    runs: Runs = [(table(first), {"table_name": "arrow"}) for first in (0, 100)]
    return f"{names}", runs


@pytest.mark.parametrize("destination,seed", cases(seeds(1100, SEEDS // 2), seeds(1200, SEEDS // 2)))
def test_random_arrow_tables_equal_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    described, runs = arrow_rows(seed, destination)
    equal_rows_and_catalogs(f"a{seed}", destination, f"seed {seed} ({described})", runs, workdir, request)


@pytest.mark.parametrize("destination,seed", cases(seeds(300, SEEDS // 2), seeds(400, SEEDS // 2)))
def test_random_values_of_every_type_equal_dlt_s(workdir: Path, request: Any, destination: str, seed: int) -> None:
    file_format, runs = values(seed, destination)

    def check(number: int, got: Dict, want: Dict) -> None:
        got["values"], want["values"] = comparable(got["values"]), comparable(want["values"])
        assert got == want, f"seed {seed} ({file_format}), after run {number + 1}: {differences(got, want)}"

    side_by_side(f"v{seed}", destination, runs, workdir, request, check)


def csv_writer_options(seed: int) -> Tuple[Dict[str, str], Runs]:
    """dlt's CSV writer options (its `[normalize.data_writer]` section) and the values family's
    runs as CSV jobs. Without a header, each file's first row holds no separator and no line
    break: dlt's own PostgreSQL load counts that row's fields by splitting its line."""
    rng = random.Random(seed)
    settings = {
        "delimiter": rng.choice([",", ";", "|", "\t"]),
        "include_header": rng.choice(["true", "false"]),
        "quoting": rng.choice(["quote_needed", "quote_all", "quote_minimal"]),
        "encoding": rng.choice(["utf-8", "latin-1", "windows-1252"]),  # names PostgreSQL knows too
        "lineterminator": rng.choice(["\n", "\r\n"]),
    }
    if settings["encoding"] != "utf-8":
        settings["encoding_errors"] = "replace"  # text the encoding lacks becomes `?`, as dlt writes it
    _, runs = values(seed, "postgres", "csv")
    if settings["include_header"] == "false":
        plain = {"i": 1, "f": 2.5, "d": None, "b": True, "t": "plain", "ts": None, "day": None, "tm": None, "j": None}
        runs = [([dict(plain, id=-1 - n)] + rows, hints) for n, (rows, hints) in enumerate(runs)]
    return settings, runs


@pytest.mark.parametrize("seed", seeds(1300, SEEDS // 2))
def test_random_csv_writer_options_equal_dlt_s_postgres(
    workdir: Path, request: Any, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """CSV jobs written with random writer options, set as a dlt user sets them: for dlt's writer
    and for its PostgreSQL load (`csv_format`) alike. berth reads the writer's section."""
    settings, runs = csv_writer_options(seed)
    for key, value in settings.items():
        monkeypatch.setenv(f"NORMALIZE__DATA_WRITER__{key.upper()}", value)
        monkeypatch.setenv(f"DESTINATION__POSTGRES__CSV_FORMAT__{key.upper()}", value)

    def check(number: int, got: Dict, want: Dict) -> None:
        got["values"], want["values"] = comparable(got["values"]), comparable(want["values"])
        assert got == want, f"seed {seed} ({settings}), after run {number + 1}: {differences(got, want)}"

    side_by_side(f"c{seed}", "postgres", runs, workdir, request, check)
