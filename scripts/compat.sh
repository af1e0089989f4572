#!/usr/bin/env bash
# Run the whole test suite against other servers than the bundled Valkey.
#
#   scripts/compat.sh            # bundled Valkey 9, then Debian's Redis 7 (installed if missing)
#   scripts/compat.sh /path/to/redis-server ...   # any server binaries you have
#
# The harness starts every server itself from LOWTIDE_SERVER_BINARY (real processes, real
# clusters), so the same tests run unchanged. Needs the dev install (pip install -e '.[dev]').
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Debian's redis-server (needs root and apt)..."
    apt-get install -y -q redis-server >/dev/null
  fi
  binaries=("bundled" "$(command -v redis-server)")
fi

status=0
for bin in "${binaries[@]}"; do
  if [ "$bin" = "bundled" ]; then
    echo "=== bundled Valkey ==="
    "$PY" -m pytest -q || status=1
  else
    echo "=== $("$bin" --version | head -1) ==="
    LOWTIDE_SERVER_BINARY="$bin" "$PY" -m pytest -q || status=1
  fi
done
exit $status
