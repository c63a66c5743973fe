#!/usr/bin/env bash
# The main job: the whole platform on this machine. Trains a baseline and a candidate model with the research
# pipeline on a synthetic market, runs the example desk (examples/) locally with the candidate in shadow —
# paper venue, in-process bus, embedded chDB under .tradeplane/ — and writes the run report.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
export OMP_NUM_THREADS=1
"$VENV/bin/tradeplane" validate examples/*.yaml
"$VENV/bin/tradeplane" demo "$@"
