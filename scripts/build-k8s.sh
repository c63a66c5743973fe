#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian's kubernetes 1.20.2 source package, offline
# (recipe: ../shared/ENVIRONMENT.md), into $K8S_BIN_DIR. Skipped when the binaries already exist there.
source "$(dirname "$0")/lib.sh"
if [ -x "$K8S_BIN_DIR/kube-apiserver" ] && [ -x "$K8S_BIN_DIR/kube-controller-manager" ]; then
  log "kube-apiserver cached in $K8S_BIN_DIR"; exit 0
fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/apt/lists/partial" "$W/apt/parts"; cd "$W"
# A deb-src twin of the machine's Debian sources, in a private apt state dir (system apt config untouched).
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > apt/parts/src.sources
O=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/apt/parts" -o "Dir::State::Lists=$W/apt/lists")
log "fetching kubernetes source package"
apt-get "${O[@]}" update -qq
apt-get "${O[@]}" source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1 >/dev/null
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz && cd kubernetes-1.20.2
# Go 1.19 needs newer vendored reflect2/json-iterator, or the apiserver faults on the first custom resource.
rsync -a --delete /usr/share/gocode/src/github.com/modern-go/reflect2/ vendor/github.com/modern-go/reflect2/
rsync -a --delete /usr/share/gocode/src/github.com/json-iterator/go/ vendor/github.com/json-iterator/go/
log "building kube-apiserver and kube-controller-manager (~8 min on 2 cores)"
env HOME="$W" GOPATH="$W/gopath" GOCACHE="$W/gocache" CGO_ENABLED=0 GOPROXY=off KUBE_GIT_VERSION=v1.20.2 \
  KUBE_GIT_TREE_STATE=clean make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$W/build.log" 2>&1 \
  || { tail -50 "$W/build.log"; die "kubernetes build failed"; }
as_root install -D -m755 -t "$K8S_BIN_DIR" _output/bin/kube-apiserver _output/bin/kube-controller-manager
log "installed into $K8S_BIN_DIR"
