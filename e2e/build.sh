#!/usr/bin/env bash
# Builds the e2e tools from the Go module proxy: etcd, kube-apiserver, kube-controller-manager
# and kubectl of one Kubernetes release (e2e/testenv), helm (e2e/helm), Prometheus and promtool
# (e2e/prometheus) and crane (e2e/crane). Cached outside the clone under
# ~/.cache/vault-external-secrets/<name>-<hash of go.mod/go.sum>/, rebuilt only when those
# change. Prints the control-plane directory on stdout (the other tools are linked into it);
# progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VES_CACHE:-$HOME/.cache/vault-external-secrets}
key=$(cat "$here/testenv/go.mod" "$here/testenv/go.sum" "$here/testenv/cmd/etcd/main.go" | sha256sum | cut -c1-16)
out="$cache/k8s-$key"

# A line every 30 s while a cold build runs, so a first `make demo` does not look stuck.
ticker=""
tick_start() {
  local t0
  t0=$(date +%s)
  # stdout closed: callers capture ours with $(...) and must not wait for this loop.
  ( while sleep 30; do echo ">>   still building ($(( $(date +%s) - t0 ))s)" >&2; done ) >/dev/null &
  ticker=$!
}
tick_stop() {
  if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null || true; fi
  ticker=""
}
trap tick_stop EXIT
bins=(etcd kube-apiserver kube-controller-manager kubectl)
ok=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || ok=0; done

# tool NAME MODULE_DIR [go build flags] PACKAGE...: builds a Go tool pinned by e2e/MODULE_DIR
# into $cache/NAME-<hash of its go.mod/go.sum>/ once, and links what it built into the
# control-plane directory.
tools=()
tool() {
  local name=$1 dir=$here/$2 key tout
  shift 2
  key=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16)
  tout="$cache/$name-$key"
  if [ ! -f "$tout/.done" ]; then
    echo ">> building $name ($(grep -m1 -E '^require [^ ]+ v' "$dir/go.mod" | awk '{print $NF}')) into $tout" >&2
    rm -rf "$tout.tmp" && mkdir -p "$tout.tmp"
    tick_start
    (cd "$dir" && go build -trimpath -o "$tout.tmp/" "$@") >&2
    tick_stop
    touch "$tout.tmp/.done"
    rm -rf "$tout" && mv "$tout.tmp" "$tout"
  fi
  tools+=("$tout")
}
link_tools() {
  local t f
  for t in "${tools[@]}"; do
    for f in "$t"/*; do ln -sf "$f" "$out/$(basename "$f")"; done
  done
}
tool helm helm helm.sh/helm/v3/cmd/helm
# Service discoveries left out (remove_all_sd): the e2e Prometheus scrapes static targets only,
# and the cold build takes half the time.
tool prometheus prometheus -tags remove_all_sd \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
tool crane crane github.com/google/go-containerregistry/cmd/crane

if [ "$ok" = 1 ]; then
  link_tools
  echo "$out"
  exit 0
fi
echo ">> building etcd, kube-apiserver, kube-controller-manager, kubectl ($(grep -m1 'k8s.io/kubernetes v' "$here/testenv/go.mod" | awk '{print $NF}')) into $out" >&2
echo ">> (cold: about 5 minutes on 2 cores with modules downloaded; once per go.sum change)" >&2
start=$(date +%s)
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
tick_start
(
  cd "$here/testenv"
  go build -trimpath -o "$out.tmp/" ./cmd/etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
) >&2
tick_stop
rm -rf "$out"
mv "$out.tmp" "$out"
link_tools
echo ">> control plane built in $(( $(date +%s) - start ))s" >&2
echo "$out"
