#!/usr/bin/env bash
# Installs the Debian packages the real-service tests need: ClickHouse server, etcd, kubectl, and the
# toolchain to build kube-apiserver from Debian's source package. Idempotent: a second run is a no-op.
source "$(dirname "$0")/lib.sh"
PKGS=(clickhouse-server clickhouse-client etcd-server golang-go rsync jq openssl curl make
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  as_root apt-get update -qq
  # Services are started by our own scripts, never by the package's init scripts (there is no init here).
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || as_root dpkg --configure -a
else
  log "system packages present"
fi
# kubectl matching the 1.20 API server, unpacked from Debian's kubernetes-client into $TOOLS_DIR/bin, so it
# never collides with another kubectl the machine may carry in /usr/bin.
if [ ! -x "$TOOLS_DIR/bin/kubectl" ]; then
  d=$(mktemp -d); (cd "$d" && apt-get download -qq kubernetes-client && dpkg-deb -x kubernetes-client_*.deb x)
  as_root install -D -m755 "$d/x/usr/bin/kubectl" "$TOOLS_DIR/bin/kubectl"; rm -rf "$d"
  log "kubectl $("$TOOLS_DIR/bin/kubectl" version --client --short 2>/dev/null) in $TOOLS_DIR/bin"
fi
