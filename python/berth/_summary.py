"""What a load did: :class:`LoadSummary` and its parts, read from berth's JSON summary (the one
``berth load --json`` prints)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional

__all__ = ["JobResult", "TableResult", "PhaseTimes", "PackageResult", "LoadSummary"]


@dataclass(frozen=True)
class JobResult:
    """One job (a file of one table) and how it ended: ``state`` is ``"completed"`` or
    ``"failed"``; a failed job has its ``error`` and ``error_kind`` (``"terminal"``: retrying
    cannot help; ``"transient"``: the next load tries again)."""

    job_id: str
    table: str
    file: str
    state: str
    rows: int
    bytes: int
    attempts: int
    seconds: float
    error: Optional[str] = None
    error_kind: Optional[str] = None


@dataclass(frozen=True)
class TableResult:
    """A table's totals in one package."""

    jobs: int
    failed_jobs: int
    rows: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class PhaseTimes:
    """Where a package's time went, in seconds. ``decode``, ``encode`` and ``transfer`` are summed
    over parallel parts; the others are wall time."""

    migrate: float = 0.0
    jobs: float = 0.0
    decode: float = 0.0
    encode: float = 0.0
    transfer: float = 0.0
    followup: float = 0.0
    commit: float = 0.0


@dataclass(frozen=True)
class PackageResult:
    """One package's result. ``status``: ``loaded``, ``loaded_with_failed_jobs``,
    ``already_loaded``, ``pending`` (jobs failed; load again) or ``interrupted``."""

    load_id: str
    package: str
    schema: str
    dataset: str
    destination: str
    status: str
    tables: Dict[str, TableResult]
    jobs: List[JobResult]
    previously_completed_jobs: int
    interrupted_jobs: int
    migration: Dict[str, Any]
    followup_statements: int
    phases: PhaseTimes
    elapsed: float

    @property
    def rows(self) -> int:
        """Rows inserted by this load."""
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        """Bytes of the job files loaded."""
        return sum(t.bytes for t in self.tables.values())


@dataclass(frozen=True)
class LoadSummary:
    """What :func:`berth.load` did: every package in load order, with tables, jobs, rows, bytes,
    phase times, and the process's peak resident memory.

    >>> summary = berth.load("pipeline/load/normalized")   # doctest: +SKIP
    >>> summary.rows, summary.all_loaded                     # doctest: +SKIP
    (1000000, True)
    """

    destination: str
    packages: List[PackageResult]
    elapsed: float
    peak_rss_bytes: Optional[int] = None
    _raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, text: str) -> "LoadSummary":
        """Reads the JSON summary berth prints with ``--json``."""
        raw = json.loads(text)
        packages = [
            PackageResult(
                load_id=p["load_id"],
                package=p["package"],
                schema=p["schema"],
                dataset=p["dataset"],
                destination=p["destination"],
                status=p["status"],
                tables={name: TableResult(**t) for name, t in p["tables"].items()},
                jobs=[JobResult(**j) for j in p["jobs"]],
                previously_completed_jobs=p["previously_completed_jobs"],
                interrupted_jobs=p["interrupted_jobs"],
                migration=p["migration"],
                followup_statements=p["followup_statements"],
                phases=PhaseTimes(**p["phases"]),
                elapsed=p["elapsed"],
            )
            for p in raw["packages"]
        ]
        return cls(
            destination=raw["destination"],
            packages=packages,
            elapsed=raw["elapsed"],
            peak_rss_bytes=raw.get("peak_rss_bytes"),
            _raw=raw,
        )

    @property
    def rows(self) -> int:
        """Rows inserted, over every package."""
        return sum(p.rows for p in self.packages)

    @property
    def bytes(self) -> int:
        """Bytes of job files loaded, over every package."""
        return sum(p.bytes for p in self.packages)

    @property
    def jobs(self) -> List[JobResult]:
        """Every job run, over every package."""
        return [j for p in self.packages for j in p.jobs]

    def failed_jobs(self) -> List[JobResult]:
        """The jobs that failed."""
        return [j for j in self.jobs if j.state == "failed"]

    @property
    def all_loaded(self) -> bool:
        """Every package is loaded now (by this load or an earlier one), no job failed."""
        return all(p.status in ("loaded", "already_loaded") for p in self.packages)

    def tables(self) -> Dict[str, int]:
        """Rows inserted per table, over every package."""
        rows: Dict[str, int] = {}
        for p in self.packages:
            for name, t in p.tables.items():
                rows[name] = rows.get(name, 0) + t.rows
        return rows

    def __iter__(self) -> Iterator[PackageResult]:
        return iter(self.packages)

    def to_dict(self) -> Dict[str, Any]:
        """The summary as plain data (what ``berth load --json`` prints)."""
        if self._raw:
            return json.loads(json.dumps(self._raw))
        out = asdict(self)
        out.pop("_raw", None)
        return out
