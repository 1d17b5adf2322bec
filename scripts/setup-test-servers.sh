#!/usr/bin/env bash
# Installs the storage servers the bucket tests start on loopback (the S3 server, s3s-fs, is a Rust
# dev-dependency and needs nothing here):
#   - Azurite, Microsoft's Azure Storage emulator (npm package `azurite`)
# into a per-user cache, so clones and CI runs share one install. Prints nothing when present.
set -euo pipefail

AZURITE_VERSION="${BERTH_AZURITE_VERSION:-3.37.0}"
TOOLS_DIR="${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/tools}"
AZURITE_DIR="$TOOLS_DIR/azurite-$AZURITE_VERSION"

installed() { [ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; }

if ! installed; then
  # Tests that run at once may each call this script: one installs, the others wait for it.
  mkdir -p "$TOOLS_DIR"
  exec 9>"$AZURITE_DIR.lock"
  flock 9
fi
if ! installed; then
  command -v npm >/dev/null || { echo "setup-test-servers: npm is needed to install azurite (apt-get install npm)" >&2; exit 1; }
  echo "setup-test-servers: installing azurite@$AZURITE_VERSION into $AZURITE_DIR" >&2
  rm -rf "$AZURITE_DIR.part"
  mkdir -p "$AZURITE_DIR.part"
  (cd "$AZURITE_DIR.part" && npm install --silent --no-audit --no-fund --no-save "azurite@$AZURITE_VERSION" >/dev/null)
  rm -rf "$AZURITE_DIR"
  mv "$AZURITE_DIR.part" "$AZURITE_DIR"
fi
echo "$AZURITE_DIR/node_modules/.bin/azurite-blob"
