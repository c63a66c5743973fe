#!/usr/bin/env bash
# Creates the project virtualenv and installs tradeplane with every extra, pinned by constraints.txt.
# Idempotent: when pyproject.toml and constraints.txt are unchanged since the last successful run, it
# only re-checks the editable install.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
PY="${PYTHON:-python3.11}"; command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.tradeplane-deps"
want="$({ cat pyproject.toml setup.py; cat constraints.txt 2>/dev/null || true; } | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "dependencies up to date ($VENV)"; exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade "pip==25.3" "setuptools==80.9.0" "wheel==0.45.1"
# torch first, from the CPU wheel on the machine: an unpinned torch would pull GBs of CUDA packages.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
cons=(); [ -f constraints.txt ] && cons=(-c constraints.txt)
log "installing tradeplane[all] (a few minutes on a fresh machine)"
"$VENV/bin/python" -m pip install -q "${cons[@]}" -e ".[all]"
echo "$want" > "$stamp"
log "environment ready: $VENV"
