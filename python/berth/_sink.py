"""Python sink functions for reverse ETL: ``@berth.sink`` (a drop-in for ``@dlt.destination``).

berth reads the package, cuts each job into batches of ``batch_size`` rows and calls the
function with each batch as a ``pyarrow.RecordBatch`` (handed over through the Arrow C Data
Interface: no copy, no encoding), the table, and, if the function takes a third parameter, a
:class:`BatchInfo`. Returning acknowledges the batch: berth records it in the package and never
sends it again; after a crash the batch that was in flight is sent again with the same
``idempotency_key``. Raise :class:`berth.TransientError` to have a batch retried with backoff;
any other exception fails the job. The GIL is held only while the function runs.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from berth._errors import ConfigError

__all__ = ["sink", "Sink", "SinkTable", "BatchInfo"]


class SinkTable:
    """The table a batch belongs to: ``name``, the Arrow ``schema`` of the batches, and dlt's
    table dict (write disposition, keys, column hints). Reads like dlt's table dict too:
    ``table["name"]``, ``table["columns"]``."""

    def __init__(self, name: str, schema: Any, hints: Dict[str, Any]) -> None:
        self.name = name
        self.schema = schema
        self.hints = hints

    def __getitem__(self, key: str) -> Any:
        return self.hints[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.hints.get(key, default)

    def keys(self) -> Any:
        return self.hints.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.hints)

    def __contains__(self, key: object) -> bool:
        return key in self.hints

    def __repr__(self) -> str:
        return f"SinkTable(name={self.name!r}, columns={list(self.hints.get('columns', {}))!r})"


@dataclass(frozen=True)
class BatchInfo:
    """Which batch this is: ``idempotency_key`` (``<load id>.<table>.<file id>.<index>``, the
    same on every attempt and every run that sends this batch), the package's ``load_id``, the
    ``job``, the ``batch_index`` in the job and the job's ``first_row`` in this batch."""

    idempotency_key: str
    load_id: str
    job: str
    batch_index: int
    first_row: int


def _arity(function: Callable[..., Any]) -> int:
    """How many batch arguments `function` takes: 2 (batch, table) or 3 (and info)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"a sink function must have an inspectable signature: {e}") from e
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is inspect.Parameter.empty
    ]
    if len(positional) not in (2, 3) and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        name = getattr(function, "__name__", repr(function))
        raise ConfigError(
            f"sink function {name}{inspect.signature(function)} must take (batch, table) or "
            "(batch, table, info) without defaults; configuration goes in keyword parameters with defaults"
        )
    return 3 if len(positional) == 3 else 2


def _has_config_parameters(function: Callable[..., Any]) -> bool:
    """Whether `function` has keyword parameters (with defaults, or keyword-only) that
    configuration fills."""
    parameters = inspect.signature(function).parameters.values()
    return any(p.default is not inspect.Parameter.empty or p.kind == p.KEYWORD_ONLY for p in parameters)


def _deliverer(function: Callable[..., Any], with_info: bool) -> Callable[..., None]:
    """The callable berth's extension calls per batch."""
    import pyarrow as pa

    tables: Dict[Tuple[str, str], SinkTable] = {}

    def deliver(schema: Any, array: Any, name: str, table_json: str, info: Tuple[str, str, str, int, int]) -> None:
        batch = pa.RecordBatch._import_from_c_capsule(schema, array)
        key = (name, table_json)
        table = tables.get(key)
        if table is None:
            table = tables[key] = SinkTable(name, batch.schema, json.loads(table_json))
        if with_info:
            function(batch, table, BatchInfo(*info))
        else:
            function(batch, table)

    return deliver


class Sink:
    """A sink function with its options (made by :func:`sink`). Use it as a destination:
    ``berth.load(packages, destination=push)`` or ``pipeline.run(data, destination=push)``;
    called with a batch and a table it is the function itself."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        batch_size: int,
        name: Optional[str],
        max_table_nesting: int,
        skip_dlt_columns_and_tables: bool,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.function = function
        self.with_info = _arity(function) == 3
        self.batch_size = batch_size
        self.name = name or getattr(function, "__name__", "sink")
        self.max_table_nesting = max_table_nesting
        self.skip_dlt_columns_and_tables = skip_dlt_columns_and_tables
        self.__doc__ = getattr(function, "__doc__", None)
        self.__name__ = self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            # dlt calls a destination given as a callable with no arguments for its factory.
            from berth.dlt import sink_destination

            return sink_destination(self)
        return self.function(*args, **kwargs)

    def _configured(self) -> Callable[..., Any]:
        """The function with its keyword parameters resolved from ``[destination.<name>]`` (dlt's
        configuration, when dlt is installed), as ``@dlt.destination`` injects them. A function
        without such parameters has nothing to inject: dlt is not imported for it."""
        if not _has_config_parameters(self.function):
            return self.function
        try:
            from dlt.common.configuration import known_sections, with_config
            from dlt.common.configuration.inject import create_resolved_partial
        except ImportError:
            return self.function
        configured = with_config(self.function, sections=(known_sections.DESTINATION, self.name), include_defaults=True)
        # Resolved once for the whole load, not per batch.
        return create_resolved_partial(configured)

    def _load(self, packages: Any, *, function: Optional[Callable[..., Any]] = None, **options: Any) -> str:
        from berth import _berth

        deliver = _deliverer(function or self._configured(), self.with_info)
        return _berth.sink_load(
            packages,
            deliver,
            self.name,
            batch_size=self.batch_size,
            max_nesting=self.max_table_nesting,
            skip_dlt=self.skip_dlt_columns_and_tables,
            **options,
        )

    def __repr__(self) -> str:
        return f"<berth.sink {self.name} batch_size={self.batch_size}>"


def sink(
    function: Optional[Callable[..., Any]] = None,
    *,
    batch_size: int = 100,
    name: Optional[str] = None,
    max_table_nesting: int = 0,
    skip_dlt_columns_and_tables: bool = True,
) -> Any:
    """Makes ``function(batch, table[, info])`` a destination, as ``@dlt.destination`` does::

        @berth.sink(batch_size=10_000)
        def push(batch: pyarrow.RecordBatch, table: berth.SinkTable, api_key=dlt.secrets.value):
            requests.post(URL, json=batch.to_pylist(), headers={"key": api_key})

        berth.load("load/normalized", destination=push)
        pipeline.run(data, destination=push)

    Args:
        batch_size: rows per call.
        name: the destination's name (default: the function's): its configuration section is
            ``[destination.<name>]``, whose values fill the function's keyword parameters.
        max_table_nesting: struct levels flattened into ``parent__child`` columns (0: nested
            values stay as they are).
        skip_dlt_columns_and_tables: leave out dlt's ``_dlt_*`` tables and columns.
    """

    def wrap(f: Callable[..., Any]) -> Sink:
        return Sink(
            f,
            batch_size=batch_size,
            name=name,
            max_table_nesting=max_table_nesting,
            skip_dlt_columns_and_tables=skip_dlt_columns_and_tables,
        )

    return wrap(function) if function is not None else wrap
