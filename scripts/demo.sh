#!/usr/bin/env bash
# The main job. Until the local runner lands, the demo shows the platform's contract end to end offline:
# the example desk is validated against the v1alpha1 types (the same rules the API server enforces).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$VENV/bin/tradeplane" validate examples/*.yaml
cat <<'MSG'

The example desk is valid: one RiskBudget, two ModelVersions (stable + canary candidate), two Strategies.
Next: `kubectl apply -f crds/ && kubectl apply -f examples/` on a cluster, then `kubectl get tradeplane`.
MSG
