"""berth's exceptions. Every one is a :class:`BerthError`; messages never contain credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from berth._summary import JobResult, LoadSummary

__all__ = [
    "BerthError",
    "ConfigError",
    "PackageError",
    "DestinationError",
    "SchemaError",
    "LoadError",
    "JobsFailed",
    "UnsupportedDltVersion",
    "TransientError",
]


class BerthError(Exception):
    """Base class of berth's errors.

    ``transient`` says whether trying again unchanged may succeed (a lost connection, a
    concurrent load holding a lock); otherwise something must change first.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConfigError(BerthError):
    """The destination or an option is wrong or incomplete: an unknown destination, missing
    credentials (the message lists the variables and files searched), an unknown option."""


class PackageError(BerthError):
    """A package cannot be read or planned: a missing or malformed file, a job linked out of its
    package, a format the destination cannot take. Nothing was loaded from it."""


class DestinationError(BerthError):
    """The destination failed outside a job (connecting, migrating, a merge, the commit)."""


class SchemaError(DestinationError):
    """The package's schema does not fit the destination's tables (a column of another type
    that cannot be widened); the message names the table and column."""


class LoadError(BerthError):
    """Jobs failed. ``summary`` is the whole load's :class:`~berth.LoadSummary`;
    ``failed_jobs`` the jobs that failed, each with its ``error``."""

    def __init__(
        self,
        message: str,
        *,
        summary: Optional["LoadSummary"] = None,
        failed_jobs: Optional[List["JobResult"]] = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message, transient=transient)
        self.summary = summary
        self.failed_jobs = list(failed_jobs or [])


class JobsFailed(LoadError):
    """Jobs failed and their packages stay pending: nothing of those packages is committed
    (no ``_dlt_loads`` row). Fix the cause and load again; the load resumes where it stopped.
    """


class UnsupportedDltVersion(BerthError, ImportError):
    """The installed dlt is not the version ``berth.dlt`` is built and tested for."""


class TransientError(BerthError):
    """Raise it from a sink function for a batch worth sending again (a timeout, a 429): berth
    retries it with backoff, waiting at least ``retry_after`` seconds when given. Any other
    exception from a sink function fails its job for good."""

    def __init__(self, message: str = "", *, retry_after: Optional[float] = None) -> None:
        super().__init__(message, transient=True)
        self.retry_after = retry_after
