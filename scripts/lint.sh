#!/usr/bin/env bash
# ruff (style, imports, bugs) over everything, and mypy --strict over the tradeplane packages and the test
# service fixtures. mypy cannot follow setuptools' editable import hooks, and the layers live in top-level
# folders, so it checks a throw-away link tree that has the installed package's shape: tradeplane/engine → engine/.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
tree="$REPO_ROOT/.typecheck"
rm -rf "$tree"; mkdir -p "$tree/tradeplane"
for entry in tradeplane/*; do ln -s "$REPO_ROOT/$entry" "$tree/tradeplane/"; done
for layer in engine workloads operator rl; do ln -s "$REPO_ROOT/$layer" "$tree/tradeplane/$layer"; done
(cd "$tree" && "$VENV/bin/mypy" --config-file "$REPO_ROOT/pyproject.toml" -p tradeplane)
"$VENV/bin/mypy" --config-file "$REPO_ROOT/pyproject.toml" tests/services
log "lint clean"
