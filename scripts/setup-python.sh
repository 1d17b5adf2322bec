#!/usr/bin/env bash
# The Python side of the tests: a venv (cached per user, rebuilt when python/tests/requirements.txt
# changes) with dlt and what the tests compare against, and berth's Python package installed in it
# from this clone's dev build of the extension (cargo build --workspace builds it with the same
# features as everything else, so nothing is compiled twice). Prints the venv's python.
#
# Users install the package with `pip install ./python` (a release build); this is the tests' way.
set -euo pipefail
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
REQUIREMENTS="$REPO_DIR/python/tests/requirements.txt"
PYTHON="${BERTH_PYTHON:-python3}"
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup-python: installing Python with venv (apt-get install python3 python3-venv)" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3 python3-venv >&2
fi
stamp="$(cat "$REQUIREMENTS" | sha256sum | cut -c1-16)-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENV="${BERTH_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/venv-$stamp}"

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
  echo "setup-python: creating $VENV (dlt and test dependencies from PyPI)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  touch "$VENV/.complete"
fi

# berth's package: the sources linked in place, the extension and libduckdb next to them.
library="$TARGET_DIR/debug/lib_berth.so"
[ -f "$library" ] || { echo "setup-python: $library is missing; run cargo build --workspace first" >&2; exit 1; }
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
package="$site/berth"
rm -rf "$package"
mkdir -p "$package"
for source in "$REPO_DIR"/python/berth/*; do
  case "$(basename "$source")" in
    *.so|__pycache__) ;;
    *) ln -s "$source" "$package/" ;;
  esac
done
ln -s "$library" "$package/_berth.abi3.so"
ln -s "$REPO_DIR/.duckdb/lib/libduckdb.so" "$package/libduckdb.so"
cat > "$VENV/bin/berth" <<SCRIPT
#!$VENV/bin/python
from berth._cli import main
main()
SCRIPT
chmod +x "$VENV/bin/berth"
echo "$VENV/bin/python"
