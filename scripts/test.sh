#!/usr/bin/env bash
# The test command (README: `make test`). On a fresh machine it installs everything the suite needs
# (virtualenv, Debian packages, kube-apiserver built from source, helm), checks lint and generated files,
# then runs pytest. The real services (Kafka-protocol broker, ClickHouse server, chDB, etcd +
# kube-apiserver + controller-manager, Ray) are started by pytest session fixtures on free loopback ports
# and stopped by the PIDs they recorded. In CI every marker runs; a service that fails to start fails.
# Extra arguments go to pytest, e.g. `make test ARGS='-m "not k8s"'`.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
bash scripts/setup.sh
bash scripts/install-system.sh
bash scripts/build-k8s.sh
bash scripts/install-helm.sh
export PATH="$TOOLS_DIR/bin:$K8S_BIN_DIR:$VENV/bin:$PATH"
export OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
log "lint and generated files"
bash scripts/lint.sh
"$VENV/bin/tradeplane" crds --check
log "pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": fine for a developer's narrow selection, a failure for the full suite.
  if [ "$#" -gt 0 ]; then log "no tests matched the selection: $*"; exit 0; fi
  die "pytest collected no tests"
fi
exit "$rc"
