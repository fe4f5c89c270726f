#!/usr/bin/env bash
# Builds the e2e tools from the Go module proxy: etcd, kube-apiserver, kube-controller-manager
# and kubectl of one Kubernetes release (e2e/testenv), and helm (e2e/helm). Cached outside the
# clone under ~/.cache/vault-external-secrets/{k8s,helm}-<hash of go.mod/go.sum>/, rebuilt only
# when those change. Prints the control-plane directory on stdout (helm is linked into it);
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

helm_key=$(cat "$here/helm/go.mod" "$here/helm/go.sum" | sha256sum | cut -c1-16)
helm_out="$cache/helm-$helm_key"
if [ ! -x "$helm_out/helm" ]; then
  echo ">> building helm ($(grep -m1 'helm.sh/helm/v3 v' "$here/helm/go.mod" | awk '{print $NF}')) into $helm_out" >&2
  rm -rf "$helm_out.tmp" && mkdir -p "$helm_out.tmp"
  tick_start
  (cd "$here/helm" && go build -trimpath -o "$helm_out.tmp/" helm.sh/helm/v3/cmd/helm) >&2
  tick_stop
  rm -rf "$helm_out" && mv "$helm_out.tmp" "$helm_out"
fi

if [ "$ok" = 1 ]; then
  ln -sf "$helm_out/helm" "$out/helm"
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
ln -sf "$helm_out/helm" "$out/helm"
echo ">> control plane built in $(( $(date +%s) - start ))s" >&2
echo "$out"
