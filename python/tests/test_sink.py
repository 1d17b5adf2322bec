"""Python sink functions: batches as pyarrow, retries, a SIGKILL mid-way then resume, and the
same function as a dlt destination with its configuration injected."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import dlt
import pyarrow as pa
import pytest

import berth
from conftest import copy_quickstart

ROWS = {"rides": 40, "rides__stops": 80, "stations": 6}


def test_batches_arrive_as_pyarrow_with_the_table_and_their_identity(workdir: Path) -> None:
    got = []

    @berth.sink(batch_size=7)
    def push(batch: pa.RecordBatch, table: berth.SinkTable, info: berth.BatchInfo) -> None:
        assert isinstance(batch, pa.RecordBatch) and batch.schema == table.schema
        assert not any(name.startswith("_dlt") for name in batch.schema.names)
        got.append((table.name, table["name"], batch.num_rows, info))

    summary = berth.load(copy_quickstart(workdir), destination=push)
    assert summary.all_loaded
    rows = Counter()
    for name, dict_name, n, _ in got:
        assert name == dict_name
        rows[name] += n
    assert dict(rows) == ROWS
    keys = [info.idempotency_key for *_, info in got]
    assert len(keys) == len(set(keys))
    assert all(info.first_row == info.batch_index * 7 for *_, info in got)


def test_a_transient_error_is_retried_and_any_other_fails_the_job(workdir: Path) -> None:
    calls = Counter()
    rows = Counter()

    @berth.sink(batch_size=50)
    def flaky(batch: pa.RecordBatch, table: berth.SinkTable, info: berth.BatchInfo) -> None:
        calls[info.idempotency_key] += 1
        if table.name == "rides" and calls[info.idempotency_key] < 3:
            raise berth.TransientError("busy", retry_after=0.01)
        rows[table.name] += batch.num_rows

    assert berth.load(copy_quickstart(workdir), destination=flaky).all_loaded
    assert dict(rows) == ROWS

    @berth.sink
    def broken(batch: pa.RecordBatch, table: berth.SinkTable) -> None:
        if table.name == "stations":
            raise ValueError("stations are not accepted")

    with pytest.raises(berth.JobsFailed) as failed:
        berth.load(copy_quickstart(workdir / "again"), destination=broken)
    [job] = failed.value.failed_jobs
    assert job.table == "stations" and "ValueError: stations are not accepted" in job.error


def test_a_run_killed_half_way_resumes_and_sends_only_the_batch_in_flight_again(workdir: Path) -> None:
    packages = copy_quickstart(workdir)
    log = workdir / "sent.log"
    script = textwrap.dedent(
        f"""
        import os, signal, sys, berth
        calls = 0
        @berth.sink(batch_size=5)
        def push(batch, table, info):
            global calls
            calls += 1
            with open({str(log)!r}, "a") as f:
                f.write(info.idempotency_key + " " + str(batch.num_rows) + "\\n")
                f.flush(); os.fsync(f.fileno())
            if sys.argv[1] == "kill" and calls == 10:
                os.kill(os.getpid(), signal.SIGKILL)
        berth.load({str(packages)!r}, destination=push)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script, "kill"], capture_output=True, text=True)
    assert killed.returncode == -9
    resumed = subprocess.run([sys.executable, "-c", script, "resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    lines = log.read_text().splitlines()
    sent = Counter(line.split()[0] for line in lines)
    assert [key for key, n in sent.items() if n > 1] == [lines[9].split()[0]], "only the batch in flight twice"
    assert sum(int(line.split()[1]) for line in set(lines)) == sum(ROWS.values())


def test_the_sink_is_a_dlt_destination_with_its_configuration_injected(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DESTINATION__PUSH__API_KEY", "k-123")
    got = Counter()
    keys = set()

    @berth.sink(batch_size=10)
    def push(batch: pa.RecordBatch, table: berth.SinkTable, api_key: str = dlt.secrets.value) -> None:
        keys.add(api_key)
        got[table.name] += batch.num_rows

    pipeline = dlt.pipeline("sink_pipe", destination=push, pipelines_dir=str(workdir / "p"))
    info = pipeline.run([{"id": i, "tags": ["a", "b"]} for i in range(25)], table_name="items")
    assert not info.has_failed_jobs
    assert keys == {"k-123"}
    assert got["items"] == 25 and "_dlt_pipeline_state" not in got
    # The next run continues (state kept in the pipeline folder).
    pipeline.run([{"id": 99}], table_name="items")
    assert got["items"] == 26


def test_berth_load_injects_the_sink_s_configuration_too(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DESTINATION__CONFIGURED__TOKEN", "t-9")
    tokens = set()

    @berth.sink(name="configured")
    def push(batch: pa.RecordBatch, table: berth.SinkTable, token: str = dlt.secrets.value) -> None:
        tokens.add(token)

    berth.load(copy_quickstart(workdir), destination=push)
    assert tokens == {"t-9"}
