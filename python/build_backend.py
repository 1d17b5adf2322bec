"""The build backend of ``pip install ./python``: maturin, after two steps of its own.

1. ``scripts/setup-duckdb.sh`` fetches the prebuilt ``libduckdb.so`` the extension links (DuckDB
   is never compiled from source), and it is copied into the ``berth`` package, where the
   extension finds it through its ``$ORIGIN`` run path: the installed module needs no
   ``LD_LIBRARY_PATH``, in any venv.
2. Cargo builds in berth's shared build folder (``$CARGO_TARGET_DIR``, default
   ``~/.cache/berth-target``), so a second install reuses the first one's build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import maturin

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _prepare() -> None:
    subprocess.run([str(REPO / "scripts" / "setup-duckdb.sh")], check=True)
    library = (REPO / ".duckdb" / "lib" / "libduckdb.so").resolve()
    target = HERE / "berth" / "libduckdb.so"
    if target.is_symlink() or target.exists():
        target.unlink()
    shutil.copyfile(library, target)
    os.environ.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "berth-target"))
    # The wheel's extension finds libduckdb.so next to itself only, never in this machine's cache.
    os.environ["BERTH_WHEEL"] = "1"


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return list(maturin.get_requires_for_build_wheel(config_settings))


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    return str(maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _prepare()
    return str(maturin.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _prepare()
    return str(maturin.build_editable(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    raise RuntimeError(
        "berth's Python package builds from a clone of the repository (pip install ./python); "
        "it has no source distribution of its own"
    )
