# Shared helpers for the project's shell scripts: paths, logging, idempotent markers.
# Sourced, never executed.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where machine-wide tools are cached between runs on the same machine (a fresh machine rebuilds them).
TOOLS_DIR="${TRADEPLANE_TOOLS_DIR:-/opt/tradeplane-tools}"
K8S_BIN_DIR="${TRADEPLANE_K8S_BIN_DIR:-/opt/k8sbin}"
VENV="${TRADEPLANE_VENV:-$REPO_ROOT/.venv}"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
