#!/usr/bin/env bash
# Builds the e2e control plane from the Go module proxy (e2e/testenv): etcd, kube-apiserver,
# kube-controller-manager and kubectl of one Kubernetes release. Cached outside the clone under
# ~/.cache/vault-external-secrets/k8s-<hash of go.mod/go.sum>/, rebuilt only when they change.
# Prints the binary directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VES_CACHE:-$HOME/.cache/vault-external-secrets}
key=$(cat "$here/testenv/go.mod" "$here/testenv/go.sum" "$here/testenv/cmd/etcd/main.go" | sha256sum | cut -c1-16)
out="$cache/k8s-$key"
bins=(etcd kube-apiserver kube-controller-manager kubectl)
ok=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || ok=0; done
if [ "$ok" = 1 ]; then
  echo "$out"
  exit 0
fi
echo ">> building etcd, kube-apiserver, kube-controller-manager, kubectl ($(grep -m1 'k8s.io/kubernetes v' "$here/testenv/go.mod" | awk '{print $NF}')) into $out" >&2
echo ">> (cold: about 5 minutes on 2 cores with modules downloaded; once per go.sum change)" >&2
start=$(date +%s)
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
(
  cd "$here/testenv"
  go build -trimpath -o "$out.tmp/" ./cmd/etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
) >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo ">> control plane built in $(( $(date +%s) - start ))s" >&2
echo "$out"
