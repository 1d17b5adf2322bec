"""Type stubs of berth's native extension; use the ``berth`` package, which wraps it."""

from typing import Any, Callable, Dict, List, Optional, Tuple

def load(
    packages: List[str],
    destination: Optional[str] = None,
    *,
    dataset: Optional[str] = None,
    replace_strategy: Optional[str] = None,
    parallel: Optional[int] = None,
    max_attempts: Optional[int] = None,
    allow_failed_jobs: bool = False,
    widen_types: Optional[bool] = None,
    staging: Optional[str] = None,
    pipeline_name: Optional[str] = None,
    config: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
    caller_owns_folders: bool = False,
    memory_budget: Optional[str] = None,
    dlt_settings: Optional[Dict[str, str]] = None,
) -> str: ...
def plan(
    packages: List[str],
    destination: str = "duckdb",
    *,
    dataset: Optional[str] = None,
    replace_strategy: Optional[str] = None,
    assume_empty: bool = False,
    staging: Optional[str] = None,
    config: Optional[str] = None,
) -> str: ...
def compact(
    destination: str,
    dataset: str,
    *,
    tables: List[str] = ...,
    target_file_mib: int = 128,
    config: Optional[str] = None,
) -> str: ...
def sink_load(
    packages: List[str],
    deliver: Callable[[Any, Any, str, str, Tuple[str, str, str, int, int]], None],
    name: str,
    *,
    batch_size: int = 100,
    max_nesting: int = 0,
    skip_dlt: bool = True,
    parallel: int = 1,
    max_attempts: int = 5,
    allow_failed_jobs: bool = False,
    caller_owns_folders: bool = False,
    progress: Optional[bool] = None,
    config: Optional[str] = None,
) -> str: ...
def package(location: str, *, config: Optional[str] = None) -> str: ...
def describe_destination(
    name: str, *, pipeline_name: Optional[str] = None, dlt_settings: Optional[Dict[str, str]] = None
) -> str: ...
def cli_main(argv: List[str]) -> int: ...
def version() -> str: ...
