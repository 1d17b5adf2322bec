#!/usr/bin/env bash
# Fetches the prebuilt libduckdb.so that berth links against (DuckDB is never built from source here:
# the bundled build takes over an hour on a 2-core machine). The library comes from the npm package
# @duckdb/node-bindings-linux-x64, whose 1.5.6 release matches the `duckdb` crate =1.10506.0.
#
# It lands in a per-user cache (so builds and binaries keep working across clones) and is linked into
# <repo>/.duckdb/lib, which .cargo/config.toml hands to the duckdb crate as DUCKDB_LIB_DIR.
set -euo pipefail

DUCKDB_VERSION="${BERTH_DUCKDB_VERSION:-1.5.6}"
NPM_PACKAGE="@duckdb/node-bindings-linux-x64"
NPM_VERSION="${BERTH_DUCKDB_NPM_VERSION:-1.5.6-r.1}"
CACHE_DIR="${BERTH_DUCKDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/duckdb-$DUCKDB_VERSION}"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK_DIR="$REPO_DIR/.duckdb"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "setup-duckdb: only linux-x86_64 is wired up (got $(uname -s)-$(uname -m))" >&2; exit 1 ;;
esac

if [ ! -f "$CACHE_DIR/libduckdb.so" ]; then
  command -v npm >/dev/null || { echo "setup-duckdb: npm is needed to fetch $NPM_PACKAGE (apt-get install npm)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "setup-duckdb: fetching $NPM_PACKAGE@$NPM_VERSION" >&2
  (cd "$tmp" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mkdir -p "$CACHE_DIR"
  # Copy then rename, so a killed setup never leaves a half-written library behind.
  cp "$tmp/package/libduckdb.so" "$CACHE_DIR/libduckdb.so.part"
  mv "$CACHE_DIR/libduckdb.so.part" "$CACHE_DIR/libduckdb.so"
fi

mkdir -p "$LINK_DIR"
ln -sfn "$CACHE_DIR" "$LINK_DIR/lib"
echo "setup-duckdb: libduckdb $DUCKDB_VERSION ready in $CACHE_DIR" >&2
