#!/usr/bin/env bash
# Prints a directory holding ESO's own CRDs (ExternalSecret, SecretStore, ClusterSecretStore,
# external-secrets.io) of ESO_VERSION (default v0.16.2), taken from its Go module on the proxy
# and cached in ~/.cache, so a test can run this controller on ESO's schema instead of ours.
set -euo pipefail
version=${ESO_VERSION:-v0.16.2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vault-external-secrets/eso-crds-$version
if [ ! -f "$cache/done" ]; then
  proxy=$(go env GOPROXY 2>/dev/null | cut -d, -f1)
  proxy=${proxy:-https://proxy.golang.org}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -sSfL --retry 3 -o "$tmp/eso.zip" "$proxy/github.com/external-secrets/external-secrets/@v/$version.zip"
  mkdir -p "$cache"
  for crd in externalsecrets secretstores clustersecretstores; do
    unzip -p "$tmp/eso.zip" \
      "github.com/external-secrets/external-secrets@$version/config/crds/bases/external-secrets.io_$crd.yaml" \
      > "$cache/$crd.yaml"
  done
  touch "$cache/done"
fi
echo "$cache"
